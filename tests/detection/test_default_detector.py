"""The default detector by channel count: a single-signal asset gets the univariate detector, several
sensors PCA; the trainer applies the rule, and the default model of a one-sensor series detects a level
shift, a variance change and a slow drift, explained additively from its ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest

from detection import runtime
from detection.detectors import DetectorError, default_detector
from detection.explain import ADDITIVITY_TOLERANCE, explain
from detection.features import build_windows
from detection.rules import alert_episodes
from models_registry.training import train_anomaly
from tests.detection import synthetic as syn

HOUR = 3600
ONE = ["temp"]


def one_signal(seconds: int, seed: int, change: str | None = None, change_s: int | None = None):
    """The synthetic ``temp`` sensor alone: a single-signal asset at the product's 60 s / 10 s windows."""
    readings = syn.series(seconds, seed, change, change_s)
    return build_windows({"temp": readings["temp"]}, ONE, window_s=syn.WINDOW_S, step_s=syn.STEP_S)


def test_one_sensor_gets_the_univariate_detector_and_several_get_pca():
    assert default_detector(["temp"] * 6) == "univariate"
    assert default_detector(["temp", "temp", "flow", "flow"]) == "pca"
    with pytest.raises(DetectorError, match="at least one feature"):
        default_detector([])


def test_the_trainer_picks_the_detector_by_channel_count_unless_one_is_named():
    single = one_signal(4 * HOUR, seed=1)
    several = syn.windows(4 * HOUR, seed=1)
    model = train_anomaly(single.X, single.names)
    assert model.params["detector"] == "univariate" and model.params["method"] == "robust_z"
    assert model.output_spec["detector"] == "univariate"
    model = train_anomaly(several.X, several.names)
    assert model.params["detector"] == "pca" and "detector" not in model.output_spec
    named = train_anomaly(single.X, single.names, params={"detector": "pca"})
    assert named.params["detector"] == "pca"


@pytest.fixture(scope="module")
def single_model():
    """The default model of a one-sensor asset, trained on 8 h of clean windows."""
    train = one_signal(8 * HOUR, seed=1)
    return train_anomaly(train.X, train.names)


def alerts_after(model, windows, change_s: float) -> list[float]:
    """Seconds after ``change_s`` at which alerts opened (the production rules, M = 3, N = 6)."""
    scores = runtime.run_batch(runtime.reference_session(model.onnx_bytes), windows.X, model.output_spec)
    ends = windows.ends - windows.ends[0] + syn.WINDOW_S
    opened = [
        ends[e.opened] for e in alert_episodes(scores, model.open_threshold, model.clear_threshold, 3, 6)
    ]
    return [t - change_s for t in opened]


@pytest.mark.parametrize(
    ("change", "within_s"), [("level_shift", 120), ("variance", 120), ("drift", 3 * HOUR)]
)
def test_the_default_single_signal_model_alerts_a_level_shift_a_variance_change_and_a_drift(
    single_model, change, within_s
):
    change_s = 2 * HOUR
    windows = one_signal(6 * HOUR, seed=7, change=change, change_s=change_s)
    offsets = alerts_after(single_model, windows, change_s)
    assert any(0 <= t <= within_s for t in offsets), (change, offsets)


def test_the_default_single_signal_model_stays_mostly_quiet_on_clean_data(single_model):
    # The quantile rule's budget (0.5 % of windows) allows a few short alerts in 8 h; none is a flood.
    for seed in (11, 12):
        assert len(alerts_after(single_model, one_signal(8 * HOUR, seed=seed), 0.0)) <= 4


def test_the_default_single_signal_explanation_adds_up_to_onnxruntimes_output(single_model):
    windows = one_signal(4 * HOUR, seed=7, change="level_shift", change_s=2 * HOUR)
    scores = runtime.run_batch(
        runtime.reference_session(single_model.onnx_bytes), windows.X, single_model.output_spec
    )
    worst = int(np.argmax(scores))
    result = explain(
        single_model.onnx_bytes,
        windows.X[worst],
        single_model.background,
        single_model.feature_names,
        single_model.output_spec,
    )
    total = result["base_value"] + sum(f["phi"] for f in result["features"])
    assert total == pytest.approx(float(scores[worst]), rel=1e-5)
    assert result["additivity_error"] <= ADDITIVITY_TOLERANCE
