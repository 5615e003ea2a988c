"""Training: feature matrices in, a checked ONNX artifact with thresholds, metrics and provenance out.

Pure functions over NumPy arrays (no ORM); the registry reads windows once, calls these and stores the
result as a candidate ModelVersion.

Score convention (both kinds): ``output_spec = {"name": "score", "index": 0, "direction":
"higher_is_anomalous"}``; a window is flagged when ``score > open_threshold`` and an open alert may clear once
``score < clear_threshold`` (hysteresis, ``clear_threshold <= open_threshold``).

``train_anomaly`` — a detector of ``detection.detectors`` fitted on normal / unlabelled windows only;
    ``params["detector"]`` picks it: ``"pca"`` (the default), ``"univariate"`` or ``"combined"``. The
    default is PCA T² + Q (SPE) on standardised features:
    ``z = (x - mu) / sigma`` with mu, sigma of the fit split (a constant feature gets sigma = 1). The first k
    principal components explain ``params["variance"]`` of the variance (1 <= k <= d - 1). T² (Mahalanobis
    distance inside the PCA subspace) catches unusual operating points; Q (squared residual off the
    subspace) catches broken relations between sensors even when every sensor is in its normal range. Each
    is divided by its 99th percentile on the fit split so the two count equally:
    ``score = T²/t99 + Q/q99 = zᵀ A z`` with one symmetric A, built by hand as an ONNX graph
    (``onnx_graphs.build_quadratic_graph``; float32 input, float64 arithmetic, output "score" [N, 1]).
    ``"univariate"`` is the mean squared robust z (median / MAD) of each sensor's features, max over sensors,
    ``"combined"`` the max of both; every part is divided by its own open threshold (the rule below) on the
    fit windows, so each alerts at the same budget; see detection.detectors.
    Every detector goes through the same split and threshold rule, and the choice is recorded in
    ``params`` (provenance) and, for a non-default detector, ``output_spec["detector"]``.
    Windows are used in the order given (time order): the last ``holdout_fraction`` is held out; the open
    threshold is its ``open_quantile`` (99.5 %) score, the clear threshold its ``clear_quantile`` (97 %).
    ``params["open_rule"] = "tail"`` (opt-in, for short baselines) instead extrapolates the hold-out's tail:
    overlapping windows make a few hundred hold-out scores worth a few dozen independent ones, so their
    99.5 % quantile is little more than their maximum. A quadratic form of roughly Gaussian features has an
    exponential tail, so the excesses over the hold-out's ``tail_quantile`` (90 %) score u are fitted by an
    exponential (maximum likelihood: scale = their mean) and the open threshold is the score exceeded by a
    share ``open_exceedance`` (1e-4) of windows, ``u + scale · ln((1 - tail_quantile) / open_exceedance)``,
    and never below the hold-out's maximum (data declared normal never alarms). The clear threshold is
    unchanged. ``params["open_rule"] = "episodes"`` (opt-in) states the budget in time instead: one false
    alert per asset per ``alert_budget_days`` (30) days, counting declustered events of the hold-out scores
    (needs ``window_s`` and ``step_s``; ``train_and_register`` passes the asset type's). Both rules live in ``detection.thresholds``, which sets per-asset thresholds the same way.
    Metrics: false-alarm rate on the held-out normal windows and, given X_val (and y_val), on the normal
    validation windows, with precision / recall / F1 / PR-AUC when y_val has faults.

``train_failure_classifier`` — LightGBM binary classifier; class imbalance handled with ``is_unbalance``
    and a decision threshold chosen for the best F1 on a stratified validation split (never accuracy). The
    score space is LightGBM's raw margin (log-odds): explanations are additive there and it is what the
    ONNX graph outputs, a single ``TreeEnsembleRegressor`` (post_transform NONE) converted by onnxmltools
    (ai.onnx opset 15). Before conversion every split threshold is moved to the largest float32 not above
    it, so the float32 ONNX trees take exactly LightGBM's decisions on float32 features. The clear
    threshold is ``open - hysteresis`` (1.0 log-odds by default).

``train_rul`` — LightGBM regressor of the remaining useful life (in the caller's unit, e.g. cycles or
    hours), target capped at ``params["rul_cap"]`` (piecewise-linear RUL: an engine far from failure looks
    healthy, so "125 or more" is all a window can tell). Exported like the classifier (floored thresholds,
    one TreeEnsembleRegressor, output "score" = predicted RUL). Lower is worse: ``output_spec["direction"]``
    is ``"lower_is_worse"`` (``runtime.higher_is_worse`` is False, so the lifecycle mirrors every comparison):
    an alert opens when the predicted RUL falls below ``open_rul`` (30) and clears above ``clear_rul`` (40).
    Given X_val/y_val it reports RMSE, MAE and the PHM08 score on them (uncapped truth capped the same way).
    ``params["n_seeds"]`` = k > 1 fits k boosters with seeds seed..seed+k-1 and averages them by merging
    their trees, leaf values × 1/k, into one booster (``merge_boosters``): still ONE TreeEnsembleRegressor,
    checked against the mean of the k native boosters, and TreeSHAP on its nodes stays exact.

Both check onnxruntime's output against the NumPy / native reference: |ort - ref| <= 1e-5 * max(1, |ref|)
(onnxruntime sums trees in float32, ~1e-6 relative); a mismatch raises TrainingError.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection import runtime
from detection.detectors import DETECTORS, METHODS, DetectorError, fit_detector
from detection.features import role_of
from detection.onnx_graphs import SCORE_NAME

from detection.thresholds import ThresholdError, ThresholdRule, thresholds

DIRECTION = "higher_is_anomalous"
ONNX_TOLERANCE = 1e-5
BACKGROUND_SIZE = 100

ANOMALY_DEFAULTS: dict[str, Any] = {
    "detector": "pca",  # or "univariate" / "combined" (detection.detectors)
    "variance": 0.95,
    "holdout_fraction": 0.25,
    "open_quantile": 0.995,
    "clear_quantile": 0.97,
    "open_rule": "quantile",  # or "tail" / "episodes": see the module docstring
    "tail_quantile": 0.9,
    "open_exceedance": 1e-4,
    "alert_budget_days": 30.0,  # "episodes": one false alert per asset per this many days
    "window_s": None,  # "episodes": the windows' length and step, s (the asset type's)
    "step_s": None,
    "background_size": BACKGROUND_SIZE,
    "seed": 0,
}
CLASSIFIER_DEFAULTS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 10,
    "reg_lambda": 1.0,
    "is_unbalance": True,
    "validation_fraction": 0.25,
    "hysteresis": 1.0,
    "background_size": BACKGROUND_SIZE,
    "seed": 0,
}
RUL_DIRECTION = "lower_is_worse"
RUL_DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "rul_cap": 125.0,
    "open_rul": 30.0,
    "clear_rul": 40.0,
    "n_seeds": 1,
    "num_threads": 1,
    "background_size": BACKGROUND_SIZE,
    "seed": 0,
}


class TrainingError(ValueError):
    """Training input or a trained artifact is unusable; the message says why."""


@dataclass
class TrainedModel:
    """A trained, converted and checked model, ready to be registered as a candidate version."""

    onnx_bytes: bytes
    kind: str
    feature_names: list[str]
    output_spec: dict[str, Any]
    open_threshold: float
    clear_threshold: float
    background: np.ndarray  # float32 [<= 100, d], the explanation background sample
    metrics: dict[str, Any]
    params: dict[str, Any]
    library_versions: dict[str, str] = field(default_factory=dict)


def train_anomaly(
    X_normal: np.ndarray,
    feature_names: list[str],
    *,
    params: Mapping[str, Any] | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> TrainedModel:
    """Learn normal behaviour (a detector of detection.detectors, PCA T² + Q by default) from normal windows
    in time order; see the module docstring."""
    p = _params(ANOMALY_DEFAULTS, params)
    X = _matrix(X_normal, feature_names, "X_normal")
    n, d = X.shape
    if n < 20:
        raise TrainingError(f"The anomaly model needs at least 20 normal windows, got {n}.")
    if p["detector"] not in DETECTORS:
        raise TrainingError(f"detector must be one of {', '.join(DETECTORS)}, got {p['detector']!r}.")
    if not 0.0 < p["variance"] <= 1.0 or not 0.0 < p["holdout_fraction"] < 1.0:
        raise TrainingError("variance must be in (0, 1] and holdout_fraction in (0, 1).")
    try:
        rule = ThresholdRule.from_params(p)
    except ThresholdError as exc:
        raise TrainingError(str(exc)) from None
    n_hold = max(5, int(round(n * p["holdout_fraction"])))
    fit, hold = X[: n - n_hold], X[n - n_hold :]
    if len(fit) < 10:
        raise TrainingError(
            f"Only {len(fit)} windows are left to fit after the hold-out; add more normal data."
        )

    def open_rule(scores: np.ndarray) -> float:
        # The branches of a combined detector are scaled by the same rule as the model's thresholds.
        return thresholds(scores, rule)[0]

    try:
        detector = fit_detector(
            p["detector"],
            fit,
            variance=p["variance"],
            groups=[role_of(name) for name in feature_names],
            X_cal=fit,  # the parts' scales; the hold-out stays fresh for the thresholds below
            threshold=open_rule,
        )
    except DetectorError as exc:
        raise TrainingError(str(exc)) from None
    onnx_bytes = detector.to_onnx()
    spec = (
        _spec() if p["detector"] == ANOMALY_DEFAULTS["detector"] else {**_spec(), "detector": p["detector"]}
    )
    session = runtime.load_session(onnx_bytes)
    check_rows = np.vstack([hold, fit[:: max(1, len(fit) // 200)]])
    _check_close(runtime.run_batch(session, check_rows, spec), detector.score(check_rows), "NumPy reference")

    hold_scores = detector.score(hold)
    open_t, clear_t = thresholds(hold_scores, rule)
    metrics: dict[str, Any] = {
        **detector.info,
        "n_fit": len(fit),
        "n_holdout": len(hold),
        "false_alarm_rate_holdout": float(np.mean(hold_scores > open_t)),
        "holdout_score_median": float(np.median(hold_scores)),
        "label_counts": {"normal": n, "fault": 0},
    }
    if X_val is not None:
        Xv = _matrix(X_val, feature_names, "X_val")
        yv = np.zeros(len(Xv), dtype=int) if y_val is None else _labels(y_val, len(Xv), "y_val")
        metrics.update(_detection_metrics(detector.score(Xv), yv, open_t))
    return TrainedModel(
        onnx_bytes=onnx_bytes,
        kind="anomaly",
        feature_names=list(feature_names),
        output_spec=spec,
        open_threshold=open_t,
        clear_threshold=clear_t,
        background=_background(fit, p["background_size"], p["seed"]),
        metrics=metrics,
        params={**p, "method": METHODS[p["detector"]]},
        library_versions=library_versions(),
    )


def train_failure_classifier(
    X: np.ndarray, y: np.ndarray, feature_names: list[str], *, params: Mapping[str, Any] | None = None
) -> TrainedModel:
    """LightGBM on labelled windows, threshold by best validation F1, raw-margin ONNX; see module docstring."""
    import lightgbm as lgb
    from sklearn.model_selection import train_test_split

    p = _params(CLASSIFIER_DEFAULTS, params)
    X = _matrix(X, feature_names, "X")
    y = _labels(y, len(X), "y")
    n_fault, n_normal = int(y.sum()), int(len(y) - y.sum())
    if n_fault < 4 or n_normal < 4:
        raise TrainingError(
            f"The failure classifier needs at least 4 fault and 4 normal windows (got {n_fault} fault, "
            f"{n_normal} normal); use the anomaly model until more failures are labelled."
        )
    X_tr, X_va, y_tr, y_va = train_test_split(
        X, y, test_size=p["validation_fraction"], stratify=y, random_state=p["seed"]
    )
    model = lgb.LGBMClassifier(
        n_estimators=p["n_estimators"],
        learning_rate=p["learning_rate"],
        num_leaves=p["num_leaves"],
        min_child_samples=p["min_child_samples"],
        reg_lambda=p["reg_lambda"],
        is_unbalance=p["is_unbalance"],
        random_state=p["seed"],
        n_jobs=1,
        deterministic=True,
        verbose=-1,
    )
    model.fit(X_tr, y_tr)
    margin_va = model.predict(X_va, raw_score=True)
    open_t = _best_f1_threshold(margin_va, y_va)

    onnx_bytes = lightgbm_to_onnx(model.booster_, len(feature_names))
    session = runtime.load_session(onnx_bytes)
    check_rows = np.vstack([X_va, X_tr])
    _check_close(
        runtime.run_batch(session, check_rows, _spec()), model.predict(check_rows, raw_score=True), "LightGBM"
    )
    metrics = _detection_metrics(margin_va, y_va, open_t)
    metrics["label_counts"] = {
        "train": {"normal": int((y_tr == 0).sum()), "fault": int(y_tr.sum())},
        "validation": {"normal": int((y_va == 0).sum()), "fault": int(y_va.sum())},
        "total": {"normal": n_normal, "fault": n_fault},
    }
    metrics["n_trees"] = int(model.booster_.num_trees())
    return TrainedModel(
        onnx_bytes=onnx_bytes,
        kind="failure_classifier",
        feature_names=list(feature_names),
        output_spec=_spec(),
        open_threshold=open_t,
        clear_threshold=open_t - float(p["hysteresis"]),
        background=_background(X_tr, p["background_size"], p["seed"]),
        metrics=metrics,
        params={**p, "method": "lightgbm", "score_space": "raw_margin"},
        library_versions=library_versions(),
    )


def train_rul(
    X: np.ndarray,
    rul: np.ndarray,
    feature_names: list[str],
    *,
    params: Mapping[str, Any] | None = None,
    X_val: np.ndarray | None = None,
    rul_val: np.ndarray | None = None,
) -> TrainedModel:
    """LightGBM regressor of the capped remaining useful life, exported to ONNX; see the module docstring."""
    import lightgbm as lgb

    p = _params(RUL_DEFAULTS, params)
    X = _matrix(X, feature_names, "X")
    y = _rul_target(rul, len(X), "rul", p["rul_cap"])
    if len(X) < 20:
        raise TrainingError(f"The RUL model needs at least 20 windows with a known RUL, got {len(X)}.")
    if not 0.0 <= p["open_rul"] <= p["clear_rul"]:
        raise TrainingError(
            "RUL thresholds must satisfy 0 <= open_rul <= clear_rul (alerts open below open_rul)."
        )
    n_seeds = int(p["n_seeds"])
    if not 1 <= n_seeds <= 20:
        raise TrainingError(f"n_seeds must be between 1 and 20, got {p['n_seeds']!r}.")
    models = []
    for offset in range(n_seeds):
        model = lgb.LGBMRegressor(
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            num_leaves=p["num_leaves"],
            min_child_samples=p["min_child_samples"],
            subsample=p["subsample"],
            subsample_freq=1 if p["subsample"] < 1.0 else 0,
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            random_state=p["seed"] + offset,
            n_jobs=int(p["num_threads"]),
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        models.append(model.fit(X, y))
    booster = models[0].booster_ if n_seeds == 1 else merge_boosters([m.booster_ for m in models])
    onnx_bytes = sum_trees_in_double(lightgbm_to_onnx(booster, len(feature_names)))
    session = runtime.load_session(onnx_bytes)
    spec = {**_spec(), "direction": RUL_DIRECTION}
    check_rows = X[:: max(1, len(X) // 2000)]
    if X_val is not None:
        Xv = _matrix(X_val, feature_names, "X_val")
        check_rows = np.vstack([check_rows, Xv[:: max(1, len(Xv) // 2000)]])
    # Leaf values are float32 in the file; relative to the cap, the largest partial sum, they are ~1e-7 off.
    # The reference is the mean of the separately fitted boosters, so the merge itself is checked too.
    _check_close(
        runtime.run_batch(session, check_rows, spec),
        np.mean([m.predict(check_rows) for m in models], axis=0),
        "LightGBM",
        scale=float(p["rul_cap"]),
    )

    metrics: dict[str, Any] = {
        "n_train": len(X),
        "n_trees": int(booster.num_trees()),
        "n_seeds": n_seeds,
        "rul_cap": float(p["rul_cap"]),
        "train": rul_metrics(runtime.run_batch(session, X, spec), y),
    }
    if X_val is not None:
        yv = _rul_target(rul_val, len(Xv), "rul_val", p["rul_cap"])
        metrics["validation"] = rul_metrics(runtime.run_batch(session, Xv, spec), yv)
    return TrainedModel(
        onnx_bytes=onnx_bytes,
        kind="rul",
        feature_names=list(feature_names),
        output_spec=spec,
        open_threshold=float(p["open_rul"]),
        clear_threshold=float(p["clear_rul"]),
        background=_background(X, p["background_size"], p["seed"]),
        metrics=metrics,
        params={**p, "method": "lightgbm_regressor", "score_space": "rul"},
        library_versions=library_versions(),
    )


def phm08_score(predicted: np.ndarray, true: np.ndarray) -> float:
    """PHM08 challenge score: Σ exp(-d/13) - 1 for early (d < 0), exp(d/10) - 1 for late, d = predicted - true."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


def rul_metrics(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and PHM08 score of RUL predictions (the caller caps the truth if it wants to)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    error = predicted - np.asarray(true, dtype=np.float64)
    return {
        "n": int(len(error)),
        "rmse": float(np.sqrt(np.mean(error**2))) if len(error) else float("nan"),
        "mae": float(np.mean(np.abs(error))) if len(error) else float("nan"),
        "phm08_score": phm08_score(predicted, true),
    }


def rul_targets(
    ends: np.ndarray,
    asset_ids: np.ndarray,
    failures: Mapping[int, list[tuple[float, float]]],
    *,
    data_end_s: float,
    unit_s: float,
    cap: float,
) -> np.ndarray:
    """Remaining useful life of each window, in units of `unit_s` seconds: the time from its end to the
    start of its asset's next failure, 0 while a failure is under way. After an asset's last failure the
    life is unknown (NaN, right-censored) unless the data runs on for at least `cap` units, which proves
    the capped target. `failures` maps an asset id to the (start, end) times in seconds of its failures."""
    ends = np.asarray(ends, dtype=np.float64)
    out = np.full(len(ends), np.nan)
    for asset_id in np.unique(asset_ids):
        mine = np.flatnonzero(asset_ids == asset_id)
        ranges = sorted(failures.get(int(asset_id), []))
        starts = np.array([lo for lo, _ in ranges], dtype=np.float64)
        nxt = np.searchsorted(starts, ends[mine], side="left")  # first failure not begun by the window's end
        known = nxt < len(starts)
        out[mine[known]] = (starts[nxt[known]] - ends[mine[known]]) / unit_s
        censored = mine[~known]
        out[censored[(data_end_s - ends[censored]) / unit_s >= cap]] = cap
        for lo, hi in ranges:
            out[mine[(ends[mine] > lo) & (ends[mine] <= hi)]] = 0.0
    return out


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of metrics and reports: NumPy scalars and arrays become Python numbers and lists,
    non-finite floats None, keys strings (JSONField and json.dumps take nothing else)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if np.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def lightgbm_to_onnx(booster: Any, n_features: int) -> bytes:
    """Convert a binary LightGBM booster to a TreeEnsembleRegressor on its raw margin, output "score"."""
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    text = booster.model_to_string()
    text = re.sub(r"^threshold=(.*)$", lambda m: "threshold=" + _floor32_line(m.group(1)), text, flags=re.M)
    # tree_sizes are byte offsets of the tree blocks, stale after the edit; LightGBM parses without them.
    text = re.sub(r"^tree_sizes=.*\n", "", text, flags=re.M)
    # Declared a regression, the same trees convert to a TreeEnsembleRegressor whose output is the margin.
    text = re.sub(r"^objective=.*$", "objective=regression", text, flags=re.M)
    text = re.sub(r"^\[objective: .*\]$", "[objective: regression]", text, flags=re.M)
    margin_booster = lgb.Booster(model_str=text)
    onx = onnxmltools.convert_lightgbm(
        margin_booster, initial_types=[("input", FloatTensorType([None, n_features]))], target_opset=15
    )
    old = onx.graph.output[0].name
    for node in onx.graph.node:
        node.output[:] = [SCORE_NAME if o == old else o for o in node.output]
    onx.graph.output[0].name = SCORE_NAME
    onx.producer_name = "vigil (onnxmltools)"
    return onx.SerializeToString()


def merge_boosters(boosters: list[Any]) -> Any:
    """One LightGBM booster whose prediction is the mean of the given regression boosters: their trees one
    after the other, every leaf value times 1/k. It converts to ONE TreeEnsembleRegressor, so the product
    runs one model and TreeSHAP on its nodes stays exact (the explanation of a mean is the mean of the
    explanations). Leaf values are written with repr(), which round-trips a float64 exactly."""
    import lightgbm as lgb

    weight = 1.0 / len(boosters)
    texts = [booster.model_to_string() for booster in boosters]
    head, _, rest = texts[0].partition("\nTree=")
    tail = rest[rest.index("end of trees") :]
    trees = []
    for text in texts:
        body = text[text.index("\nTree=") + 1 : text.index("end of trees")]
        trees += [block for block in re.split(r"(?m)^(?=Tree=\d+$)", body) if block.strip()]

    def scaled(match: re.Match) -> str:
        values = [repr(float(v) * weight) for v in match.group(1).split()]
        return "leaf_value=" + " ".join(values)

    blocks = [
        re.sub(r"(?m)^leaf_value=(.*)$", scaled, re.sub(r"^Tree=\d+", f"Tree={i}", block))
        for i, block in enumerate(trees)
    ]
    head = re.sub(r"(?m)^tree_sizes=.*\n", "", head)
    return lgb.Booster(model_str=head + "\n" + "".join(blocks) + tail)


def sum_trees_in_double(onnx_bytes: bytes) -> bytes:
    """Feed the TreeEnsembleRegressor a float64 copy of the float32 input, so onnxruntime sums the trees in
    float64: a RUL starts from a ~100-cycle first tree, and float32 partial sums of that size drift by ~1e-4,
    as much as the explanation contract allows. The cast is exact, so every split decision is unchanged."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    source = graph.input[0].name
    trees = [n for n in graph.node if n.op_type == "TreeEnsembleRegressor" and n.input[0] == source]
    if len(trees) != 1:
        raise TrainingError("The converted model does not have the single tree ensemble expected.")
    trees[0].input[0] = f"{source}_f64"
    graph.node.insert(0, helper.make_node("Cast", [source], [f"{source}_f64"], to=TensorProto.DOUBLE))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def library_versions() -> dict[str, str]:
    """Versions of every library that shapes an artifact, stored as training provenance."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "numpy",
        "onnx",
        "onnxruntime",
        "scikit-learn",
        "lightgbm",
        "onnxmltools",
        "skl2onnx",
        "shap",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _best_f1_threshold(margin: np.ndarray, y: np.ndarray) -> float:
    """A threshold t with "margin > t" reproducing the best-F1 cut on the validation margins."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, cuts = precision_recall_curve(y, margin)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    cut = float(cuts[int(np.argmax(f1))])
    below = margin[margin < cut]
    # Midway to the next lower validation margin, so float32 rounding in onnxruntime cannot flip a decision.
    return (cut + float(below.max())) / 2 if len(below) else cut - 1e-3


def _detection_metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    flagged = scores > threshold
    normal = y == 0
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "n_val": len(y),
        "val_label_counts": {"normal": int(normal.sum()), "fault": int((~normal).sum())},
        "false_alarm_rate": float(flagged[normal].mean()) if normal.any() else None,
    }
    if (~normal).any():
        tp = int((flagged & ~normal).sum())
        fp = int((flagged & normal).sum())
        fn = int((~flagged & ~normal).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn)
        out.update(
            precision=precision,
            recall=recall,
            f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            pr_auc=float(average_precision_score(~normal, scores)) if normal.any() else 1.0,
        )
    return out


def _check_close(ort_scores: np.ndarray, reference: np.ndarray, what: str, *, scale: float = 1.0) -> None:
    error = np.abs(ort_scores - reference) / np.maximum(scale, np.abs(reference))
    if not np.all(np.isfinite(ort_scores)) or error.max(initial=0.0) > ONNX_TOLERANCE:
        raise TrainingError(
            f"onnxruntime's output differs from the {what} by up to {error.max():.3g} (relative; allowed "
            f"{ONNX_TOLERANCE:g}); the converted artifact is not faithful and was not kept."
        )


def _matrix(X: Any, feature_names: list[str], what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise TrainingError(f"{what} must be a 2-D feature matrix, got shape {X.shape}.")
    if X.shape[1] != len(feature_names) or len(set(feature_names)) != len(feature_names):
        raise TrainingError(
            f"{what} has {X.shape[1]} columns but {len(feature_names)} (unique) feature names."
        )
    if not np.all(np.isfinite(X)):
        raise TrainingError(f"{what} contains NaN or infinite values; drop or fill those windows first.")
    if np.any(np.abs(X) > np.finfo(np.float32).max):
        raise TrainingError(f"{what} has values beyond float32 range; the models take float32 features.")
    # Every model sees float32 features; train and check on exactly those values.
    return X.astype(np.float32).astype(np.float64)


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise TrainingError(f"{what} has {len(y)} labels for {n} windows.")
    if not np.all(np.isin(y, [0, 1])):
        raise TrainingError(f"{what} must hold 0 (normal) / 1 (fault) labels.")
    return y.astype(int)


def _rul_target(rul: Any, n: int, what: str, cap: float) -> np.ndarray:
    y = np.asarray(rul, dtype=np.float64).ravel()
    if len(y) != n:
        raise TrainingError(f"{what} has {len(y)} values for {n} windows.")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise TrainingError(f"{what} must hold finite, non-negative remaining-life values.")
    if not cap > 0:
        raise TrainingError(f"rul_cap must be positive, got {cap!r}.")
    return np.minimum(y, float(cap))


def _params(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TrainingError(f"Unknown training parameters {unknown}; known: {sorted(defaults)}.")
    return {**defaults, **given}


def _spec() -> dict[str, Any]:
    return {"name": SCORE_NAME, "index": 0, "direction": DIRECTION}


def _background(X: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = (
        rng.choice(len(X), size=min(int(size), len(X)), replace=False) if len(X) > size else np.arange(len(X))
    )
    return np.ascontiguousarray(X[np.sort(rows)], dtype=np.float32)


def _floor32_line(values: str) -> str:
    # The largest float32 <= t: for float32 x, "x <= t" and "x <= floor32(t)" always agree.
    t = np.array(values.split(), dtype=np.float64)
    f = t.astype(np.float32)
    f = np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f)
    return " ".join(repr(float(v)) for v in f)
