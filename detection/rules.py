"""The alert rule engine: one pure step function over scored windows, and its fold over a whole series.

``step(state, window, params)`` is the only place the alert rules live. The live lifecycle
(``alerts.services.lifecycle.apply_scores``) loads the state from the active Alert row and the stored Score
rows, calls ``step`` once per new window and persists the transitions it returns (Alert and AlertEvent
rows, explanations, broadcasts). ``alert_episodes`` folds ``step`` over a whole score series for what-if
questions ("how many alerts would this asset have had at a higher threshold?", "which alerts would the
challenger have raised last month?", "what does the production path detect on a SKAB run?"): the
backtest, the evaluations and the edge runner (on a gateway without Django) use it.

Rules (M = ``open_windows``, N = ``clear_windows``):

* An alert opens at a window when it and the M - 1 windows before it all score above the open threshold
  and the first of them comes after the previous alert's last anomalous window (a window attributed to one
  alert cannot open another). Its peak is the earliest worst of those M windows, its count M. It opens
  held as ``suppressed`` when the opening window lies inside a maintenance window.
* Every later window above the open threshold updates the active alert: count + 1, last seen, and the
  peak when strictly worse.
* The active alert auto-closes at a window when the last N' windows all score below the clear threshold and
  the first of them comes after the opening window. In between (clear ≤ score ≤ open) nothing changes:
  hysteresis. N' = max(N, ``window_overlap``), the clear hysteresis stated in readings: windows of
  ``window_s`` every ``step_s`` share readings with the ``ceil(window_s / step_s) - 1`` windows after them
  (``overlap``), so a condition counts as ended only once a window of wholly fresh readings is below the
  clear threshold too — a window still holding readings of the last anomalous one is not independent
  evidence that it ended, and an alert cleared on such windows re-opens on the next excursion (a
  chattering alarm, the kind that teaches operators to ignore alerts). With the product's windows (60 s
  every 10 s, N = 6) the two are equal and nothing changes; an asset type with long windows over a short
  step clears after a window length.
* A ``suppressed`` alert resumes on a window above the open threshold outside maintenance; an alert whose
  snooze has expired (``snooze_expired``) resumes on a window not below the clear threshold.

Verdicts (``judge``): an alert is an episode of one condition on one asset, and a technician's verdict
closes it for the operator but not for the rules. A judged alert stays the engine's active alert
(``ActiveAlert.judged``: in work or not, the peak score and severity level at the verdict):

* further windows above the open threshold attach to it silently (``Seen``: count, last seen, peak);
* it ends (``Cleared``) after the same N windows below the clear threshold as any alert, except while it
  is **in work** (a repair scheduled): that latch holds until the repair is recorded (``judge`` again with
  ``in_work`` False) and then the condition clears;
* in work, it absorbs every window, however bad (the crew is on it; a repair itself disturbs the signals);
* judged and not in work, it escalates (``Reopened``: the episode ends and a new alert opens, like any
  alert, on M windows) when M consecutive windows each have a severity level (``severity_level`` with
  ``params.severity_shift``) above the level at the verdict, or a score past ``params.escalation_factor``
  × the peak at the verdict (in the bad direction: × the factor for ``higher``, ÷ it otherwise) — M, as for
  opening, so one stray window does not re-open what a technician judged;
* once it has ended, the condition coming back opens a new alert by the ordinary M-window rule.

``params.higher`` False mirrors every comparison (a model whose low scores are bad, e.g. remaining life).
Window keys are anything ordered: indices for a series, window end times for the lifecycle.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import numpy as np


class Hold(str, Enum):
    """Why an active alert is held back from the people who would see it, as far as the rules care."""

    NONE = ""
    SUPPRESSED = "suppressed"  # opened inside maintenance
    SNOOZE_EXPIRED = "snooze_expired"  # snoozed, and the snooze is over


@dataclass(frozen=True)
class RuleParams:
    """Thresholds, window counts and direction of one (asset, version); how a judged episode escalates."""

    open_threshold: float
    clear_threshold: float
    open_windows: int
    clear_windows: int
    higher: bool = True
    # A judged episode re-opens when a window passes this multiple of the peak at the verdict ...
    escalation_factor: float = 1.5
    # ... or a higher severity level than at the verdict (the asset's criticality shift, see severity_level).
    severity_shift: int = 0
    severity_levels: int = 4
    # Windows that share readings with one window, counting it (``overlap(window_s, step_s)``); the alert
    # clears only after max(clear_windows, window_overlap) windows below the clear threshold.
    window_overlap: int = 1

    # Derived once: step runs per window over months of windows in the noise projections.
    sign: float = field(init=False)
    depth: int = field(init=False)  # how many recent windows the rules look at
    clear_run: int = field(init=False)  # windows below the clear threshold that close an alert
    _open: float = field(init=False, repr=False)
    _clear: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fix = object.__setattr__
        fix(self, "open_windows", max(1, int(self.open_windows)))
        fix(self, "clear_windows", max(1, int(self.clear_windows)))
        fix(self, "sign", 1.0 if self.higher else -1.0)
        fix(self, "window_overlap", max(1, int(self.window_overlap)))
        fix(self, "clear_run", max(self.clear_windows, self.window_overlap))
        fix(self, "depth", max(self.open_windows, self.clear_run))
        fix(self, "_open", self.sign * self.open_threshold)
        fix(self, "_clear", self.sign * self.clear_threshold)

    def above_open(self, score: float) -> bool:
        return self.sign * score > self._open

    def below_clear(self, score: float) -> bool:
        return self.sign * score < self._clear

    def worse(self, a: float, b: float) -> bool:
        return self.sign * a > self.sign * b

    def level(self, score: float) -> int:
        """The severity level of a score (``severity_level`` with this asset's shift)."""
        return severity_level(
            score,
            self.open_threshold,
            self.clear_threshold,
            shift=self.severity_shift,
            higher=self.higher,
            levels=self.severity_levels,
        )

    def escalates(self, score: float, judged: Judgement) -> bool:
        """Whether a window is worse than the episode was when judged: a higher severity level, or past
        ``escalation_factor`` × the peak at the verdict (÷ for a lower-is-worse score)."""
        factor = self.escalation_factor if self.higher else 1.0 / self.escalation_factor
        return self.level(score) > judged.level or self.worse(score, judged.peak_score * factor)


class Window(NamedTuple):
    """One scored window: its key (index or end time), score, and whether it lies inside maintenance.

    ``context`` marks a window that was scored before but is not new (the lifecycle re-reads the stored
    windows between the new ones): it counts in the runs of consecutive windows, but no rule fires on it.
    """

    key: Any
    score: float
    in_maintenance: bool = False
    context: bool = False


class Judgement(NamedTuple):
    """A technician's verdict on the active episode, as far as the rules care: whether a repair is in work
    (latched until recorded), and the peak score and severity level the episode had when judged."""

    in_work: bool
    peak_score: float
    level: int


class ActiveAlert(NamedTuple):
    """The rules' view of the active alert: ``first`` is the first of the M opening windows, ``opened`` the
    window that opened it, ``last_seen`` the last window above the open threshold, ``peak`` the worst."""

    first: Any
    opened: Any
    last_seen: Any
    peak: Any
    peak_score: float
    count: int
    hold: Hold = Hold.NONE
    judged: Judgement | None = None


def judge(alert: ActiveAlert, params: RuleParams, *, in_work: bool) -> ActiveAlert:
    """The episode after a verdict: judged at its current peak (and that peak's severity level); in work
    when a repair is scheduled. A later verdict on the same episode (e.g. "repaired" after "repair
    scheduled") judges it again."""
    return alert._replace(
        hold=Hold.NONE,
        judged=Judgement(in_work, alert.peak_score, params.level(alert.peak_score)),
    )


@dataclass(frozen=True)
class RuleState:
    """Everything ``step`` needs: the last ``params.depth`` windows (key, score), oldest first, the active
    alert, and the last anomalous window of the previous alert (``boundary``, None: no previous alert)."""

    recent: tuple[tuple[Any, float], ...] = ()
    active: ActiveAlert | None = None
    boundary: Any = None


class Opened(NamedTuple):
    """An alert opened at window ``key`` (held ``suppressed`` when it opened inside maintenance)."""

    alert: ActiveAlert
    key: Any


class Seen(NamedTuple):
    """Window ``key`` scored above the open threshold: ``alert`` is the updated alert; ``new_peak`` whether
    the window became its peak."""

    alert: ActiveAlert
    key: Any
    new_peak: bool


class Cleared(NamedTuple):
    """The alert auto-closed at window ``key`` after ``clear_run`` windows below the clear threshold."""

    alert: ActiveAlert
    key: Any


class Resumed(NamedTuple):
    """A held alert became visible again at window ``key``; ``hold`` says what it was held by."""

    alert: ActiveAlert
    key: Any
    hold: Hold


class Reopened(NamedTuple):
    """The judged episode ``previous`` escalated at window ``key``: it ends there and ``alert`` opens."""

    previous: ActiveAlert
    alert: ActiveAlert
    key: Any


Transition = Opened | Seen | Cleared | Resumed | Reopened


def step(
    state: RuleState, windows: Sequence[Window], params: RuleParams
) -> tuple[RuleState, list[Transition]]:
    """Apply the alert rules to the next windows (ascending keys, after every window of ``state.recent``).

    Returns the new state and the transitions, in the order they happened. Pure: no I/O, no clock; every
    fact from outside (maintenance, an expired snooze) comes in ``windows`` or ``state``.
    """
    m, n = params.open_windows, params.clear_run
    recent: deque[tuple[Any, float]] = deque(state.recent, maxlen=params.depth)
    active, boundary = state.active, state.boundary
    transitions: list[Transition] = []
    for window in windows:
        key, score = window.key, window.score
        recent.append((key, score))
        if window.context:
            continue
        above = params.above_open(score)
        if active is None:
            if not above or len(recent) < m:  # the common case: a quiet window, no alert
                continue
            opening = list(recent)[-m:]
            if all(params.above_open(value) for _, value in opening) and (
                boundary is None or opening[0][0] > boundary
            ):
                active = _opening(opening, key, params)
                if window.in_maintenance:
                    active = active._replace(hold=Hold.SUPPRESSED)
                transitions.append(Opened(active, key))
            continue

        if (
            above
            and active.judged is not None
            and not active.judged.in_work
            and len(recent) >= m
            and all(params.escalates(value, active.judged) for _, value in list(recent)[-m:])
        ):
            previous = active
            active = _opening(list(recent)[-m:], key, params)
            transitions.append(Reopened(previous, active, key))
            continue

        if above:
            new_peak = params.worse(score, active.peak_score)
            active = active._replace(
                count=active.count + 1,
                last_seen=max(active.last_seen, key),
                peak=key if new_peak else active.peak,
                peak_score=score if new_peak else active.peak_score,
            )
            transitions.append(Seen(active, key, new_peak))

        below = params.below_clear(score)
        latched = active.judged is not None and active.judged.in_work
        if below and not latched and len(recent) >= n:
            closing = list(recent)[-n:]
            if closing[0][0] > active.opened and all(params.below_clear(value) for _, value in closing):
                transitions.append(Cleared(active, key))
                boundary, active = active.last_seen, None
                continue

        if (active.hold == Hold.SNOOZE_EXPIRED and not below) or (
            active.hold == Hold.SUPPRESSED and above and not window.in_maintenance
        ):
            held, active = active.hold, active._replace(hold=Hold.NONE)
            transitions.append(Resumed(active, key, held))
    return RuleState(tuple(recent), active, boundary), transitions


def overlap(window_s: float, step_s: float) -> int:
    """How many consecutive windows of ``window_s`` every ``step_s`` share readings with the first of them,
    counting it: ceil(window_s / step_s) (1 for windows that do not overlap). ``RuleParams.window_overlap``.
    """
    if not (window_s > 0 and step_s > 0):
        raise ValueError(f"window_s and step_s must be positive, got {window_s!r} and {step_s!r}")
    # A tolerance for ratios like 60 / 10 computed in floating point (6.000000000000001 is 6 windows).
    return max(1, math.ceil(window_s / step_s - 1e-9))


def _opening(run: list[tuple[Any, float]], key: Any, params: RuleParams) -> ActiveAlert:
    """The alert the M windows of ``run`` open at ``key``: its peak is the earliest worst of them."""
    peak_key, peak = run[0]
    for other, value in run[1:]:
        if params.worse(value, peak):
            peak_key, peak = other, value
    return ActiveAlert(
        first=run[0][0], opened=key, last_seen=key, peak=peak_key, peak_score=peak, count=len(run)
    )


def severity_level(
    peak: float,
    open_threshold: float,
    clear_threshold: float,
    *,
    shift: int = 0,
    higher: bool = True,
    levels: int = 4,
) -> int:
    """Severity level (0 = lowest) from how far the peak is past the open threshold.

    excess = (peak - open) / (open - clear), in the score's bad direction (a zero-width band counts as 10 %
    of |open|, at least 0.1). Base level: excess < 2 → 0, < 8 → 1, else 2; ``shift`` (the asset's
    criticality: -1, 0 or +1) moves it, clamped to 0..levels - 1 — so only a high-criticality asset far
    past its threshold reaches the top level, and a low-criticality asset is at most level 1.
    """
    sign = 1.0 if higher else -1.0
    band = sign * (open_threshold - clear_threshold)
    if band <= 0:
        band = max(abs(open_threshold), 1.0) * 0.1
    excess = sign * (peak - open_threshold) / band
    level = (0 if excess < 2 else 1 if excess < 8 else 2) + shift
    return min(max(level, 0), levels - 1)


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

    @classmethod
    def of(cls, alert: ActiveAlert, closed: int | None) -> Episode:
        return cls(
            first=alert.first, opened=alert.opened, last_seen=alert.last_seen, closed=closed, peak=alert.peak
        )


def alert_episodes(
    scores: Sequence[float] | np.ndarray,
    open_threshold: float,
    clear_threshold: float,
    open_windows: int,
    clear_windows: int,
    *,
    higher: bool = True,
    window_overlap: int = 1,
) -> list[Episode]:
    """Alerts raised over ``scores`` (one per window, in time order): ``step`` folded over the series.

    ``higher`` False mirrors every comparison (a model whose low scores are bad, e.g. remaining life);
    ``window_overlap`` is ``overlap(window_s, step_s)`` of the windows scored (the clear hysteresis in
    readings, see the module docstring).
    """
    params = RuleParams(
        open_threshold,
        clear_threshold,
        open_windows,
        clear_windows,
        higher=higher,
        window_overlap=window_overlap,
    )
    # A plain list: indexing a NumPy array one element at a time is several times slower.
    values: list[float] = np.asarray(scores, dtype=np.float64).tolist()
    state, transitions = step(RuleState(), [Window(i, value) for i, value in enumerate(values)], params)
    episodes = []
    for t in transitions:
        if isinstance(t, Cleared):
            episodes.append(Episode.of(t.alert, t.key))
        elif isinstance(t, Reopened):  # only after a verdict: a fold without verdicts never has one
            episodes.append(Episode.of(t.previous, t.key))
    if state.active is not None:
        episodes.append(Episode.of(state.active, None))
    return episodes


def active_mask(length: int, episodes: Sequence[Episode]) -> np.ndarray:
    """Boolean per window: whether some episode is active there (point-wise predictions for evaluation)."""
    mask = np.zeros(length, dtype=bool)
    for episode in episodes:
        mask[episode.opened : (length if episode.closed is None else episode.closed + 1)] = True
    return mask
