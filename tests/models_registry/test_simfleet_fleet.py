"""The fleet protocol (models_registry.evaluation.fleet) on a synthetic two-asset fleet: a quiet and a noisy
asset of one type under one shared model. The quiet asset's fault is seen only when each asset is judged on
its own scale (per_asset_robust with per-asset thresholds); today's mean-only step misses it."""

from __future__ import annotations

import numpy as np
import pytest

from detection import adaptive, runtime
from detection.baseline import calibrate, pool, usable_rows
from detection.pipeline import Pipeline
from detection.rules import Episode, RuleParams
from detection.thresholds import AssetThresholds
from models_registry.evaluation.fleet import (
    Event,
    FleetRun,
    Protocol,
    Variant,
    alert_runs,
    baselines,
    calibration_spans,
    count,
    evaluate,
    model_spec,
    prepare,
    summarise,
)

ROLES = ["flow", "pressure"]
CALIBRATION_S, TEST_S = 4 * 3600.0, 2 * 3600.0
FAULT = Event("level_shift", CALIBRATION_S + 3000.0, CALIBRATION_S + 4800.0)
PROTOCOL = Protocol(
    window_s=30.0,
    step_s=10.0,
    open_windows=3,
    clear_windows=6,
    attribution_s=60.0,
    params={"open_rule": "tail"},
)


def _run(key: str, level: float, sigma: float, seed: int, shift: float) -> FleetRun:
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, CALIBRATION_S + TEST_S + 0.5)
    series = {}
    for i, role in enumerate(ROLES):
        values = level * (1 + i) + sigma * rng.standard_normal(len(ts))
        if role == "flow":
            values[(ts >= FAULT.start_s) & (ts < FAULT.end_s)] += shift
        series[role] = (ts, values, np.zeros(len(ts), dtype=np.uint16))
    events = (FAULT,) if shift else ()
    return FleetRun(
        key, key, series, (0.0, CALIBRATION_S), (CALIBRATION_S, CALIBRATION_S + TEST_S), events, 1.0
    )


@pytest.fixture(scope="module")
def prepared():
    # The quiet asset's flow shifts by two of its own noise sigmas: obvious on its own scale, a quarter of
    # the noisy asset's sigma (which is 8x larger, at 4x the level).
    runs = [_run("quiet", 10.0, 1.0, 1, shift=2.0), _run("noisy", 40.0, 8.0, 2, shift=0.0)]
    return prepare(runs, ROLES, PROTOCOL)


def _quiet(prepared, variant):
    return {o.key: o for o in evaluate(prepared, PROTOCOL, variant)}["quiet"]


def test_the_quiet_assets_fault_alerts_on_its_own_scale_and_thresholds(prepared):
    outcome = _quiet(prepared, Variant("per_asset_robust", asset_thresholds=True))
    assert outcome.thresholds.source == "asset"
    assert [e.alerted for e in outcome.events] == [True]
    assert outcome.events[0].delay_s < 300.0


def test_the_mean_only_baseline_lets_the_noisy_asset_silence_the_quiet_one(prepared):
    outcome = _quiet(prepared, Variant("per_asset"))
    assert [e.alerted for e in outcome.events] == [False]


def test_counting_attributes_openings_to_faults_and_the_rest_to_false_alarms():
    run = FleetRun("p", "g", {}, (0.0, 100.0), (100.0, 1100.0), (Event("x", 300.0, 400.0),))
    ends = np.arange(110.0, 1101.0, 10.0)
    at = {float(e): i for i, e in enumerate(ends)}
    episodes = [
        Episode(first=at[150.0], opened=at[150.0], last_seen=at[160.0], closed=at[200.0], peak=at[150.0]),
        Episode(first=at[320.0], opened=at[330.0], last_seen=at[400.0], closed=at[450.0], peak=at[350.0]),
        Episode(first=at[460.0], opened=at[480.0], last_seen=at[480.0], closed=None, peak=at[480.0]),
    ]
    outcome = count(run, ends, episodes, AssetThresholds(1.0, 0.5, 10, "asset"), attribution_s=60.0)
    assert [(e.alerted, e.delay_s) for e in outcome.events] == [(True, 30.0)]
    assert outcome.false_alarms == 2  # 150 s is before the fault, 480 s after its span (to 400 + 60)
    assert outcome.normal_days == pytest.approx((1000.0 - 160.0) / 86400.0)
    summary = summarise([outcome])
    assert (summary["faults_alerted"], summary["faults"], summary["median_delay_s"]) == (1, 1, 30.0)
    assert summary["by_kind"] == {"x": [1, 1]}


def test_the_quiet_assets_fault_alerts_with_the_adaptive_location_too(prepared):
    outcome = _quiet(prepared, Variant("per_asset_adaptive", asset_thresholds=True))
    assert outcome.thresholds.source == "asset"
    assert [e.alerted for e in outcome.events] == [True]
    assert outcome.events[0].delay_s < 300.0


def test_the_adaptive_scores_are_detection_adaptives_replay_of_the_calibration_and_test_windows(prepared):
    run = next(a for a in alert_runs(prepared, PROTOCOL, Variant("per_asset_adaptive", True)))
    w = prepared.windows[run.run.key]
    cal_rows = np.flatnonzero(prepared.calibration[run.run.key])
    calibration = calibrate(w.X[cal_rows])
    _, state = adaptive.start(w.X[cal_rows], calibration)
    model = run.model
    loaded = runtime.LoadedModel.unregistered(
        model.onnx_bytes, model.feature_names, model.output_spec, runtime.reference_session(model.onnx_bytes)
    )
    rows = Pipeline.rows(w, np.arange(w.X.shape[1]), float(w.ends[cal_rows[-1]]))
    params = RuleParams(run.thresholds.open_threshold, run.thresholds.clear_threshold, 3, 6)
    _, scores, _, _ = adaptive.advance(
        state, w.X[rows], calibration, lambda z: Pipeline.score(loaded, z), params, usable_rows(w.X[rows])
    )
    test = w.ends[rows] - PROTOCOL.window_s >= run.run.test[0] - 1e-6
    np.testing.assert_array_equal(run.scores, scores[test])


def test_the_pooled_step_is_detection_baselines_pool_of_the_robust_calibrations(prepared):
    robust = baselines(prepared, "per_asset_robust")
    pooled = baselines(prepared, "per_asset_pooled", protocol=PROTOCOL)
    spans = calibration_spans(prepared, PROTOCOL.window_s)
    assert spans["quiet"] == pytest.approx(CALIBRATION_S, abs=PROTOCOL.step_s)
    expected = pool(robust, spans, PROTOCOL.window_s, PROTOCOL.step_s)
    for key in robust:
        assert np.array_equal(pooled[key].scale, expected[key].scale)
        assert np.array_equal(pooled[key].location, robust[key].location)
    assert pooled["quiet"].scale[0] > robust["quiet"].scale[0]  # pulled up toward the noisy asset
    assert model_spec("per_asset_pooled") == {"baseline": "per_asset_pooled"}  # as a product version's
    assert model_spec("per_asset_robust") == {"baseline": "per_asset_robust"}
    with pytest.raises(ValueError, match="protocol"):
        baselines(prepared, "per_asset_pooled")


def test_the_quiet_assets_fault_alerts_with_the_pooled_scale_too(prepared):
    outcome = _quiet(prepared, Variant("per_asset_pooled", asset_thresholds=True))
    assert [e.alerted for e in outcome.events] == [True]
