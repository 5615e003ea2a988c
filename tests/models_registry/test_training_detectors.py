"""train_anomaly's detector option: PCA unchanged (bit for bit), the univariate and combined detectors on
synthetic series with known changes, false alarms near the budget, explanations that point at the change."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from detection import runtime
from detection.explain import ADDITIVITY_TOLERANCE, dominant_roles, explain
from detection.onnx_graphs import QuadraticForm, build_quadratic_graph
from detection.rules import active_mask, alert_episodes
from models_registry.training import ANOMALY_DEFAULTS, TrainingError, train_anomaly
from tests.detection import synthetic as syn

DETECTORS = ("pca", "univariate", "combined")
CHANGED = {
    "level_shift": {"temp"},
    "variance": {"temp"},
    "drift": {"temp"},
    "broken_correlation": {"current", "flow"},
}
# Which detector catches which change (at least CAUGHT of the changed windows above the open threshold,
# 20x the 0.5 % budget) and which misses it (below it): why the portfolio has both.
CAUGHT = 0.10
EXPECTED = {
    "level_shift": {"pca": False, "univariate": True, "combined": True},
    "variance": {"pca": True, "univariate": True, "combined": True},
    "drift": {"pca": False, "univariate": True, "combined": True},
    "broken_correlation": {"pca": True, "univariate": False, "combined": True},
}
N_S, CHANGE_S = 4 * 3600, 2 * 3600


def old_fit_quadratic(fit: np.ndarray, variance: float) -> tuple[QuadraticForm, dict]:
    """models_registry.training._fit_quadratic as it was before the move to detection.detectors (the oracle)."""
    X = fit.astype(np.float32).astype(np.float64)
    d = X.shape[1]
    mu = X.mean(axis=0)
    sigma = X.std(axis=0, ddof=1)
    sigma = np.where(sigma > 1e-9 * np.maximum(1.0, np.abs(mu)), sigma, 1.0)
    inv_sigma = 1.0 / sigma
    Z = (X - mu) * inv_sigma
    eigval, eigvec = np.linalg.eigh(Z.T @ Z / (len(Z) - 1))
    eigval, eigvec = np.maximum(eigval[::-1], 0.0), eigvec[:, ::-1]
    total = eigval.sum()
    ratio = np.cumsum(eigval) / total if total > 0 else np.ones(d)
    k = int(np.searchsorted(ratio, variance - 1e-12) + 1)
    k = max(1, min(k, d - 1)) if d > 1 else 1
    P = eigvec[:, :k]
    lam = np.maximum(eigval[:k], 1e-9 * max(eigval[0], 1e-12))
    T = (P / lam) @ P.T
    Q = np.eye(d) - P @ P.T

    def positive(value: float) -> float:
        return float(value) if value > 1e-12 else 1.0

    A = T / positive(np.quantile(np.einsum("ni,ij,nj->n", Z, T, Z), 0.99))
    if k < d:
        A = A + Q / positive(np.quantile(np.einsum("ni,ij,nj->n", Z, Q, Z), 0.99))
    A = (A + A.T) / 2
    info = {"n_components": k, "explained_variance": float(ratio[k - 1]), "n_features": d}
    return QuadraticForm(mu=mu, inv_sigma=inv_sigma, A=A), info


def scores(model, X: np.ndarray) -> np.ndarray:
    return runtime.run_batch(runtime.reference_session(model.onnx_bytes), X, model.output_spec)


@pytest.fixture(scope="module")
def models():
    """Each detector trained on 24 h of clean synthetic data (6 h hold-out: the threshold's sample)."""
    train = syn.windows(24 * 3600, seed=1)
    return {d: train_anomaly(train.X, train.names, params={"detector": d}) for d in DETECTORS}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_default_pca_model_is_bit_identical_to_the_one_fitted_before_the_move(seed):
    X = syn.windows(6 * 3600, seed=seed).X.astype(np.float64)
    names = syn.windows(60, seed=seed).names
    model = train_anomaly(X, names)
    n_hold = max(5, int(round(len(X) * ANOMALY_DEFAULTS["holdout_fraction"])))
    form, info = old_fit_quadratic(X[: len(X) - n_hold], ANOMALY_DEFAULTS["variance"])
    old_bytes = build_quadratic_graph(form, doc=f"Vigil anomaly model: PCA T2+Q, k={info['n_components']}")
    assert model.onnx_bytes == old_bytes
    assert np.array_equal(
        scores(model, X), runtime.run_batch(runtime.load_session(old_bytes), X, model.output_spec)
    )
    hold = form.score(X[len(X) - n_hold :])
    assert model.open_threshold == float(np.quantile(hold, 0.995))
    assert model.clear_threshold == min(float(np.quantile(hold, 0.97)), model.open_threshold)
    assert model.output_spec == {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
    assert {key: model.metrics[key] for key in info} == info
    assert model.params["detector"] == "pca" and model.params["method"] == "pca_t2_q"


def test_a_non_default_detector_is_recorded_in_the_output_spec_and_the_params(models):
    for name, method in (("univariate", "robust_z"), ("combined", "max_calibrated(pca_t2_q, robust_z)")):
        model = models[name]
        assert model.output_spec["detector"] == name and model.params["detector"] == name
        assert model.params["method"] == method
        assert model.clear_threshold <= model.open_threshold
    assert models["combined"].metrics["branches"] == ["pca", *(f"univariate:{r}" for r in syn.ROLES)]


def test_an_unknown_detector_is_refused_with_the_choices():
    X = syn.windows(3600, seed=3)
    with pytest.raises(TrainingError, match="detector must be one of pca, univariate, combined"):
        train_anomaly(X.X, X.names, params={"detector": "lstm"})


def test_on_clean_synthetic_data_every_detector_alarms_near_its_false_alarm_budget(models):
    clean = [syn.windows(8 * 3600, seed=seed) for seed in (11, 12, 13, 14)]
    for name, model in models.items():
        above = np.mean([np.mean(scores(model, w.X) > model.open_threshold) for w in clean])
        # budget: 1 - open_quantile = 0.5 % of windows; measured 0.43 / 0.57 / 0.45 %.
        assert above <= 2 * (1 - ANOMALY_DEFAULTS["open_quantile"]), (name, above)


@pytest.mark.parametrize("change", syn.CHANGES)
def test_each_change_is_caught_by_the_detectors_built_for_it_and_always_by_the_combination(models, change):
    windows = syn.windows(N_S, seed=21, change=change, change_s=CHANGE_S)
    after = windows.ends > syn.ORIGIN + CHANGE_S + syn.WINDOW_S
    for name, model in models.items():
        s = scores(model, windows.X)
        flagged = s > model.open_threshold
        caught = flagged[after].mean() >= CAUGHT
        assert caught == EXPECTED[change][name], (change, name, flagged[after].mean())
        if not caught:
            continue
        # The alert rule (open after 3 windows above, clear after 6 below) raises an alert after the change.
        episodes = alert_episodes(s, model.open_threshold, model.clear_threshold, 3, 6)
        assert active_mask(len(s), episodes)[after].any()
        # The explanations of the flagged windows add up and point at the changed sensor(s).
        tops = Counter()
        for i in np.flatnonzero(after & flagged)[::4]:
            result = explain(
                model.onnx_bytes, windows.X[i], model.background, model.feature_names, model.output_spec
            )
            assert result["additivity_error"] <= ADDITIVITY_TOLERANCE
            tops[dominant_roles(result)[0] in CHANGED[change]] += 1
        assert tops[True] >= 0.8 * sum(tops.values()), (change, name, tops)
