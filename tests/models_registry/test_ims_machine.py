"""The IMS machine framing's core (``models_registry.evaluation.ims.machine``) on synthetic rigs: one asset
whose roles are its bearings' channels; a bearing is in alert when the machine is and the window's
explanation names it among its dominant bearings."""

from __future__ import annotations

import numpy as np
import pytest

from models_registry.evaluation.fleet import Event, FleetRun, Protocol, Variant, alert_runs, prepare
from models_registry.evaluation.ims.machine import attribute, machine_run

STEP_S = 600.0
SNAPSHOTS = 720  # 120 h at 10 min
CALIBRATION = 200
DEPART_FROM = 480  # the departing bearing's last 40 h
PROTOCOL = Protocol(
    window_s=6 * STEP_S,
    step_s=STEP_S,
    open_windows=3,
    clear_windows=6,
    attribution_s=0.0,
    params={"open_rule": "tail", "detector": "combined"},
)
ROBUST = Variant("per_asset_robust", asset_thresholds=True)


def _rig(channels: dict[str, int], departing: str, seed: int = 5) -> list[FleetRun]:
    """Bearings on one shaft: every channel follows the shaft's slow load swings (so the channels are
    correlated) with 1 % noise of its own; ``departing`` grows ×8 over the last 40 h."""
    rng = np.random.default_rng(seed)
    ts = 1.0e9 + np.arange(SNAPSHOTS) * STEP_S
    shaft = 1.0 + 0.05 * np.sin(np.arange(SNAPSHOTS) / 30.0)
    growth = np.exp(np.clip((np.arange(SNAPSHOTS) - DEPART_FROM) / 6.0, 0.0, None) * np.log(8.0) / 40.0)
    quality = np.zeros(SNAPSHOTS, dtype=np.uint16)
    runs = []
    for b, (bearing, count) in enumerate(channels.items()):
        series = {}
        for c, role in enumerate(("vibration", "vibration_y")[:count]):
            level = 0.05 + 0.01 * (2 * b + c)
            values = level * shaft * (1.0 + 0.01 * rng.standard_normal(SNAPSHOTS))
            if bearing == departing:
                values = values * growth
            series[role] = (ts, values, quality)
        end = float(ts[-1])
        events = (Event("inner_race_defect", end, end),) if bearing == departing else ()
        runs.append(
            FleetRun(
                key=bearing,
                group="rig",
                series=series,
                calibration=(float(ts[0]), float(ts[CALIBRATION - 1])),
                test=(float(ts[CALIBRATION - 1]), end),
                events=events,
                sample_period_s=STEP_S,
            )
        )
    return runs


def _attributed(runs: list[FleetRun], roles: list[str]):
    machine, parts = machine_run("rig", runs, roles)
    (alerts,) = alert_runs(prepare([machine], list(parts), PROTOCOL), PROTOCOL, ROBUST)
    return alerts, attribute(alerts, parts)


def test_two_correlated_bearings_where_one_departs_name_the_departing_one():
    runs = _rig({"rig-bearing1": 1, "rig-bearing2": 1}, departing="rig-bearing2")
    alerts, found = _attributed(runs, ["vibration"])
    assert found.active.any(), "the machine never alerted"
    assert found.unexplained == 0
    departing, steady = found.named["rig-bearing2"], found.named["rig-bearing1"]
    # Named while the machine is in alert only, and well before the end (it departs 40 h before it).
    assert not (departing & ~found.active).any()
    first = float(alerts.ends[np.flatnonzero(departing)[0]])
    assert (float(alerts.ends[-1]) - first) / 3600.0 >= 24.0
    assert departing.sum() >= 0.9 * found.active.sum()
    # The steady bearing shares the shaft's swings but did not depart: it is (almost) never named.
    assert steady.mean() < 0.05
    assert set(found.titles) == {"rig-bearing2"}


def test_a_bearing_with_two_channels_is_named_as_one_bearing():
    runs = _rig({"rig-bearing1": 2, "rig-bearing2": 2, "rig-bearing3": 2}, departing="rig-bearing1")
    machine, parts = machine_run("rig", runs, ["vibration", "vibration_y"])
    assert list(machine.series) == [
        "bearing1_vibration",
        "bearing1_vibration_y",
        "bearing2_vibration",
        "bearing2_vibration_y",
        "bearing3_vibration",
        "bearing3_vibration_y",
    ]
    assert parts["bearing1_vibration_y"] == "rig-bearing1"
    assert [e.kind for e in machine.events] == ["inner_race_defect"]
    _, found = _attributed(runs, ["vibration", "vibration_y"])
    assert set(found.named) == {"rig-bearing1", "rig-bearing2", "rig-bearing3"}
    assert found.named["rig-bearing1"].sum() >= 0.9 * found.active.sum() > 0
    assert all(found.named[b].mean() < 0.05 for b in ("rig-bearing2", "rig-bearing3"))


def test_bearings_whose_keys_end_alike_or_whose_periods_differ_are_refused():
    runs = _rig({"a-bearing1": 1, "b-bearing1": 1}, departing="a-bearing1")
    with pytest.raises(ValueError, match="end alike"):
        machine_run("rig", runs, ["vibration"])
    first, second = _rig({"rig-bearing1": 1, "rig-bearing2": 1}, departing="rig-bearing1")
    shifted = FleetRun(**{**second.__dict__, "test": (second.test[0] + STEP_S, second.test[1])})
    with pytest.raises(ValueError, match="other calibration or test periods"):
        machine_run("rig", [first, shifted], ["vibration"])
    with pytest.raises(ValueError, match="at least one bearing"):
        machine_run("rig", [], ["vibration"])
