"""IMS as machines (``evaluate ims --framing machine``; protocol pre-registered in
docs/evaluation/ims-machine.md).

A plant engineer models a test rig as ONE asset whose sensor roles are its bearings' channels
(``bearing3_vibration``, ``bearing3_vibration_y``, ...). The product then decides when the machine is in
alert (the fleet protocol with a fleet of one: windows, robust calibration, model, thresholds, alert
rules) and which bearing an alert names: the dominant-role rule of its explanation
(``detection.explain.dominant_roles``) with each bearing's channels summed into one push (``parts``).

A bearing is in alert in a window when the machine is in alert there and the bearing is among that window's
dominant bearings (``attribute``); the bearing framing's targets (``results.test_summary``) judge it. These
functions only regroup the bearings' readings and read the explanations; every rule they apply is the
product's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.management.base import CommandError

from detection.explain import (
    DOMINANT_MAX_ROLES,
    DOMINANT_SHARE,
    ExplanationError,
    dominant_roles,
    explain,
    top_role,
)
from detection.rules import active_mask
from models_registry.evaluation.fleet import FleetRun, RunAlerts, alert_runs, prepare
from models_registry.evaluation.ims.data import (
    PROPOSED,
    TRAIN_PARAMS,
    VARIANT,
    Setup,
    iso,
    load_setup,
    with_detector,
)
from models_registry.evaluation.ims.results import (
    HEALTHY_SHARE_TARGET,
    LEAD_TARGET_H,
    bearing_result,
    evaluated,
    first_alert,
    model_details,
    outcome,
    protocol_fields,
    skipped_notes,
    state,
    summary_fields,
    test_summary,
)
from models_registry.evaluation.report import Evaluation
from plant.datasets import ims as reader

FRAMING = "machine"
# The machine report's own file name keeps ims.md and the hand-written protocol (ims-machine.md) intact.
REPORT = "ims-machine-framing"


def run(options: dict[str, Any], progress: Callable[[str], None]) -> Evaluation:
    """The machine framing (docs/evaluation/ims-machine.md): per test one asset whose roles are its
    bearings' channels (``machine_run``), the product's path with VARIANT, and per bearing the windows in
    which the machine is in alert AND the bearing is among the window's dominant bearings (``attribute``);
    judged by ``test_summary`` on the PROPOSED detector."""
    if options.get("normalisation") is not None or options.get("peers") is not None:
        raise CommandError(
            "--framing machine runs the pre-registered per_asset_robust step only "
            "(docs/evaluation/ims-machine.md); drop --normalisation / --peers"
        )
    started = time.monotonic()
    setup = load_setup(options, progress)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"tests": {}}
    summary: dict[str, Any] = {"tests": {}}
    for test, runs, facts in setup.loaded:
        machine, parts = machine_run(test.name, runs, facts["roles"])
        prepared = prepare([machine], list(parts), setup.protocol)
        faults = {run.key: run.events[0].kind for run in runs if run.events}
        progress(f"{test.name}: one machine, roles {', '.join(parts)}, {facts['snapshots']} snapshots")
        kept = (
            "roles",
            "snapshots",
            "start",
            "calibration_end",
            "end",
            "hours",
            "failures",
            "flagged_readings",
        )
        details["tests"][test.name] = {
            **{key: facts[key] for key in kept},
            "machine_roles": parts,
            "detectors": {},
        }
        summary["tests"][test.name] = {}
        for detector in setup.detectors:
            (alerts,) = alert_runs(prepared, with_detector(setup.protocol, detector), VARIANT)
            attribution = attribute(alerts, parts)
            whole = bearing_result(alerts, facts["end_s"])
            bearings = [
                named_result(part, named, alerts.ends, facts["end_s"], faults, attribution.titles)
                for part, named in attribution.named.items()
            ]
            result = test_summary(bearings, failure_known=bool(test.failures))
            summary["tests"][test.name][detector] = result
            details["tests"][test.name]["detectors"][detector] = {
                "machine": whole,
                "bearings": bearings,
                "summary": result,
                "unexplained_windows": attribution.unexplained,
                "alerts": [
                    {
                        "opened": iso(float(alerts.ends[episode.opened])),
                        "closed": None if episode.closed is None else iso(float(alerts.ends[episode.closed])),
                        "title_bearing": title,
                    }
                    for episode, title in zip(alerts.episodes, attribution.titles, strict=True)
                ],
                **model_details(alerts.model),
            }
            rows.append(_row(test, detector, whole, whole=True))
            rows += [_row(test, detector, b, whole=False) for b in bearings]
            progress(
                f"{test.name}, machine, {detector}: {whole['alerts']} alerts, share {whole['share_in_alert']}; "
                f"{outcome(result)}"
            )
    judged = [summary["tests"][t.name].get(PROPOSED) for t, _, _ in setup.loaded if t.failures]
    target = (
        f"every failing bearing in alert (machine in alert, bearing among the window's "
        f"dominant bearings) ≥ {LEAD_TARGET_H:g} h before the end, healthy bearings so in alert < "
        f"{HEALTHY_SHARE_TARGET:.0%} of the time"
    )
    summary.update({"framing": FRAMING, **summary_fields(setup, judged, target, started)})
    details["protocol"] = {
        **protocol_fields(setup),
        "normalisation": VARIANT.normalisation,
        "asset_thresholds": VARIANT.asset_thresholds,
        "train_params": TRAIN_PARAMS,
        "dominant_share": DOMINANT_SHARE,
        "dominant_max_roles": DOMINANT_MAX_ROLES,
    }
    return Evaluation(
        dataset=REPORT,
        rows=rows,
        summary=summary,
        notes=_notes(setup, details["tests"]),
        details=details,
    )


def named_result(
    part: str,
    named: np.ndarray,
    ends: np.ndarray,
    end_s: float,
    faults: Mapping[str, str],
    titles: Sequence[str],
) -> dict[str, Any]:
    """One bearing of a machine in the fields ``test_summary`` judges: failing (``faults``: bearing ->
    kind), the first window it is in alert (``named``) and that window's lead before ``end_s``, the share of
    the scored windows it is in alert, and how many of the machine's alerts its title names (``titles``)."""
    hits = np.flatnonzero(named)
    first = float(ends[hits[0]]) if len(hits) else None
    return {
        "bearing": part,
        "failing": part in faults,
        "fault": faults.get(part),
        "windows": len(ends),
        "windows_in_alert": int(named.sum()),
        **first_alert(first, end_s),
        "share_in_alert": round(float(named.mean()), 4) if len(ends) else None,
        "alerts_titled": sum(title == part for title in titles),
    }


def _row(test: reader.ImsTest, detector: str, b: dict[str, Any], *, whole: bool) -> dict[str, Any]:
    """A row of the machine report: the machine itself (``whole``, ``bearing_result``'s fields) or one of its
    bearings (``named_result``'s)."""
    return {
        "test": test.name,
        "detector": detector,
        "judged": "yes" if detector == PROPOSED else "—",
        "unit": b["bearing"],
        "state": "machine" if whole else state(test, b["fault"]),
        "alerts": b["alerts"] if whole else None,
        "titled": None if whole else b["alerts_titled"],
        "windows_in_alert": None if whole else b["windows_in_alert"],
        "first_in_alert_utc": b["first_alert"],
        "lead_h": b["first_alert_lead_h"],
        "share_in_alert": b["share_in_alert"],
    }


def _notes(setup: Setup, facts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    sources = "; ".join(
        f"{test} {detector}: {d['bearings'][0]['windows']} scored windows, thresholds "
        f"{d['machine']['thresholds']['source']}, {d['unexplained_windows']} windows in alert unexplained"
        for test, f in facts.items()
        for detector, d in f["detectors"].items()
        if d["bearings"]
    )
    notes = [
        "Framing: machine (protocol, fixed before the run: docs/evaluation/ims-machine.md). Evaluated: "
        f"{evaluated(setup)}. "
        "One asset per test rig; its roles are each bearing's channels (bearing<k>_<channel role>); one "
        "model per test and detector over the rig's calibration windows.",
    ]
    return (
        notes
        + skipped_notes(setup)
        + [
            f"Production path as ims.md's: calibration the first {setup.n_cal} snapshots, windows "
            f"{setup.protocol.window_s / 3600:g} h every {setup.protocol.step_s / 60:g} min, "
            f"{VARIANT.normalisation} with per-asset thresholds (detection.thresholds; the version's when the "
            f"hold-out is too short), train_anomaly {TRAIN_PARAMS}, alerts with M = {setup.protocol.open_windows}, "
            f"N = {setup.protocol.clear_windows}. {sources}.",
            "Attribution: every window in which the machine is in alert is explained by detection.explain.explain "
            "(exact Shapley values of the ONNX artifact; combined: of the winning branch); its dominant bearings "
            f"are detection.explain.dominant_roles with each bearing's roles summed (the fewest covering "
            f"{DOMINANT_SHARE:.0%} of the positive net pushes, at most {DOMINANT_MAX_ROLES}). A bearing is in "
            "alert in a window when the machine is and the bearing is among them.",
            "Reading: machine rows: the machine's alerts, its first alert's lead before the end (the last running "
            "snapshot) and its share in alert. Bearing rows: titled = the machine's alerts whose opening window "
            "puts the bearing first (the alert's title); windows_in_alert, first_in_alert_utc and lead_h = the "
            "windows in which the bearing is in alert, the first of them and its lead before the end; "
            "share_in_alert = those windows over the scored windows.",
            f"Targets (issue 13), judged on {PROPOSED} (judged = yes): every failing bearing's lead ≥ "
            f"{LEAD_TARGET_H:g} h and every healthy bearing's share < {HEALTHY_SHARE_TARGET:.0%}, on each test with "
            "a known failure; pca and univariate rows are context.",
        ]
    )


def machine_run(
    name: str, bearings: Sequence[FleetRun], roles: Sequence[str]
) -> tuple[FleetRun, dict[str, str]]:
    """One asset for the rig from its bearings' runs (the same readings, flags and periods): role
    ``<bearing>_<role>`` per bearing and channel role, where ``<bearing>`` is the part of the bearing's key
    after its last "-" (``test1-bearing3`` -> ``bearing3``). Returns the run and role -> bearing key (the
    parts its explanations are summed by). The machine's events are its bearings' failures."""
    if not bearings:
        raise ValueError("a machine needs at least one bearing")
    first = bearings[0]
    series, parts = {}, {}
    for bearing in bearings:
        if bearing.calibration != first.calibration or bearing.test != first.test:
            raise ValueError(f"{bearing.key} has other calibration or test periods than {first.key}")
        prefix = bearing.key.rsplit("-", 1)[-1]
        for role in roles:
            series[f"{prefix}_{role}"] = bearing.series[role]
            parts[f"{prefix}_{role}"] = bearing.key
    if len(parts) != len(bearings) * len(roles):
        raise ValueError("two bearings give the same role name: their keys end alike")
    run = FleetRun(
        key=f"{name}-machine",
        group=name,
        series=series,
        calibration=first.calibration,
        test=first.test,
        events=tuple(event for bearing in bearings for event in bearing.events),
        sample_period_s=first.sample_period_s,
    )
    return run, parts


@dataclass
class Attribution:
    """Which parts a machine's alerts name, window by window over its scored period."""

    active: np.ndarray  # bool per window: the machine is in alert
    named: dict[str, np.ndarray]  # part -> bool per window: in alert AND among the window's dominant parts
    unexplained: int  # windows in alert whose explanation failed (they name no part)
    titles: list[str]  # per alert: the part its opening window's explanation puts first ("" without one)


def attribute(alerts: RunAlerts, parts: Mapping[str, str]) -> Attribution:
    """Explain every window in which the machine is in alert (``detection.explain.explain``, strict, as the
    lifecycle stores explanations) and mark the parts among its dominant roles summed per part."""
    n = len(alerts.ends)
    active = active_mask(n, alerts.episodes) if n else np.zeros(0, dtype=bool)
    named = {part: np.zeros(n, dtype=bool) for part in dict.fromkeys(parts.values())}
    model = alerts.model
    explained: dict[int, dict[str, Any]] = {}
    failed = 0
    for i in np.flatnonzero(active):
        try:
            explanation = explain(
                model.onnx_bytes, alerts.inputs[i], model.background, model.feature_names, model.output_spec
            )
        except ExplanationError:
            failed += 1
            continue
        explained[int(i)] = explanation
        for part in dominant_roles(explanation, parts=parts):
            if part in named:
                named[part][i] = True
    titles = [top_role(explained.get(episode.opened), parts=parts) for episode in alerts.episodes]
    return Attribution(active, named, failed, titles)
