"""The remaining-useful-life model kind: LightGBM regressor -> ONNX, lower-is-worse thresholds, TreeSHAP on
the exported trees, registration and validation, and the alert rules mirrored for a falling score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from detection import explain, runtime, wording
from detection.rules import alert_episodes
from edge import runner as edge
from models_registry import training
from models_registry.choices import ModelKind
from models_registry.services import register_trained
from models_registry.validation import validate_version
from tests.conftest import make_pump_type

NAMES = ["wear__mean", "wear__slope", "noise__std", "temp__mean"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    # Wear grows towards failure; RUL is what is left of 200 cycles, observed through noisy features.
    rng = np.random.default_rng(3)
    rul = rng.uniform(0, 200, 1500)
    wear = (200 - rul) / 200
    X = np.column_stack(
        [
            wear + rng.normal(0, 0.03, 1500),
            wear**2 + rng.normal(0, 0.03, 1500),
            rng.normal(size=1500),
            rng.normal(size=1500),
        ]
    )
    return X, rul


@pytest.fixture(scope="module")
def trained(data) -> training.TrainedModel:
    X, rul = data
    return training.train_rul(
        X[:1200],
        rul[:1200],
        NAMES,
        params={"n_estimators": 80, "num_leaves": 7},
        X_val=X[1200:],
        rul_val=rul[1200:],
    )


def test_it_trains_a_lower_is_worse_rul_model_that_opens_below_30_and_clears_above_40(trained):
    assert trained.kind == ModelKind.RUL == "rul"
    assert trained.output_spec == {"name": "score", "index": 0, "direction": "lower_is_worse"}
    assert runtime.higher_is_worse(trained.output_spec) is False
    assert (trained.open_threshold, trained.clear_threshold) == (30.0, 40.0)
    assert trained.metrics["validation"]["rmse"] < 20
    assert trained.background.shape == (100, 4)


def test_the_onnx_artifact_predicts_what_lightgbm_predicts_on_the_capped_target(data, trained):
    X, rul = data
    session = runtime.load_session(trained.onnx_bytes)
    ort = runtime.run_batch(session, X, trained.output_spec)
    # The same trees refitted natively: LightGBM is deterministic for a fixed seed and thread count.
    p = trained.params
    native = lgb.LGBMRegressor(
        n_estimators=p["n_estimators"], learning_rate=p["learning_rate"], num_leaves=p["num_leaves"],
        min_child_samples=p["min_child_samples"], subsample=p["subsample"], subsample_freq=1,
        colsample_bytree=p["colsample_bytree"], reg_lambda=p["reg_lambda"], random_state=p["seed"], n_jobs=1,
        deterministic=True, force_row_wise=True, verbose=-1,
    ).fit(X[:1200].astype(np.float32).astype(np.float64), np.minimum(rul[:1200], 125))  # fmt: skip
    assert np.max(np.abs(ort - native.predict(X.astype(np.float32).astype(np.float64)))) < 1e-3
    assert 120.0 < ort[rul > 160].mean() < 126.0  # the target is capped at 125, so is what the trees learnt


def test_the_trees_are_summed_in_double_precision(trained):
    graph = onnx.load_from_string(trained.onnx_bytes).graph
    cast = graph.node[0]
    assert cast.op_type == "Cast" and cast.input[0] == graph.input[0].name
    assert [n.op_type for n in graph.node if n.input and n.input[0] == cast.output[0]] == [
        "TreeEnsembleRegressor"
    ]


def test_tree_shap_of_the_regressor_adds_up_to_the_onnxruntime_output(data, trained):
    X, _ = data
    for row in X[1200::60]:
        result = explain.explain(trained.onnx_bytes, row, trained.background, NAMES, trained.output_spec)
        assert result["method"] == "tree_shap_onnx"
        total = sum(f["phi"] for f in result["features"]) + result["base_value"]
        assert abs(total - result["output"]) <= 1e-4
        assert result["additivity_error"] <= 1e-4
    worn = explain.explain(
        trained.onnx_bytes, X[np.argmin(data[1])], trained.background, NAMES, trained.output_spec
    )
    top = max(worn["features"], key=lambda f: abs(f["phi"]))
    assert top["name"].startswith("wear__") and top["phi"] < 0  # wear lowers the remaining life

    # The explanation says its low scores are bad, so the title and the words read its pushes the same way
    # without being told: wear, which lowered the remaining life, drove the alert.
    assert worn["higher_is_worse"] is False
    assert explain.top_role(worn) == "wear"
    assert [r.role for r in wording.reasons(worn, {}, {})][:1] == ["wear"]


def test_a_seed_ensemble_is_one_tree_ensemble_that_predicts_the_mean_of_its_boosters(data):
    X, rul = data
    params = {"n_estimators": 40, "num_leaves": 7, "n_seeds": 3}
    merged = training.train_rul(X[:1200], rul[:1200], NAMES, params=params)
    singles = [
        training.train_rul(X[:1200], rul[:1200], NAMES, params={**params, "n_seeds": 1, "seed": seed})
        for seed in range(3)
    ]

    graph = onnx.load_from_string(merged.onnx_bytes).graph
    assert [n.op_type for n in graph.node].count("TreeEnsembleRegressor") == 1
    assert merged.metrics["n_trees"] == 120 and merged.metrics["n_seeds"] == 3
    rows = X[1200:]
    mean = np.mean(
        [runtime.run_batch(runtime.load_session(m.onnx_bytes), rows, m.output_spec) for m in singles], 0
    )
    ort = runtime.run_batch(runtime.load_session(merged.onnx_bytes), rows, merged.output_spec)
    assert np.max(np.abs(ort - mean)) < 1e-4
    for row in rows[::75]:
        result = explain.explain(merged.onnx_bytes, row, merged.background, NAMES, merged.output_spec)
        assert result["method"] == "tree_shap_onnx" and result["additivity_error"] <= 1e-4
    with pytest.raises(training.TrainingError, match="n_seeds"):
        training.train_rul(X, rul, NAMES, params={"n_seeds": 0})


def test_a_falling_rul_opens_an_alert_below_30_and_clears_it_above_40():
    # 3 windows to open, 2 to clear: the third window below 30 opens, the second above 40 closes.
    scores = [90, 50, 29, 28, 27, 25, 35, 41, 39, 45, 46, 20]
    episodes = alert_episodes(scores, 30.0, 40.0, 3, 2, higher=False)
    assert [(e.first, e.opened, e.peak, e.closed) for e in episodes] == [(2, 4, 5, 10)]
    assert edge.alert_states([50, 29, 35, 41, 50], 30.0, 40.0, higher=False) == [
        False,
        True,
        True,
        False,
        False,
    ]


def test_it_rejects_negative_or_mismatched_rul_targets(data):
    X, rul = data
    with pytest.raises(training.TrainingError, match="non-negative"):
        training.train_rul(X, -rul, NAMES)
    with pytest.raises(training.TrainingError, match="values for"):
        training.train_rul(X, rul[:10], NAMES)
    with pytest.raises(training.TrainingError, match="open_rul"):
        training.train_rul(X, rul, NAMES, params={"open_rul": 50, "clear_rul": 40})


def test_phm08_score_and_rmse_of_the_training_metrics():
    metrics = training.rul_metrics(np.array([10.0, 20.0, 30.0]), np.array([20.0, 20.0, 20.0]))
    assert metrics["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert metrics["phm08_score"] == pytest.approx(np.exp(10 / 13) - 1 + np.e - 1)


@pytest.mark.django_db
def test_a_trained_rul_model_registers_and_passes_validation(trained):
    version = register_trained(
        trained, name="engine-rul", asset_type=make_pump_type(), provenance={"source": "test"}
    )
    assert version.kind == ModelKind.RUL and version.status == "candidate"
    assert version.output_spec["direction"] == "lower_is_worse"
    assert version.open_threshold < version.clear_threshold
    assert validate_version(version).passed == ["checksum", "load", "signature", "reference_batch", "latency"]
