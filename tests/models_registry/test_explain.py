"""Explanations of the exact ONNX artifact: additive for every model kind, and equal to independent references."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import onnx
import pytest
import shap
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from detection import explain as explain_module
from detection import runtime
from detection.explain import ExplanationError, explain, typical_ranges
from models_registry.training import lightgbm_to_onnx, train_anomaly, train_failure_classifier

TOLERANCE = 1e-4


def correlated(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    load = rng.normal(size=(n, 1))
    mixing = np.linspace(0.5, 2.0, d)[None, :] * (np.arange(d) % 2 == 0)
    return 3.0 + load * mixing + 0.3 * rng.normal(size=(n, d))


def brute_force(onnx_bytes: bytes, x: np.ndarray, background: np.ndarray, spec: dict):
    """Shapley values over all 2^d coalitions, every coalition scored by onnxruntime (the reference)."""
    session = runtime.reference_session(onnx_bytes)
    return explain_module._brute_force_shapley(
        session, x.astype(np.float32), background.astype(np.float32), spec
    )


def phis(result: dict) -> np.ndarray:
    return np.array([f["phi"] for f in result["features"]])


@pytest.fixture(scope="module")
def anomaly_model():
    d = 8
    return train_anomaly(correlated(2000, d, seed=1), [f"r{i}__mean" for i in range(d)])


def test_anomaly_explanation_is_additive_for_normal_and_far_out_windows(anomaly_model):
    m = anomaly_model
    for x in (correlated(1, 8, seed=2)[0], np.r_[40.0, -30.0, np.full(6, 3.0)]):
        result = explain(m.onnx_bytes, x, m.background, m.feature_names, m.output_spec)
        assert result["method"] == "exact_shapley_quadratic" and result["exact"] is True
        assert result["additivity_error"] <= TOLERANCE
        assert phis(result).sum() + result["base_value"] == pytest.approx(result["output"], abs=TOLERANCE)
    assert result["output"] > 1000  # the far-out window really was far out


def test_quadratic_closed_form_equals_brute_force_shapley_over_all_coalitions(anomaly_model):
    m = anomaly_model
    x = np.r_[5.0, 1.0, 2.0, 3.5, 1.0, 2.0, 6.0, 3.0]
    result = explain(m.onnx_bytes, x, m.background, m.feature_names, m.output_spec)
    phi, base = brute_force(m.onnx_bytes, x, m.background, m.output_spec)
    np.testing.assert_allclose(phis(result), phi, atol=1e-8 * max(1.0, np.abs(phi).max()))
    assert result["base_value"] == pytest.approx(base, rel=1e-9)


def test_the_feature_that_breaks_the_correlation_gets_the_largest_share(anomaly_model):
    m = anomaly_model
    x = np.median(m.background, axis=0).astype(np.float64)
    x[2] += 4.0  # r2 follows the load with r0, r4, r6; push it alone
    result = explain(m.onnx_bytes, x, m.background, m.feature_names, m.output_spec)
    assert int(np.argmax(phis(result))) == 2


def test_lightgbm_explanation_from_onnx_nodes_matches_native_tree_explainer():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 10)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * rng.normal(size=3000) > 1.5).astype(int)
    booster = (
        lgb.LGBMClassifier(n_estimators=150, num_leaves=15, verbose=-1, random_state=0).fit(X, y).booster_
    )
    onnx_bytes = lightgbm_to_onnx(booster, 10)
    background = X[:100]
    native = shap.TreeExplainer(
        booster, data=background.astype(np.float64), feature_perturbation="interventional", model_output="raw"
    )
    names = [f"s{i}__mean" for i in range(10)]
    spec = {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
    for x in X[200:205]:
        result = explain(onnx_bytes, x, background, names, spec)
        assert result["method"] == "tree_shap_onnx"
        assert result["additivity_error"] <= TOLERANCE
        reference = np.ravel(native.shap_values(x[None, :].astype(np.float64)))
        np.testing.assert_allclose(phis(result), reference, atol=TOLERANCE)
        assert result["base_value"] == pytest.approx(float(np.ravel(native.expected_value)[0]), abs=TOLERANCE)


def test_trained_failure_classifier_explanations_are_additive():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 6))
    y = (2 * X[:, 0] + X[:, 1] + 0.3 * rng.normal(size=3000) > 3.5).astype(int)
    model = train_failure_classifier(X, y, [f"s{i}__mean" for i in range(6)])
    for x in X[:10]:
        result = explain(model.onnx_bytes, x, model.background, model.feature_names, model.output_spec)
        assert result["method"] == "tree_shap_onnx" and result["additivity_error"] <= TOLERANCE
    # Independent check on the same artifact: tree SHAP equals brute force over all 64 coalitions.
    phi, _ = brute_force(model.onnx_bytes, X[0], model.background, model.output_spec)
    np.testing.assert_allclose(
        phis(
            result := explain(
                model.onnx_bytes, X[0], model.background, model.feature_names, model.output_spec
            )
        ),
        phi,
        atol=TOLERANCE,
    )
    assert result["features"][0]["value"] == pytest.approx(X[0, 0], rel=1e-6)


def tree_ensemble(trees: list[list[tuple]], *, d: int, base: float, aggregate: str = "SUM") -> bytes:
    """A TreeEnsembleRegressor from trees of nodes (node id, mode, feature, threshold, true id, false id,
    missing tracks true, leaf weight); its output read through an Identity, as the exporters write it."""
    rows = [(tree, *node) for tree, nodes in enumerate(trees) for node in nodes]
    leaves = [row for row in rows if row[2] == "LEAF"]
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["input"],
        ["out"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[row[0] for row in rows],
        nodes_nodeids=[row[1] for row in rows],
        nodes_featureids=[row[3] for row in rows],
        nodes_values=[row[4] for row in rows],
        nodes_modes=[row[2] for row in rows],
        nodes_truenodeids=[row[5] for row in rows],
        nodes_falsenodeids=[row[6] for row in rows],
        nodes_missing_value_tracks_true=[row[7] for row in rows],
        target_treeids=[row[0] for row in leaves],
        target_nodeids=[row[1] for row in leaves],
        target_ids=[0] * len(leaves),
        target_weights=[row[8] for row in leaves],
        base_values=[base],
        aggregate_function=aggregate,
        post_transform="NONE",
    )
    graph = helper.make_graph(
        [node, helper.make_node("Identity", ["out"], ["score"])],
        "hand_trees",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def hand_tree_ensemble() -> bytes:
    """Two trees using BRANCH_LT, BRANCH_GT and BRANCH_GTE, one with the missing value on the true side."""
    return tree_ensemble(
        [
            [
                (0, "BRANCH_LT", 0, 0.5, 1, 2, 0, 0.0),
                (1, "LEAF", 0, 0.0, 0, 0, 0, 1.0),
                (2, "BRANCH_GT", 1, 0.25, 3, 4, 1, 0.0),
                (3, "LEAF", 0, 0.0, 0, 0, 0, 2.0),
                (4, "LEAF", 0, 0.0, 0, 0, 0, -1.0),
            ],
            [
                (0, "BRANCH_GTE", 2, 0.75, 1, 2, 0, 0.0),
                (1, "LEAF", 0, 0.0, 0, 0, 0, 0.5),
                (2, "LEAF", 0, 0.0, 0, 0, 0, -0.5),
            ],
        ],
        d=3,
        base=0.1,
    )


def test_lt_gt_and_gte_splits_are_explained_with_onnxruntime_semantics_at_the_thresholds():
    onnx_bytes = hand_tree_ensemble()
    spec = {"name": "score", "index": None}
    # Values sitting exactly on the thresholds, and the float32 neighbours below them.
    below = [np.nextafter(np.float32(t), np.float32(-1)) for t in (0.5, 0.25, 0.75)]
    background = np.array([[0.5, 0.25, 0.75], below, [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    names = ["a__mean", "b__mean", "c__mean"]
    for x in (background[0], background[1], np.array([0.2, 0.9, 0.8], dtype=np.float32)):
        result = explain(onnx_bytes, x, background, names, spec)
        assert result["method"] == "tree_shap_onnx"
        assert result["additivity_error"] <= 1e-6
        phi, base = brute_force(onnx_bytes, x, background, spec)
        np.testing.assert_allclose(phis(result), phi, atol=1e-6)
        assert result["base_value"] == pytest.approx(base, abs=1e-6)


def test_tree_shap_equals_shapley_values_over_all_coalitions_with_repeated_splits_a_leaf_tree_and_averaging():
    """The ONNX nodes converted to shap's trees keep the artifact's meaning where the conversion could slip:
    paths that split one feature twice, a tree that is one leaf and an averaged ensemble all give the exact
    Shapley values of the artifact."""
    onnx_bytes = tree_ensemble(
        [
            [
                (0, "BRANCH_LEQ", 0, 0.5, 1, 2, 0, 0.0),
                (1, "BRANCH_LEQ", 0, 0.2, 3, 4, 0, 0.0),  # feature 0 again, below 0.5
                (2, "BRANCH_GT", 1, 0.3, 5, 6, 0, 0.0),
                (3, "LEAF", 0, 0.0, 0, 0, 0, 1.0),
                (4, "LEAF", 0, 0.0, 0, 0, 0, 2.0),
                (5, "BRANCH_LT", 0, 0.9, 7, 8, 0, 0.0),  # feature 0 again, above 0.5
                (6, "LEAF", 0, 0.0, 0, 0, 0, -1.0),
                (7, "LEAF", 0, 0.0, 0, 0, 0, 0.5),
                (8, "LEAF", 0, 0.0, 0, 0, 0, 3.0),
            ],
            [(0, "LEAF", 0, 0.0, 0, 0, 0, 0.7)],
            [
                (0, "BRANCH_GTE", 2, 0.6, 1, 2, 0, 0.0),
                (1, "BRANCH_LEQ", 3, 0.1, 3, 4, 0, 0.0),
                (2, "LEAF", 0, 0.0, 0, 0, 0, 1.5),
                (3, "LEAF", 0, 0.0, 0, 0, 0, -2.0),
                (4, "LEAF", 0, 0.0, 0, 0, 0, 4.0),
            ],
        ],
        d=4,
        base=0.25,
        aggregate="AVERAGE",
    )
    spec = {"name": "score", "index": 0, "direction": "lower_is_worse"}
    rng = np.random.default_rng(11)
    background = np.vstack([rng.uniform(0, 1, size=(40, 4)), [[0.5, 0.3, 0.6, 0.1], [0.2, 0.9, 0.0, 1.0]]])
    names = ["a__mean", "b__mean", "c__mean", "d__mean"]
    for x in (
        background[-2],
        np.array([0.95, 0.8, 0.7, 0.0]),
        np.array([0.1, 0.1, 0.1, 0.9]),
        *background[:5],
    ):
        result = explain(onnx_bytes, x, background, names, spec)
        assert result["method"] == "tree_shap_onnx" and result["additivity_error"] <= 1e-6
        phi, base = brute_force(onnx_bytes, x, background, spec)
        # onnxruntime sums in float32: the coalitions' scores are exact to ~1e-7
        np.testing.assert_allclose(phis(result), phi, atol=1e-6)
        assert result["base_value"] == pytest.approx(base, abs=1e-6)
    assert phis(result).any()


def linear_onnx(d: int, seed: int) -> tuple[bytes, LinearRegression]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, d))
    model = LinearRegression().fit(X, X @ rng.normal(size=d) + 0.1 * rng.normal(size=200))
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, d]))], target_opset=15)
    return onx.SerializeToString(), model


@pytest.mark.parametrize(
    ("d", "method", "exact"), [(5, "exact_shapley", True), (20, "permutation_shapley", False)]
)
def test_other_models_get_model_agnostic_shapley_values_that_are_additive(d, method, exact):
    onnx_bytes, model = linear_onnx(d, seed=d)
    output = runtime.output_names(runtime.reference_session(onnx_bytes))[0]
    rng = np.random.default_rng(7)
    background = rng.normal(size=(50, d)).astype(np.float32)
    x = rng.normal(size=d).astype(np.float32)
    result = explain(
        onnx_bytes, x, background, [f"s{i}__mean" for i in range(d)], {"name": output, "index": 0}
    )
    assert result["method"] == method and result["exact"] is exact
    assert result["additivity_error"] <= TOLERANCE
    # For a linear model every Shapley method must give w_i (x_i - mean background_i).
    expected = model.coef_ * (x.astype(np.float64) - background.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(phis(result), expected, atol=1e-4)


def test_explanations_are_json_with_the_issue_shape_and_sensor_mapping(anomaly_model):
    m = anomaly_model
    result = explain(
        m.onnx_bytes,
        m.background[0],
        m.background,
        m.feature_names,
        m.output_spec,
        sensors={"r0": "north.p-101.r0"},
    )
    decoded = json.loads(json.dumps(result))
    assert {"method", "base_value", "output", "additivity_error", "features"} <= decoded.keys()
    assert [f["name"] for f in decoded["features"]] == m.feature_names
    assert decoded["features"][0]["sensor"] == "north.p-101.r0"
    assert decoded["features"][1]["sensor"] == "r1"
    # A quadratic model also stores, per feature, the score as a quadratic in that feature alone (one
    # [a, b, c] per branch): at the feature's own value it is the model's output.
    assert set(decoded["features"][0]) == {"name", "sensor", "value", "phi", "response"}
    for feature in decoded["features"]:
        (a, b, c), *others = feature["response"]
        assert not others
        v = feature["value"]
        assert a * v * v + b * v + c == pytest.approx(decoded["output"], rel=1e-6, abs=1e-9)
    # The stored values re-run through the ONNX file give the stored output.
    values = np.array([[f["value"] for f in decoded["features"]]], dtype=np.float32)
    rerun = runtime.run_batch(runtime.load_session(m.onnx_bytes), values, m.output_spec)[0]
    assert rerun == decoded["output"]


def test_an_explanation_that_is_not_additive_is_refused_or_marked(anomaly_model, monkeypatch):
    m = anomaly_model
    real = explain_module._quadratic_shapley
    monkeypatch.setattr(explain_module, "_quadratic_shapley", lambda *a: (real(*a)[0], real(*a)[1] + 0.01))
    with pytest.raises(ExplanationError, match="exceeds"):
        explain(m.onnx_bytes, m.background[0], m.background, m.feature_names, m.output_spec)
    marked = explain(
        m.onnx_bytes, m.background[0], m.background, m.feature_names, m.output_spec, strict=False
    )
    assert marked["additivity_ok"] is False


@pytest.mark.parametrize(
    ("onnx_bytes", "x", "message"),
    [
        (b"not an onnx file", np.zeros(8), "cannot load"),
        (None, np.zeros(5), "5 values for 8 features"),
        (None, np.full(8, np.nan), "finite"),
    ],
)
def test_bad_input_raises_a_clear_explanation_error(anomaly_model, onnx_bytes, x, message):
    m = anomaly_model
    with pytest.raises(ExplanationError, match=message):
        explain(onnx_bytes or m.onnx_bytes, x, m.background, m.feature_names, m.output_spec)


def test_typical_ranges_are_background_percentiles():
    background = np.arange(101, dtype=np.float64)[:, None]
    assert typical_ranges(background, ["a__mean"]) == {"a__mean": (10.0, 90.0)}
