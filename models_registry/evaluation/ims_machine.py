"""IMS as machines (``evaluate ims --framing machine``; protocol in docs/evaluation/ims-machine.md).

A plant engineer models a test rig as ONE asset whose sensor roles are its bearings' channels
(``bearing3_vibration``, ``bearing3_vibration_y``, ...). The product then decides when the machine is in
alert (the fleet protocol with a fleet of one: windows, robust calibration, model, thresholds, alert
rules) and which bearing an alert names: the dominant-role rule of its explanation
(``detection.explain.dominant_roles``) with each bearing's channels summed into one push (``parts``).

A bearing is in alert in a window when the machine is in alert there and the bearing is among that window's
dominant bearings. These functions only regroup the bearings' readings and read the explanations; every
rule they apply is the product's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.explain import ExplanationError, dominant_roles, explain, top_role
from detection.rules import active_mask
from models_registry.evaluation.fleet import FleetRun, RunAlerts


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
