"""What both IMS framings read from alerts and report alike: a unit's alerts in the fields the targets are
judged on (``bearing_result``), the targets (``test_summary``), and the summary, protocol and note parts
their reports share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from detection.rules import active_mask
from models_registry.evaluation.fleet import RunAlerts
from models_registry.evaluation.ims.data import PROPOSED, Setup, iso
from models_registry.training import TrainedModel
from plant.datasets import ims as reader

LEAD_TARGET_H = 24.0
HEALTHY_SHARE_TARGET = 0.05
# The state of a bearing of a test the IMS readme does not describe: neither failing nor known healthy.
UNKNOWN = "failure unknown"


def bearing_result(alerts: RunAlerts, end_s: float) -> dict[str, Any]:
    """One bearing's reading of its alerts: first alert and its lead before the end, the alert in force at
    the end (since when), the share of the scored windows in alert."""
    episodes, ends = alerts.episodes, alerts.ends
    first = float(ends[episodes[0].opened]) if episodes else None
    last = episodes[-1] if episodes else None
    at_end = last is not None and last.closed is None
    since = float(ends[last.opened]) if at_end and last is not None else None
    share = float(active_mask(len(ends), episodes).mean()) if len(ends) else None
    return {
        "bearing": alerts.run.key,
        "failing": bool(alerts.run.events),
        "fault": alerts.run.events[0].kind if alerts.run.events else None,
        "windows": len(ends),
        "alerts": len(episodes),
        **first_alert(first, end_s),
        "alert_at_end": at_end,
        "alert_at_end_since_lead_h": None if since is None else lead_h(since, end_s),
        "share_in_alert": None if share is None else round(share, 4),
        "thresholds": alerts.thresholds.to_json(),
    }


def first_alert(first: float | None, end_s: float) -> dict[str, Any]:
    """The first window in alert (None: none) and its lead before the end of the test."""
    return {
        "first_alert": None if first is None else iso(first),
        "first_alert_lead_h": None if first is None else lead_h(first, end_s),
    }


def lead_h(moment_s: float, end_s: float) -> float:
    return round((end_s - moment_s) / 3600.0, 1)


def test_summary(bearings: Sequence[dict[str, Any]], *, failure_known: bool = True) -> dict[str, Any]:
    """Per test: failing bearings alerted ≥ LEAD_TARGET_H before the end, healthy ones' share in alert.
    A test whose failure is not known (a file the readme does not describe) has neither failing nor
    healthy bearings: its bearings' alerts and shares are counted, and ``target_met`` is None (not judged)."""
    if not failure_known:
        shares = [b["share_in_alert"] or 0.0 for b in bearings]
        return {
            "failure_known": False,
            "failing": 0,
            "failing_alerted_24h": 0,
            "failing_min_lead_h": None,
            "healthy": 0,
            "healthy_max_share": None,
            "healthy_mean_share": None,
            "bearings_alerted": sum(1 for b in bearings if b["alerts"]),
            "max_share": round(max(shares), 4) if shares else None,
            "target_met": None,
        }
    failing = [b for b in bearings if b["failing"]]
    healthy = [b for b in bearings if not b["failing"]]
    alerted = [b for b in failing if (b["first_alert_lead_h"] or 0.0) >= LEAD_TARGET_H]
    shares = [b["share_in_alert"] or 0.0 for b in healthy]
    return {
        "failing": len(failing),
        "failing_alerted_24h": len(alerted),
        "failing_min_lead_h": min((b["first_alert_lead_h"] or 0.0 for b in failing), default=None),
        "healthy": len(healthy),
        "healthy_max_share": round(max(shares), 4) if shares else None,
        "healthy_mean_share": round(float(np.mean(shares)), 4) if shares else None,
        "target_met": bool(failing)
        and len(alerted) == len(failing)
        and all(s < HEALTHY_SHARE_TARGET for s in shares),
    }


def outcome(result: dict[str, Any]) -> str:
    """One line of progress for a test's result."""
    if result["target_met"] is None:
        return (
            f"{UNKNOWN}, bearings alerted {result['bearings_alerted']}, max share in alert "
            f"{result['max_share']}"
        )
    return (
        f"failing alerted ≥ {LEAD_TARGET_H:g} h before the end {result['failing_alerted_24h']}/"
        f"{result['failing']}, healthy max share in alert {result['healthy_max_share']}"
    )


def state(test: reader.ImsTest, fault: str | None) -> str:
    """A bearing's state in a row: its fault, else healthy (or UNKNOWN in a test the readme lacks)."""
    return fault or ("healthy" if test.failures else UNKNOWN)


def model_details(model: TrainedModel) -> dict[str, Any]:
    """The trained model's plain metrics and the version's thresholds, for a report's details."""
    return {
        "model": {k: v for k, v in model.metrics.items() if _plain(v)},
        "version_thresholds": [model.open_threshold, model.clear_threshold],
    }


def summary_fields(
    setup: Setup, judged: Sequence[dict[str, Any] | None], target: str, started: float
) -> dict[str, Any]:
    """The summary's fields after its per-test results: which tests were evaluated, set aside and not
    judged, the ``target`` (text), and whether every ``judged`` result (one per test with a known failure;
    None: the judged detector did not run) met it."""
    tests = [t for t, _, _ in setup.loaded]
    return {
        "evaluated_tests": [t.name for t in tests],
        "available_tests": [t.name for t in setup.present],
        "skipped_tests": setup.skipped,
        "not_judged_tests": [t.name for t in tests if not t.failures],
        "target": target,
        "target_detector": PROPOSED if PROPOSED in setup.detectors else None,
        "target_met": bool(judged) and all(j is not None and j["target_met"] for j in judged),
        "seconds": round(time.monotonic() - started, 1),
    }


def protocol_fields(setup: Setup) -> dict[str, Any]:
    """The protocol's settings both framings report first."""
    return {
        "calibration_snapshots": setup.n_cal,
        "window_s": setup.protocol.window_s,
        "step_s": setup.protocol.step_s,
        "open_windows": setup.protocol.open_windows,
        "clear_windows": setup.protocol.clear_windows,
        "holdout_fraction": setup.protocol.holdout_fraction,
    }


def evaluated(setup: Setup) -> str:
    """The evaluated tests with their failures, for the first note."""
    return ", ".join(f"{t.name} ({_failures(t)})" for t, _, _ in setup.loaded)


def skipped_notes(setup: Setup) -> list[str]:
    """A note naming every test found in the folder that could not be used, and why (none: no note)."""
    if not setup.skipped:
        return []
    return [
        "Not evaluated (found in the data folder, but cannot be used): "
        + "; ".join(f"{name}: {why}" for name, why in setup.skipped.items())
        + "."
    ]


def _failures(test: reader.ImsTest) -> str:
    if not test.failures:
        return f"{UNKNOWN}: the IMS readme does not describe this test, so it is reported, not judged"
    kinds = ", ".join(f"bearing {b} {kind.replace('_', ' ')}" for b, kind in test.failures.items())
    return f"failing: {kinds}"


def _plain(value: Any) -> bool:
    return isinstance(value, int | float | str | bool) or value is None
