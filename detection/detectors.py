"""The anomaly detector portfolio behind one interface.

``fit_detector(name, X_fit, ...)`` learns normal behaviour from normal windows (float features [n, d], time
order) and returns a ``FittedDetector``: ``score(X)`` is its NumPy reference, ``to_onnx()`` the graph the
product runs (float32 input "input" [N, d], one float64 output "score" [N, 1], higher is more anomalous),
and ``detection.explain`` explains that graph additively from the file alone. Every detector here is a
quadratic form of standardised features ``zᵀ A z``, ``z = (x - mu) * inv_sigma`` (``onnx_graphs``), or the
max of several, so one exact explanation serves them all. Thresholds are not the detector's business: the
trainer sets open/clear thresholds on its hold-out scores by one rule for every detector.

``"pca"`` — PCA T² + Q on z-scored features (mean / std of the fit windows; sigma 1 for a constant feature).
    The first k components explain ``variance`` of the variance (1 <= k <= d - 1). T² (Mahalanobis distance
    inside the subspace) catches unusual operating points, Q (squared residual off it) broken relations
    between sensors; each is divided by its 99th percentile on the fit windows so they count equally:
    ``A = T/t99 + Q/q99``. Plain PCA is within noise of the best deep detectors on multivariate benchmarks
    (TSB-AD, NeurIPS 2024; "Quo Vadis", ICML 2024).

``"univariate"`` — a robust z of every feature against the fit windows, ``z_j = (x_j - median_j) / s_j`` with
    ``s_j = 1.4826 · MAD_j`` (the normal-consistent MAD), scored as ``mean_j z_j² = zᵀ diag(1/d) z``. It needs
    no relation between sensors, so it serves a single-signal asset (a NAB-style series, a one-channel
    bearing) and sees a change of one sensor's level, spread (std, diff_rms) or trend (slope) even when
    PCA's subspace absorbs it. Median / MAD because the fit windows of a real asset hold the odd transient
    that would inflate a mean / std; the normal-consistency constant 1.4826 makes ``z`` read like a z-score.
    Floors, in order, for a feature whose MAD is (numerically) zero — more than half its windows equal, e.g.
    a quantised or mostly-idle signal: its standard deviation, and if that is zero too (a constant feature)
    1, the same rule as PCA's sigma. A diagonal A makes each feature's exact Shapley value its own term,
    ``(z_j² - E_b[b_j²]) / d``: the explanation is the per-feature robust z itself. A residual against a
    rolling or seasonal baseline was left out: the exported model sees one window and keeps no state, and
    the window features already carry the within-window trend and roughness.

``"combined"`` — ``max_k score_k / c_k`` over the PCA and univariate detectors, each divided by its own open
    threshold ``c_k`` on the calibration (hold-out) windows, computed by the caller's threshold rule at the
    false-alarm budget every detector shares. So a window alerts when either detector would have alerted
    on its own budget (a sensor-level change or a relation break); the trainer then sets the combined
    score's thresholds by the same rule. The division is folded into each branch's A, and the graph is one
    ``Max`` over the branches (``onnx_graphs.build_max_quadratic_graph``). It is explained by the exact
    Shapley values of the winning branch in the combined scale, whose base value is the background mean of
    that branch's calibrated score (``detection.explain``).

Pure NumPy + onnx: no Django (import-linter contract).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.onnx_graphs import QuadraticForm, build_max_quadratic_graph, build_quadratic_graph

DETECTORS = ("pca", "univariate", "combined")
# What ``combined`` combines, in branch order (the order ties are broken in, first wins).
COMBINED_BRANCHES = ("pca", "univariate")
MAD_TO_SIGMA = 1.4826  # 1 / Φ⁻¹(3/4): MAD · this estimates σ for normal data
METHODS = {"pca": "pca_t2_q", "univariate": "robust_z", "combined": "max_calibrated(pca_t2_q, robust_z)"}

Threshold = Callable[[np.ndarray], float]


class DetectorError(ValueError):
    """A detector cannot be fitted on the data given; the message says why."""


@dataclass(frozen=True)
class FittedDetector:
    """A fitted detector: the max over its branches' quadratic forms (one branch for a single detector)."""

    name: str
    forms: tuple[QuadraticForm, ...]
    branches: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)  # facts of the fit, for the version's metrics
    doc: str = ""  # the ONNX model's doc string

    def score(self, X: np.ndarray) -> np.ndarray:
        """NumPy reference of the exported graph (float32 input rounding, float64 arithmetic)."""
        if len(self.forms) == 1:
            return self.forms[0].score(X)
        return self.branch_scores(X).max(axis=1)

    def branch_scores(self, X: np.ndarray) -> np.ndarray:
        """Each branch's score, [n, branches]."""
        return np.column_stack([form.score(X) for form in self.forms])

    def to_onnx(self, doc: str | None = None) -> bytes:
        """The ONNX graph of this detector (onnx_graphs)."""
        doc = self.doc if doc is None else doc
        if len(self.forms) == 1:
            return build_quadratic_graph(self.forms[0], doc=doc)
        return build_max_quadratic_graph(self.forms, self.branches, doc=doc)


def fit_detector(
    name: str,
    X_fit: np.ndarray,
    *,
    variance: float = 0.95,
    X_cal: np.ndarray | None = None,
    threshold: Threshold | None = None,
) -> FittedDetector:
    """Fit detector ``name`` (one of DETECTORS) on normal windows ``X_fit``. ``"combined"`` also needs
    calibration windows ``X_cal`` (normal, not in X_fit) and the ``threshold`` rule (scores -> the open
    threshold at the shared false-alarm budget) to put its detectors on one scale."""
    X = np.asarray(X_fit, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2 or X.shape[1] < 1:
        raise DetectorError(f"A detector needs a [n >= 2, d >= 1] matrix of fit windows, got {X.shape}.")
    if name == "pca":
        return fit_pca(X, variance)
    if name == "univariate":
        return fit_robust_z(X)
    if name == "combined":
        if X_cal is None or threshold is None:
            raise DetectorError("The combined detector needs calibration windows and a threshold rule.")
        parts = [fit_detector(branch, X, variance=variance) for branch in COMBINED_BRANCHES]
        return combine(parts, X_cal, threshold)
    raise DetectorError(f"Unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")


def fit_pca(fit: np.ndarray, variance: float) -> FittedDetector:
    """PCA T² + Q (see the module docstring)."""
    X = fit.astype(np.float32).astype(np.float64)  # exactly what onnxruntime will see
    d = X.shape[1]
    mu = X.mean(axis=0)
    sigma = X.std(axis=0, ddof=1)
    sigma = np.where(sigma > _tiny(mu), sigma, 1.0)
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
    t99 = _positive(np.quantile(np.einsum("ni,ij,nj->n", Z, T, Z), 0.99))
    A = T / t99
    if k < d:
        A = A + Q / _positive(np.quantile(np.einsum("ni,ij,nj->n", Z, Q, Z), 0.99))
    A = (A + A.T) / 2
    info = {"n_components": k, "explained_variance": float(ratio[k - 1]), "n_features": d}
    form = QuadraticForm(mu=mu, inv_sigma=inv_sigma, A=A)
    return FittedDetector("pca", (form,), ("pca",), info, f"Vigil anomaly model: PCA T2+Q, k={k}")


def fit_robust_z(fit: np.ndarray) -> FittedDetector:
    """Mean squared robust z of every feature (see the module docstring)."""
    X = fit.astype(np.float32).astype(np.float64)
    d = X.shape[1]
    median = np.median(X, axis=0)
    scale = MAD_TO_SIGMA * np.median(np.abs(X - median), axis=0)
    tiny = _tiny(median)
    by_mad = scale > tiny
    std = X.std(axis=0, ddof=1)
    scale = np.where(by_mad, scale, np.where(std > tiny, std, 1.0))
    info = {
        "n_features": d,
        "scale_from_mad": int(by_mad.sum()),
        "scale_from_std": int((~by_mad & (std > tiny)).sum()),
        "scale_one": int((~by_mad & (std <= tiny)).sum()),
    }
    form = QuadraticForm(mu=median, inv_sigma=1.0 / scale, A=np.eye(d) / d)
    doc = "Vigil anomaly model: mean squared robust z (median/MAD) per feature"
    return FittedDetector("univariate", (form,), ("univariate",), info, doc)


def combine(parts: Sequence[FittedDetector], X_cal: np.ndarray, threshold: Threshold) -> FittedDetector:
    """``max_k score_k / c_k`` with c_k = ``threshold``(detector k's scores on ``X_cal``), the division
    folded into each branch's A."""
    X_cal = np.asarray(X_cal, dtype=np.float64)
    if X_cal.ndim != 2 or len(X_cal) < 2:
        raise DetectorError(f"The combination needs at least 2 calibration windows, got shape {X_cal.shape}.")
    forms: list[QuadraticForm] = []
    branches: list[str] = []
    scales: dict[str, float] = {}
    for part in parts:
        if len(part.forms) != 1:
            raise DetectorError(f"Only single detectors are combined, not {part.name!r}.")
        c = _positive(float(threshold(part.score(X_cal))))
        form = part.forms[0]
        forms.append(QuadraticForm(mu=form.mu, inv_sigma=form.inv_sigma, A=form.A / c))
        branches.append(part.name)
        scales[part.name] = c
    info: dict[str, Any] = {
        "branches": branches,
        "branch_scales": scales,
        "n_features": len(forms[0].mu),
    }
    for part in parts:
        info.update({k: v for k, v in part.info.items() if k not in info})
    doc = "Vigil anomaly model: max of calibrated " + "; ".join(part.doc or part.name for part in parts)
    return FittedDetector("combined", tuple(forms), tuple(branches), info, doc)


def _tiny(location: np.ndarray) -> np.ndarray:
    # A spread this small relative to the feature's magnitude is float noise: the feature is constant.
    return 1e-9 * np.maximum(1.0, np.abs(location))


def _positive(value: float) -> float:
    return float(value) if value > 1e-12 else 1.0
