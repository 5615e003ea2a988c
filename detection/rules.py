"""The alert rules of ``lifecycle.apply_scores`` as a pure function over a whole score series.

What-if questions ("how many alerts would this asset have had at a higher threshold?", "which alerts would
the challenger have raised last month?", "what does the production path detect on a SKAB run?") need the
open / hysteresis / auto-close rules without writing Alert rows. ``alert_episodes`` applies exactly the rules
documented in ``alerts.services.lifecycle`` — an alert opens at the M-th consecutive window above the open
threshold whose run starts after the previous alert's last anomalous window, and closes at the N-th
consecutive window below the clear threshold after its opening — and
``tests/alerts/test_episodes.py`` checks that it agrees with ``apply_scores`` on the same scores.
Snooze and maintenance change who sees an alert, not whether it exists, so they are not modelled here.
Part of the Django-free ``detection`` core on purpose: the edge runner (``models_registry.edge``) raises its
alerts with this same function on a gateway without Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One alert that the rules would raise, as indices into the score series.

    ``first`` is the first of the M opening windows, ``opened`` the window that opened it, ``last_seen`` the
    last window above the open threshold, ``closed`` the window that auto-closed it (None: still active at
    the end of the series), ``peak`` the worst window.
    """

    first: int
    opened: int
    last_seen: int
    closed: int | None
    peak: int

    def covers(self, index: int) -> bool:
        """Whether the alert is active at window ``index`` (from its opening to its closing, inclusive)."""
        return self.opened <= index and (self.closed is None or index <= self.closed)


def alert_episodes(
    scores: Sequence[float] | np.ndarray,
    open_threshold: float,
    clear_threshold: float,
    open_windows: int,
    clear_windows: int,
    *,
    higher: bool = True,
) -> list[Episode]:
    """Alerts raised over ``scores`` (one per window, in time order) by the lifecycle's rules.

    ``higher`` False mirrors every comparison (a model whose low scores are bad, e.g. remaining life).
    """
    sign = 1.0 if higher else -1.0
    signed = sign * np.asarray(scores, dtype=np.float64)
    # Plain lists: this loop runs over a month of windows for the noise projections, and indexing NumPy
    # arrays one element at a time is several times slower.
    values: list[float] = signed.tolist()
    above: list[bool] = (signed > sign * open_threshold).tolist()
    below: list[bool] = (signed < sign * clear_threshold).tolist()
    m, n = max(1, int(open_windows)), max(1, int(clear_windows))
    episodes: list[Episode] = []
    run_above = run_below = 0
    boundary = -1  # last anomalous window of the previous alert: an opening run must start after it
    current: dict[str, int] | None = None
    for i in range(len(values)):
        run_above = run_above + 1 if above[i] else 0
        run_below = run_below + 1 if below[i] else 0
        if current is None:
            if run_above >= m and i - m + 1 > boundary:
                # Like lifecycle._open: the peak is the earliest worst of the M opening windows.
                first = i - m + 1
                peak = max(range(first, i + 1), key=lambda k: (values[k], -k))
                current = {"first": first, "opened": i, "last_seen": i, "peak": peak}
            continue
        if above[i]:
            current["last_seen"] = i
            if values[i] > values[current["peak"]]:
                current["peak"] = i
        if run_below >= n and i - n + 1 > current["opened"]:
            episodes.append(Episode(closed=i, **current))
            boundary, current = current["last_seen"], None
    if current is not None:
        episodes.append(Episode(closed=None, **current))
    return episodes


def active_mask(length: int, episodes: Sequence[Episode]) -> np.ndarray:
    """Boolean per window: whether some episode is active there (point-wise predictions for evaluation)."""
    mask = np.zeros(length, dtype=bool)
    for episode in episodes:
        mask[episode.opened : (length if episode.closed is None else episode.closed + 1)] = True
    return mask
