"""Training: the anomaly model catches multivariate faults, the classifier handles imbalance, ONNX is faithful."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from detection import runtime
from detection.onnx_graphs import read_quadratic_graph
from detection.thresholds import tail_threshold
from models_registry.training import (
    TrainingError,
    lightgbm_to_onnx,
    train_anomaly,
    train_failure_classifier,
)
from detection.features import build_windows, feature_names

NAMES = ["flow__mean", "current__mean", "vibration__mean", "pressure__mean"]


def normal_windows(n: int, seed: int) -> np.ndarray:
    """Flow and current follow one load (correlated); vibration and pressure vary on their own."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=n)
    return np.column_stack(
        [
            10 + 2 * load + 0.1 * rng.normal(size=n),
            5 + 1 * load + 0.05 * rng.normal(size=n),
            1 + 0.2 * rng.normal(size=n),
            3 + 0.3 * rng.normal(size=n),
        ]
    )


def scores(model, X: np.ndarray) -> np.ndarray:
    return runtime.run_batch(runtime.reference_session(model.onnx_bytes), X, model.output_spec)


def test_anomaly_model_flags_a_broken_correlation_although_each_sensor_is_in_its_normal_range():
    train = normal_windows(4000, seed=1)
    model = train_anomaly(train, NAMES)
    fault = np.array([[12.0, 4.0, 1.0, 3.0]])  # high flow with low current: each within +-1 sigma
    z = (fault - train.mean(axis=0)) / train.std(axis=0)
    assert np.all(np.abs(z) < 1.1), "the fault must not be visible one sensor at a time"

    assert scores(model, fault)[0] > model.open_threshold
    held_out = normal_windows(2000, seed=2)
    assert np.mean(scores(model, held_out) > model.open_threshold) <= 0.015
    assert model.kind == "anomaly" and model.clear_threshold <= model.open_threshold


def test_anomaly_model_works_with_zero_failure_labels_and_reports_its_false_alarm_rate():
    model = train_anomaly(normal_windows(1000, seed=3), NAMES)
    assert model.metrics["label_counts"] == {"normal": 1000, "fault": 0}
    assert 0 <= model.metrics["false_alarm_rate_holdout"] <= 0.01
    assert model.output_spec == {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
    assert model.background.dtype == np.float32 and model.background.shape == (100, 4)
    assert {"numpy", "onnxruntime", "onnx"} <= model.library_versions.keys()


def test_anomaly_metrics_include_precision_recall_and_pr_auc_on_labelled_validation():
    rng = np.random.default_rng(5)
    normal = normal_windows(600, seed=6)
    faults = normal_windows(60, seed=7)
    swing = rng.choice([-1, 1], size=60) * rng.uniform(0.7, 1.5, size=60)
    faults[:, 0], faults[:, 1] = 10 + 2 * swing, 5 - swing  # current moves against flow
    X_val = np.vstack([normal, faults])
    y_val = np.r_[np.zeros(600), np.ones(60)]
    model = train_anomaly(normal_windows(3000, seed=8), NAMES, X_val=X_val, y_val=y_val)
    m = model.metrics
    assert m["recall"] >= 0.8 and m["precision"] >= 0.8 and m["pr_auc"] >= 0.9
    assert m["false_alarm_rate"] <= 0.02


def test_anomaly_onnx_matches_the_numpy_reference_even_far_from_normal():
    model = train_anomaly(normal_windows(1500, seed=9), NAMES)
    form = read_quadratic_graph(onnx.load_from_string(model.onnx_bytes), "score")
    rng = np.random.default_rng(10)
    X = np.vstack([normal_windows(200, seed=11), rng.normal(scale=300, size=(50, 4))])
    reference = form.score(X)
    np.testing.assert_allclose(scores(model, X), reference, rtol=1e-9)
    assert reference.max() > 1e4  # far-out windows were included


def test_anomaly_model_trains_on_feature_windows_built_from_raw_readings():
    rng = np.random.default_rng(12)
    n = 6000
    ts = 1_767_600_000.0 + np.arange(n, dtype=np.float64)
    load = np.convolve(rng.normal(size=n + 300), np.ones(300) / 30, mode="valid")[:n]
    q = np.zeros(n, dtype=np.uint16)
    series = {
        "flow": (ts, 10 + load + 0.2 * rng.normal(size=n), q),
        "current": (ts, 5 + 0.5 * load + 0.1 * rng.normal(size=n), q),
    }
    windows = build_windows(series, ["flow", "current"], window_s=60, step_s=10)
    model = train_anomaly(windows.X, windows.names)
    assert model.feature_names == feature_names(["flow", "current"])
    assert np.all(np.isfinite(scores(model, windows.X)))


def imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    risk = 2.5 * X[:, 0] + 2.0 * X[:, 1] * (X[:, 2] > 0) + 0.5 * rng.normal(size=n)
    y = (risk > 4.5).astype(int)
    return X, y


def test_classifier_on_imbalanced_labels_reaches_recall_and_precision_floors():
    X, y = imbalanced(6000, seed=20)
    assert 0.02 < y.mean() < 0.1
    names = [f"s{i}__mean" for i in range(8)]
    model = train_failure_classifier(X, y, names)
    m = model.metrics
    assert m["recall"] >= 0.7 and m["precision"] >= 0.7 and m["pr_auc"] >= 0.75
    assert m["label_counts"]["total"] == {"normal": int((y == 0).sum()), "fault": int(y.sum())}

    X_test, y_test = imbalanced(6000, seed=21)
    flagged = scores(model, X_test) > model.open_threshold
    tp = np.sum(flagged & (y_test == 1))
    assert tp / y_test.sum() >= 0.7 and tp / flagged.sum() >= 0.7
    assert model.clear_threshold < model.open_threshold


def test_classifier_scores_are_lightgbm_raw_margins():
    X, y = imbalanced(3000, seed=22)
    booster = (
        lgb.LGBMClassifier(n_estimators=80, num_leaves=31, verbose=-1, random_state=0).fit(X, y).booster_
    )
    X32 = X.astype(np.float32)
    session = runtime.load_session(lightgbm_to_onnx(booster, 8))
    ort = runtime.run_batch(session, X32, {"name": "score", "index": 0})
    native = booster.predict(X32.astype(np.float64), raw_score=True)
    # On the training rows themselves, where split thresholds sit closest to feature values.
    assert np.max(np.abs(ort - native) / np.maximum(1, np.abs(native))) <= 1e-5


def test_classifier_refuses_too_few_fault_labels_with_a_clear_message():
    X, _ = imbalanced(200, seed=23)
    y = np.zeros(200, dtype=int)
    y[:2] = 1
    with pytest.raises(TrainingError, match="at least 4 fault"):
        train_failure_classifier(X, y, [f"s{i}__mean" for i in range(8)])


@pytest.mark.parametrize(
    ("X", "names", "params", "message"),
    [
        (np.full((100, 4), np.nan), NAMES, None, "NaN"),
        (np.ones((100, 3)), NAMES, None, "3 columns"),
        (np.ones((5, 4)), NAMES, None, "at least 20"),
        (np.ones((100, 4)), NAMES, {"bogus": 1}, "Unknown training parameters"),
    ],
)
def test_anomaly_training_rejects_bad_input(X, names, params, message):
    with pytest.raises(TrainingError, match=message):
        train_anomaly(X, names, params=params)


def test_a_constant_feature_does_not_break_the_anomaly_model():
    X = normal_windows(500, seed=30)
    X[:, 3] = 7.0
    model = train_anomaly(X, NAMES)
    assert np.all(np.isfinite(scores(model, X)))


def test_the_tail_threshold_extrapolates_an_exponential_tail_to_the_requested_exceedance():
    scores_ = np.random.default_rng(40).exponential(size=50_000)  # its maximum is near ln(50,000) = 10.8
    # P(score > t) = exp(-t) for a unit exponential, so 1 in 100,000 is exceeded at ln(100,000) = 11.5.
    assert tail_threshold(scores_, 0.9, 1e-5) == pytest.approx(np.log(1e5), rel=0.03)
    assert tail_threshold(scores_, 0.9, 1e-5) > scores_.max()  # the extrapolation, not the floor


def test_the_tail_threshold_is_never_below_the_largest_score_it_was_given():
    scores_ = np.concatenate([np.linspace(0.0, 1.0, 99), [50.0]])
    assert tail_threshold(scores_, 0.9, 0.05) == 50.0


def test_the_tail_rule_raises_only_the_open_threshold_and_keeps_fresh_false_alarms_rare():
    train = normal_windows(2000, seed=41)
    default = train_anomaly(train, NAMES)
    tail = train_anomaly(train, NAMES, params={"open_rule": "tail"})
    held_out = scores(tail, train[-500:])
    assert tail.open_threshold >= held_out.max() and tail.open_threshold > default.open_threshold
    assert tail.clear_threshold == default.clear_threshold
    assert tail.params["open_rule"] == "tail" and default.params["open_rule"] == "quantile"
    fresh = scores(tail, normal_windows(20_000, seed=42))
    assert np.mean(fresh > tail.open_threshold) <= 1e-3
    assert scores(tail, np.array([[12.0, 4.0, 1.0, 3.0]]))[0] > tail.open_threshold  # still sees the fault


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"open_rule": "max"}, "open_rule must be one of quantile, tail"),
        ({"open_rule": "tail", "open_exceedance": 0.2}, "open_exceedance < 1 - tail_quantile"),
        ({"open_rule": "tail", "tail_quantile": 1.0}, "open_exceedance < 1 - tail_quantile"),
    ],
)
def test_anomaly_training_rejects_a_bad_open_rule(params, message):
    with pytest.raises(TrainingError, match=message):
        train_anomaly(normal_windows(200, seed=43), NAMES, params=params)
