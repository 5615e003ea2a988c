"""Alert services: the lifecycle the scorer drives (``lifecycle``), the technicians' feedback (``feedback``)
and the board's read side (``board``). The public names are re-exported here, so callers import from
``alerts.services``."""

from __future__ import annotations

from alerts.services.board import (
    BOARD_STATES,
    alerts_for_user,
    board_alerts,
    normal_ranges,
    why_lines,
)
from alerts.services.feedback import (
    FeedbackError,
    FeedbackForbidden,
    can_give_verdict,
    current_verdict,
    parse_action,
    record_feedback,
    record_missed_failure,
    undo_verdict,
)
from alerts.services.lifecycle import (
    CRITICALITY_SHIFT,
    PEAK_REEXPLAIN_CHANGE,
    ExplanationUnavailable,
    ScoredWindow,
    apply_scores,
    categorize,
    complete_explanation,
    explain_peak,
    explain_window,
    mark_explanation_failed,
    readings_arrived,
    severity_for,
    window_features,
)

__all__ = [
    "BOARD_STATES",
    "FeedbackError",
    "FeedbackForbidden",
    "alerts_for_user",
    "board_alerts",
    "can_give_verdict",
    "current_verdict",
    "normal_ranges",
    "parse_action",
    "record_feedback",
    "record_missed_failure",
    "undo_verdict",
    "why_lines",
    "CRITICALITY_SHIFT",
    "PEAK_REEXPLAIN_CHANGE",
    "ExplanationUnavailable",
    "ScoredWindow",
    "apply_scores",
    "categorize",
    "complete_explanation",
    "explain_peak",
    "explain_window",
    "mark_explanation_failed",
    "readings_arrived",
    "severity_for",
    "window_features",
]
