"""The detector portfolio: every detector exports a faithful ONNX graph and is explained additively from it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from detection import runtime
from detection.detectors import DETECTORS, DetectorError, fit_detector
from detection.explain import ADDITIVITY_TOLERANCE, explain
from detection.features import role_of
from detection.onnx_graphs import INPUT_NAME, SCORE_NAME, read_quadratic_forms
from tests.detection import synthetic as syn

SPEC = {"name": SCORE_NAME, "index": 0, "direction": "higher_is_anomalous"}


def quantile_rule(scores: np.ndarray) -> float:
    return float(np.quantile(scores, 0.995))


@pytest.fixture(scope="module")
def data():
    windows = syn.windows(6 * 3600, seed=1)
    n_fit = int(len(windows.X) * 0.75)
    return windows, windows.X[:n_fit].astype(np.float64), windows.X[n_fit:].astype(np.float64)


def fit(name: str, data):
    windows, X_fit, X_cal = data
    groups = [role_of(n) for n in windows.names]
    return fit_detector(name, X_fit, groups=groups, X_cal=X_cal, threshold=quantile_rule)


def ort_scores(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    return runtime.run_batch(runtime.reference_session(onnx_bytes), X, SPEC)


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_exports_the_model_contract_and_onnxruntime_matches_its_numpy_reference(name, data):
    detector = fit(name, data)
    onnx_bytes = detector.to_onnx()
    model = onnx.load_from_string(onnx_bytes)
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == [SCORE_NAME]
    rng = np.random.default_rng(4)
    X = np.vstack([data[2], rng.normal(scale=50, size=(20, data[1].shape[1])) + data[1].mean(axis=0)])
    reference = detector.score(X)
    np.testing.assert_allclose(ort_scores(onnx_bytes, X), reference, rtol=1e-9)
    assert reference.max() > 100 * np.median(reference)  # far-out windows were included


def test_the_univariate_detector_has_one_branch_per_sensor_each_at_the_same_budget(data):
    detector = fit("univariate", data)
    assert detector.branches == tuple(f"univariate:{role}" for role in syn.ROLES)
    per_branch = detector.branch_scores(data[2])
    # Each branch is divided by its own open threshold on the calibration windows: 1 is each one's budget.
    np.testing.assert_allclose(np.quantile(per_branch, 0.995, axis=0), 1.0, rtol=1e-9)


def test_a_univariate_explanation_is_the_winning_sensors_robust_z_and_zero_elsewhere(data):
    windows, X_fit, _ = data
    detector = fit("univariate", data)
    x = X_fit[100].copy()
    temp = [i for i, n in enumerate(windows.names) if role_of(n) == "temp"]
    x[temp[0]] += 40.0  # temp's mean far out
    background = X_fit[:: len(X_fit) // 50]
    result = explain(detector.to_onnx(), x, background, windows.names, SPEC)
    assert result["method"] == "exact_shapley_quadratic_max" and result["detector"] == "univariate:temp"
    phi = np.array([f["phi"] for f in result["features"]])
    others = [i for i in range(len(x)) if i not in temp]
    assert np.all(phi[others] == 0.0)
    winner = detector.forms[detector.branches.index("univariate:temp")]
    z = (x.astype(np.float32) - winner.mu) * winner.inv_sigma
    B = (background.astype(np.float32) - winner.mu) * winner.inv_sigma
    expected = np.diag(winner.A) * (z**2 - (B**2).mean(axis=0))
    np.testing.assert_allclose(phi[temp], expected[temp], rtol=1e-9)
    assert result["additivity_error"] <= ADDITIVITY_TOLERANCE


@pytest.mark.parametrize(
    ("change", "winner"), [("level_shift", "univariate:temp"), ("broken_correlation", "pca")]
)
def test_the_combined_explanation_is_the_winning_detectors_and_adds_up_to_onnxruntimes_output(
    change, winner, data
):
    windows, X_fit, _ = data
    detector = fit("combined", data)
    onnx_bytes = detector.to_onnx()
    changed = syn.windows(4 * 3600, seed=5, change=change)
    scores = ort_scores(onnx_bytes, changed.X)
    branch = detector.branch_scores(changed.X)
    wins = np.flatnonzero(np.array(detector.branches)[branch.argmax(axis=1)] == winner)
    i = int(wins[np.argmax(scores[wins])])
    background = X_fit[:: len(X_fit) // 100]
    result = explain(onnx_bytes, changed.X[i], background, windows.names, SPEC)
    assert result["detector"] == winner
    assert result["output"] == pytest.approx(scores[i], rel=1e-12)
    phi = sum(f["phi"] for f in result["features"])
    assert abs(phi + result["base_value"] - scores[i]) <= ADDITIVITY_TOLERANCE
    # The base value is the background mean of the winning branch's (calibrated) score, not of the Max.
    form = detector.forms[detector.branches.index(winner)]
    assert result["base_value"] == pytest.approx(form.score(background).mean(), rel=1e-12)
    assert result["detector_scores"][winner] == pytest.approx(scores[i], rel=1e-9)
    # Each feature's one-feature response (detection.wording's counterfactuals) has a curve per branch that
    # gives that branch's score at the feature's own value.
    for feature in result["features"]:
        v = np.float64(np.float32(feature["value"]))
        curves = [a * v * v + b * v + c for a, b, c in feature["response"]]
        assert curves == pytest.approx(list(result["detector_scores"].values()), rel=1e-6, abs=1e-6)


def test_a_max_graph_with_a_foreign_node_is_not_read_as_quadratic_forms_and_still_explained(data):
    windows, X_fit, _ = data
    detector = fit("combined", data)
    model = onnx.load_from_string(detector.to_onnx())
    assert read_quadratic_forms(model, SCORE_NAME) is not None
    model.graph.node[-1].op_type = "Min"
    assert read_quadratic_forms(model, SCORE_NAME) is None
    # Not the exact quadratic path any more: the model-agnostic explainer takes over, still additive.
    result = explain(model.SerializeToString(), X_fit[3], X_fit[:20], windows.names, SPEC, strict=False)
    assert result["method"] == "permutation_shapley" and result["additivity_ok"]


def test_robust_scales_fall_back_to_the_std_and_then_to_one_for_constant_features():
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [
            rng.normal(size=400),
            np.where(np.arange(400) % 4 == 0, 1.0, 0.0),  # mostly idle: MAD 0, std > 0
            np.full(400, 7.0),  # constant
        ]
    )
    detector = fit_detector("univariate", X)
    sigma = 1.0 / detector.forms[0].inv_sigma
    assert sigma[0] == pytest.approx(1.0, rel=0.1)
    assert sigma[1] == pytest.approx(X[:, 1].std(ddof=1))
    assert sigma[2] == 1.0
    assert detector.info["scale_from_mad"] == 1
    assert detector.info["scale_from_std"] == 1 and detector.info["scale_one"] == 1


def test_it_refuses_an_unknown_detector_and_a_combination_without_calibration_data():
    X = np.random.default_rng(1).normal(size=(50, 4))
    with pytest.raises(DetectorError, match="Unknown detector 'iforest'"):
        fit_detector("iforest", X)
    with pytest.raises(DetectorError, match="calibration windows"):
        fit_detector("combined", X)
    with pytest.raises(DetectorError, match="calibration windows"):
        fit_detector("univariate", X, groups=["a", "a", "b", "b"])


def test_a_max_graph_reads_back_exactly_the_forms_it_was_built_from_with_diagonal_branches_as_vectors(data):
    detector = fit("combined", data)
    model = onnx.load_from_string(detector.to_onnx())
    forms, names = read_quadratic_forms(model, SCORE_NAME)
    assert names == list(detector.branches)
    for read, built in zip(forms, detector.forms, strict=True):
        assert np.array_equal(read.mu, built.mu) and np.array_equal(read.inv_sigma, built.inv_sigma)
        assert np.array_equal(read.A, built.A)
    # Only PCA's branch needs a full matrix; each sensor's branch stores d numbers, not d².
    assert [n.op_type for n in model.graph.node].count("MatMul") == 1
