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
    ``s_j = 1.4826 · MAD_j`` (the normal-consistent MAD), averaged per sensor as ``mean_{j in sensor} z_j²``
    (a diagonal quadratic form), and the max over sensors, each sensor's score divided by its own open
    threshold on the calibration windows (so every sensor alerts at the shared false-alarm budget). It needs
    no relation between sensors, so it serves a single-signal asset (a NAB-style series, a one-channel
    bearing: one sensor, one plain form) and sees a change of one sensor's level (mean, min, max), spread
    (std, diff_rms) or trend (slope) even when PCA's subspace absorbs it. Why these choices, none tuned on
    any evaluation run: median / MAD because the fit windows of a real asset hold the odd transient that
    would inflate a mean / std, and 1.4826 makes ``z`` read like a z-score; the max over sensors (rather than
    one sum over all features) because a change of one sensor must not be diluted by how many other sensors
    the asset has; per-sensor calibration because sensors differ in how heavy their tails are. Floors, in
    order, for a feature whose MAD is (numerically) zero — more than half its windows equal, e.g. a quantised
    or mostly idle signal: its standard deviation, and if that is zero too (a constant feature) 1, the same
    rule as PCA's sigma. Within a sensor A is diagonal, so each feature's exact Shapley value is its own
    term, ``(z_j² - E_b[b_j²]) / (n_j c)``, and features of other sensors get exactly 0. A residual against a
    rolling or seasonal baseline was left out: the exported model sees one window and keeps no state, and
    the window features already carry the within-window trend and roughness.

``"combined"`` — ``max(pca / c_pca, univariate / c_univariate)``, each detector divided by its own open
    threshold on the calibration windows, computed by the caller's threshold rule at the false-alarm
    budget every detector shares. So a window alerts when either detector would have alerted on
    its own budget (a sensor-level change or a relation break); the trainer then sets the combined score's
    thresholds by the same rule. Each division is folded into its branch's A, and the max of maxes is one
    flat ``Max`` over all branches (``onnx_graphs.build_max_quadratic_graph``; branches "pca",
    "univariate:<sensor>", ...).

Calibration windows: ``train_anomaly`` passes its fit windows, so that its hold-out stays a fresh sample for
the final open/clear thresholds. Setting the scales on the hold-out too would fit the final threshold to the
very scores the scales were fitted to; on synthetic data with a slowly wandering sensor and a 2 h hold-out
that raised the clean false-alarm rate of the univariate detector from 1.6 % to 2.6 % (budget 0.5 %); the
in-sample bias of fit-window scores only shifts the branches' relative weights a little. The choice was
made on synthetic data only (tests/detection/synthetic.py), never on an evaluated run. Short hold-outs of
slowly wandering signals still under-estimate the tail with the quantile rule (an 8 h series: 1.6 %
against 0.5 % with a 24 h one); the trainer's opt-in tail rule (``open_rule="tail"``) is the remedy there.

A detector with several branches is explained by the exact Shapley values of the winning branch in the
detector's (calibrated) scale, whose base value is the background mean of that branch's score
(``detection.explain``); the winner names the detector and sensor that raised the alert.

Pure NumPy + onnx: no Django (import-linter contract).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.onnx_graphs import QuadraticForm, build_max_quadratic_graph, build_quadratic_graph

DETECTORS = ("pca", "univariate", "combined")
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
    groups: Sequence[str] | None = None,
    X_cal: np.ndarray | None = None,
    threshold: Threshold | None = None,
) -> FittedDetector:
    """Fit detector ``name`` (one of DETECTORS) on normal windows ``X_fit``. ``groups`` names each feature's
    sensor (default: one sensor). The univariate detector of several sensors and the combined detector also
    need calibration windows ``X_cal`` (normal; may be X_fit) and the ``threshold`` rule (scores -> the open
    threshold at the shared false-alarm budget) to put their parts on one scale."""
    X = np.asarray(X_fit, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2 or X.shape[1] < 1:
        raise DetectorError(f"A detector needs a [n >= 2, d >= 1] matrix of fit windows, got {X.shape}.")
    groups = [""] * X.shape[1] if groups is None else list(groups)
    if len(groups) != X.shape[1]:
        raise DetectorError(f"{len(groups)} sensor names given for {X.shape[1]} features.")
    if name == "pca":
        return fit_pca(X, variance)
    if name == "univariate":
        return fit_robust_z(X, groups, X_cal, threshold)
    if name == "combined":
        parts = [fit_pca(X, variance), fit_robust_z(X, groups, X_cal, threshold)]
        return combine("combined", parts, X_cal, threshold)
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


def fit_robust_z(
    fit: np.ndarray,
    groups: Sequence[str],
    X_cal: np.ndarray | None = None,
    threshold: Threshold | None = None,
) -> FittedDetector:
    """Per-sensor mean squared robust z, max over sensors (see the module docstring)."""
    X = fit.astype(np.float32).astype(np.float64)
    median = np.median(X, axis=0)
    scale = MAD_TO_SIGMA * np.median(np.abs(X - median), axis=0)
    tiny = _tiny(median)
    by_mad = scale > tiny
    std = X.std(axis=0, ddof=1)
    scale = np.where(by_mad, scale, np.where(std > tiny, std, 1.0))
    info = {
        "n_features": X.shape[1],
        "scale_from_mad": int(by_mad.sum()),
        "scale_from_std": int((~by_mad & (std > tiny)).sum()),
        "scale_one": int((~by_mad & (std <= tiny)).sum()),
    }
    doc = "Vigil anomaly model: robust z (median/MAD), mean square per sensor"
    sensors = list(dict.fromkeys(groups))
    parts = []
    for sensor in sensors:
        mine = np.array([g == sensor for g in groups])
        form = QuadraticForm(mu=median, inv_sigma=1.0 / scale, A=np.diag(mine / mine.sum()))
        parts.append(FittedDetector("univariate", (form,), (_branch("univariate", sensor),), {}, doc))
    if len(parts) == 1:
        return FittedDetector("univariate", parts[0].forms, parts[0].branches, info, doc)
    combined = combine("univariate", parts, X_cal, threshold)
    return FittedDetector(
        "univariate", combined.forms, combined.branches, {**info, **combined.info}, doc + ", max"
    )


def combine(
    name: str, parts: Sequence[FittedDetector], X_cal: np.ndarray | None, threshold: Threshold | None
) -> FittedDetector:
    """``max_k score_k / c_k`` over ``parts`` with c_k = ``threshold``(part k's scores on ``X_cal``), each
    division folded into the part's branch forms; one flat list of branches."""
    if X_cal is None or threshold is None:
        raise DetectorError(f"The {name} detector needs calibration windows and a threshold rule.")
    X_cal = np.asarray(X_cal, dtype=np.float64)
    if X_cal.ndim != 2 or len(X_cal) < 2:
        raise DetectorError(f"The {name} detector needs at least 2 calibration windows, got {X_cal.shape}.")
    forms: list[QuadraticForm] = []
    branches: list[str] = []
    scales: dict[str, float] = {}
    info: dict[str, Any] = {}
    for part in parts:
        key = part.branches[0] if len(part.branches) == 1 else part.name
        c = _positive(float(threshold(part.score(X_cal))))
        forms += [QuadraticForm(mu=f.mu, inv_sigma=f.inv_sigma, A=f.A / c) for f in part.forms]
        branches += list(part.branches)
        scales[key] = c
        scales.update(part.info.get("branch_scales", {}))
        info.update({k: v for k, v in part.info.items() if k not in ("branches", "branch_scales")})
    doc = f"Vigil anomaly model: max of calibrated {'; '.join(dict.fromkeys(p.doc or p.name for p in parts))}"
    return FittedDetector(
        name, tuple(forms), tuple(branches), {**info, "branches": branches, "branch_scales": scales}, doc
    )


def _branch(detector: str, sensor: str) -> str:
    return f"{detector}:{sensor}" if sensor else detector


def _tiny(location: np.ndarray) -> np.ndarray:
    # A spread this small relative to the feature's magnitude is float noise: the feature is constant.
    return 1e-9 * np.maximum(1.0, np.abs(location))


def _positive(value: float) -> float:
    return float(value) if value > 1e-12 else 1.0
