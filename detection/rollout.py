"""The acceptance rule of an edge model update tried in shadow, used by the agent (edge.updates) and by
the server's auto-approval (models_registry.edge_rollout) alike: one rule, one place."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


# Time in alert below this share is not held against a candidate (a genuine fault during the trial).
MIN_SHARE = 0.02


def correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pearson correlation of two score series over the same windows (None: too few or constant)."""
    if len(a) < 3:
        return None
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.std() == 0 or y.std() == 0:
        return None
    value = float(np.corrcoef(x, y)[0, 1])
    return value if math.isfinite(value) else None


def shadow_verdict(
    report: Mapping[str, Any], *, max_alert_factor: float, min_correlation: float, min_windows: int
) -> tuple[bool, str]:
    """Whether a shadow trial's report is within bounds: enough windows compared, no more than
    ``max_alert_factor`` × the current model's alerts (at least one allowed, so a quiet current model does
    not forbid every alert) and × its share of time in alert (at least MIN_SHARE), and scores correlated at least ``min_correlation`` (when measurable)."""
    windows = int(report.get("windows") or 0)
    if windows < min_windows:
        return False, f"only {windows} windows compared (need {min_windows})"
    current, candidate = int(report.get("alerts_current") or 0), int(report.get("alerts_candidate") or 0)
    allowed = max_alert_factor * max(1, current)
    if candidate > allowed:
        return False, (
            f"the candidate would raise {candidate} alerts where the current model raised {current} "
            f"(limit {allowed:g})"
        )
    # One alert that never clears is no better than many: compare the time spent in alert as well.
    share_current = float(report.get("alert_share_current") or 0.0)
    share_candidate = float(report.get("alert_share_candidate") or 0.0)
    if share_candidate > max_alert_factor * max(share_current, MIN_SHARE):
        return False, (
            f"the candidate would be in alert {share_candidate:.0%} of the time, the current model "
            f"{share_current:.0%}"
        )
    corr = report.get("score_correlation")
    if corr is not None and corr < min_correlation:
        return False, f"scores correlate {corr:.2f} with the current model's (need {min_correlation:.2f})"
    return True, "within bounds"
