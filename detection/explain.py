"""SHAP values of the exact ONNX artifact that scored a window.

``explain(onnx_bytes, x, background, feature_names, output_spec, sensors=None)`` reads the given file and
dispatches on its graph:

* ``tree_shap_onnx`` — the score output comes from an ``ai.onnx.ml`` TreeEnsembleRegressor (post_transform
  NONE, SUM or AVERAGE). Its node attributes become shap's custom tree format and
  ``shap.TreeExplainer(..., data=background, feature_perturbation="interventional")`` explains it. Split
  modes map onto shap's ``x <= t`` test: BRANCH_LEQ as is, BRANCH_LT with the next float32 below t, GT/GTE
  the same with the children swapped; the missing-value child follows ``nodes_missing_value_tracks_true``. The ensemble may read
  the input through an exact float32 -> float64 Cast (RUL models sum their trees in float64). shap is
  imported when the first tree ensemble is explained (an anomaly model's explanation never loads it); the
  edge agent's gateway installs it too (edge/requirements.txt), so it explains an RUL alert as the server.
* ``exact_shapley_quadratic`` — the hand-built PCA T²+Q graph (``onnx_graphs``), whose score is
  ``f(z) = zᵀAz``. For one background row b, the interventional Shapley value of feature i is exactly
  ``A_ii (z_i² - b_i²) + Σ_{j≠i} A_ij (z_i - b_i)(z_j + b_j) = (z_i - b_i) · (A (z + b))_i`` (A symmetric;
  each cross term A_ij w_i w_j is a two-player game whose Shapley split is the formula's half each), and
  the values over the background are the mean over its rows. mu, sigma and A come from the file itself.
* ``exact_shapley_quadratic_max`` — a combination of detectors (``detection.detectors``): the Max of several
  such forms (``onnx_graphs.build_max_quadratic_graph``). The window's score IS the winning branch's score,
  so it is explained by that branch's exact Shapley values in the combined (calibrated) scale; the base
  value is the background mean of the winning branch's score (not of the Max), and ``detector`` names the
  winner, ``detector_scores`` every branch's score of the window.
* ``exact_shapley`` — any other model with at most 12 features: all 2^d coalitions × background rows are
  scored by onnxruntime in one batch and combined with the Shapley weights.
* ``permutation_shapley`` — other models with more features: an approximation (``"exact": False``) from
  antithetic feature permutations over the whole background; it is additive by construction.

Every explanation carries ``output`` (onnxruntime's score of x from a one-thread session), ``base_value``,
``additivity_error = |Σφ + base_value - output|`` and ``higher_is_worse`` (the output_spec's direction: which
sign of φ pushed towards an alert, read by ``dominant_roles`` and ``detection.wording``). An error above
``ADDITIVITY_TOLERANCE`` (1e-4) raises ExplanationError (``strict=False`` returns it with ``"additivity_ok":
False`` instead). The feature list is in the model's input order and ``value`` is the float32 value fed to
the model, so anyone can re-run the ONNX file on the stored values. Quadratic-form models also store each
feature's ``response``: per branch, [a, b, c] with the branch's score a·t² + b·t + c when that feature's input
is t and the others keep their values (``one_feature_responses``), from which ``detection.wording`` derives
exact counterfactuals.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from cachetools import LRUCache, cached
from onnx import helper, numpy_helper

from detection import runtime
from detection.baseline import Calibration
from detection.onnx_graphs import read_quadratic_forms
from detection.wording import pushes

ADDITIVITY_TOLERANCE = 1e-4
MAX_EXACT_FEATURES = 12
PERMUTATIONS = 16  # antithetic pairs x 2; each costs (d + 1) x background rows of scoring


class ExplanationError(ValueError):
    """The model or its inputs cannot be explained faithfully; the message says why."""


def explain(
    onnx_bytes: bytes,
    x: np.ndarray,
    background: np.ndarray,
    feature_names: list[str],
    output_spec: Mapping[str, Any],
    *,
    sensors: Mapping[str, str] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Explain the score of window ``x`` by the ONNX model (see the module docstring for the methods)."""
    d = len(feature_names)
    x = np.asarray(x, dtype=np.float64).ravel().astype(np.float32)
    bg = np.asarray(background, dtype=np.float64)
    if x.shape != (d,):
        raise ExplanationError(f"x has {x.size} values for {d} features.")
    if bg.ndim != 2 or bg.shape[1] != d or len(bg) == 0:
        raise ExplanationError(f"The background must be a non-empty [m, {d}] matrix, got shape {bg.shape}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(bg))):
        raise ExplanationError("x and the background must be finite; fill or drop gaps before explaining.")
    bg = bg.astype(np.float32)

    try:
        session = runtime.reference_session(onnx_bytes)
        output = float(runtime.run_batch(session, x[None, :], output_spec)[0])
    except runtime.ModelRuntimeError as exc:
        raise ExplanationError(str(exc)) from exc
    name = output_spec["name"]
    kind, plan = _plan(onnx_bytes, output_spec, bg)
    extra: dict[str, Any] = {"exact": True}
    if kind == "quadratic":
        method = "exact_shapley_quadratic"
        phi, base = _quadratic_shapley(plan, x, bg)
    elif kind == "quadratic_max":
        method = "exact_shapley_quadratic_max"
        forms, branches = plan
        branch_scores = [float(form.score(x[None, :])[0]) for form in forms]
        winner = int(np.argmax(branch_scores))  # Max's value; on a tie both branches give the same score
        phi, base = _quadratic_shapley(forms[winner], x, bg)
        extra = {
            "exact": True,
            "detector": branches[winner],
            "detector_scores": dict(zip(branches, branch_scores, strict=True)),
        }
    elif kind == "tree":
        method = "tree_shap_onnx"
        phi = np.asarray(plan.shap_values(x[None, :].astype(np.float64), check_additivity=False)).reshape(-1)
        base = float(np.ravel(plan.expected_value)[0])
    elif d <= MAX_EXACT_FEATURES:
        method = "exact_shapley"
        phi, base = _brute_force_shapley(session, x, bg, output_spec)
    else:
        method = "permutation_shapley"
        phi, base = _permutation_shapley(session, x, bg, output_spec, PERMUTATIONS)
        extra = {"exact": False, "n_permutations": PERMUTATIONS}

    error = abs(float(phi.sum()) + base - output)
    result = {
        "method": method,
        **extra,
        "base_value": float(base),
        "output": output,
        "additivity_error": error,
        "additivity_ok": error <= ADDITIVITY_TOLERANCE,
        "output_name": name,
        "higher_is_worse": runtime.higher_is_worse(output_spec),
        "background_size": len(bg),
        "features": [
            {"name": f, "sensor": _sensor(f, sensors), "value": float(v), "phi": float(p)}
            for f, v, p in zip(feature_names, x, phi, strict=True)
        ],
    }
    if kind in ("quadratic", "quadratic_max"):
        forms = [plan] if kind == "quadratic" else plan[0]
        for feature, response in zip(result["features"], one_feature_responses(forms, x), strict=True):
            feature["response"] = response
    if strict and not result["additivity_ok"]:
        raise ExplanationError(
            f"{method}: |sum(phi) + base - output| = {error:.3g} exceeds {ADDITIVITY_TOLERANCE:g}; the "
            "explanation is not faithful to the model and was not returned."
        )
    return result


def with_baseline(result: dict[str, Any], baseline: np.ndarray | Calibration | None) -> dict[str, Any]:
    """Give each feature of an explanation of a baselined model's input what the sensor showed.

    The input of a baselined model is the change from the asset's operating point, so the SHAP values (and
    their additivity) are of that input; each feature also gets ``baseline`` (a robust calibration's
    location, the asset's median: the value "normal" means) and ``raw`` (value x scale + baseline). The
    pages, the write-back and the edge agent's local words read these. ``result`` is changed and returned.
    """
    if baseline is None:
        return result
    robust = isinstance(baseline, Calibration)
    base_values = baseline.location if robust else np.asarray(baseline, dtype=np.float64)
    scales = baseline.scale if robust else np.ones(len(base_values))
    for feature, base, scale in zip(result["features"], base_values, scales, strict=True):
        feature["baseline"] = float(base)
        feature["raw"] = float(np.float64(feature["value"]) * scale + base)
    return result


def typical_ranges(background: np.ndarray, feature_names: list[str]) -> dict[str, tuple[float, float]]:
    """10th-90th percentile of each feature over the background sample: what "usually" means."""
    bg = np.asarray(background, dtype=np.float64)
    low, high = np.percentile(bg, [10, 90], axis=0)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(feature_names, low, high, strict=True)}


# -- quadratic form ------------------------------------------------------------------------------------------


def _quadratic_shapley(form: Any, x: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, float]:
    A = (form.A + form.A.T) / 2  # zᵀAz only sees the symmetric part
    z = (x.astype(np.float64) - form.mu) * form.inv_sigma
    B = (bg.astype(np.float64) - form.mu) * form.inv_sigma
    phi = ((z - B) * ((z + B) @ A)).mean(axis=0)
    base = float(np.einsum("ni,ij,nj->n", B, A, B).mean())
    return phi, base


def one_feature_responses(forms: list[Any], x: np.ndarray) -> list[list[list[float]]]:
    """Per feature i, per branch: [a, b, c] with branch score = a·t² + b·t + c when feature i's input is t
    and every other feature keeps its value in ``x``.

    zᵀAz is quadratic in one coordinate, so this is exact; it lets the wording say which value of one
    feature alone would bring the score back under a threshold (``detection.wording``).
    """
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    out: list[list[list[float]]] = [[] for _ in range(len(x64))]
    for form in forms:
        A = (form.A + form.A.T) / 2
        s, mu = form.inv_sigma, form.mu
        z = (x64 - mu) * s
        total = float(z @ A @ z)
        diag = np.diag(A)
        cross = A @ z - diag * z  # Σ_{j≠i} A_ij z_j
        rest = total - diag * z**2 - 2 * cross * z
        a = diag * s**2
        b = 2 * cross * s - 2 * diag * s**2 * mu
        c = diag * s**2 * mu**2 - 2 * cross * s * mu + rest
        for i in range(len(x64)):
            out[i].append([float(a[i]), float(b[i]), float(c[i])])
    return out


# -- tree ensembles ------------------------------------------------------------------------------------------


def _producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    return next((n for n in graph.node if name in n.output), None)


def _tree_model(model: onnx.ModelProto, output_name: str, index: int | None) -> dict[str, Any] | None:
    """shap's custom tree dict for a TreeEnsembleRegressor feeding ``output_name``, else None."""
    graph = model.graph
    node = _producer(graph, output_name)
    while node is not None and node.op_type == "Identity":
        node = _producer(graph, node.input[0])
    if node is None or node.op_type != "TreeEnsembleRegressor" or node.domain != "ai.onnx.ml":
        return None
    source = node.input[0]
    while (prev := _producer(graph, source)) is not None and prev.op_type in ("Identity", "Cast"):
        # float32 -> float64 is exact (training.sum_trees_in_double), so the splits see the same values.
        to = helper.get_attribute_value(prev.attribute[0]) if prev.op_type == "Cast" else None
        if prev.op_type == "Cast" and to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            return None
        source = prev.input[0]
    if len(graph.input) != 1 or source != graph.input[0].name:
        return None
    a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    if a.get("post_transform", b"NONE") not in (b"NONE", "NONE"):
        return None
    aggregate = a.get("aggregate_function", b"SUM")
    if aggregate not in (b"SUM", b"AVERAGE", "SUM", "AVERAGE"):
        return None
    target = 0 if index is None else int(index)
    if target >= int(a.get("n_targets", 1)):
        return None
    thresholds = _floats(a, "nodes_values")
    weights = _floats(a, "target_weights")
    bases = _floats(a, "base_values")
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    if any(m not in ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "LEAF") for m in modes):
        return None
    tree_ids = np.asarray(a["nodes_treeids"])
    node_ids = np.asarray(a["nodes_nodeids"])
    features = np.asarray(a["nodes_featureids"])
    true_ids = np.asarray(a["nodes_truenodeids"])
    false_ids = np.asarray(a["nodes_falsenodeids"])
    tracks_true = np.asarray(a.get("nodes_missing_value_tracks_true", [0] * len(modes)))
    t_tree, t_node, t_id = (np.asarray(a[k]) for k in ("target_treeids", "target_nodeids", "target_ids"))

    unique_trees = np.unique(tree_ids)
    scale = 1.0 / len(unique_trees) if aggregate in (b"AVERAGE", "AVERAGE") else 1.0
    trees = []
    for tree in unique_trees:
        rows = np.flatnonzero(tree_ids == tree)
        position = {int(node_ids[r]): i for i, r in enumerate(rows)}
        n = len(rows)
        left = np.full(n, -1, dtype=np.int32)
        right = np.full(n, -1, dtype=np.int32)
        default = np.full(n, -1, dtype=np.int32)
        feat = np.full(n, -2, dtype=np.int32)
        thr = np.zeros(n, dtype=np.float64)
        values = np.zeros((n, 1), dtype=np.float64)
        for i, r in enumerate(rows):
            mode = modes[r]
            if mode == "LEAF":
                continue
            t_child, f_child = position[int(true_ids[r])], position[int(false_ids[r])]
            t32 = np.float32(thresholds[r])
            if mode in ("BRANCH_LT", "BRANCH_GTE"):
                # x < t  <=>  x <= (the float32 just below t), for float32 x
                t32 = np.nextafter(t32, np.float32(-np.inf))
            if mode in ("BRANCH_LEQ", "BRANCH_LT"):
                left[i], right[i] = t_child, f_child
            else:
                left[i], right[i] = f_child, t_child
            default[i] = t_child if tracks_true[r] else f_child
            feat[i], thr[i] = int(features[r]), float(t32)
        for j in np.flatnonzero((t_tree == tree) & (t_id == target)):
            values[position[int(t_node[j])], 0] += weights[j] * scale
        trees.append(
            {
                "children_left": left,
                "children_right": right,
                "children_default": default,
                "features": feat,
                "thresholds": thr,
                "values": values,
                "node_sample_weight": np.ones(n, dtype=np.float64),
            }
        )
    base = float(bases[target]) if len(bases) > target else 0.0
    return {"trees": trees, "base_offset": base, "tree_output": "raw_value", "input_dtype": np.float32}


def _floats(attrs: Mapping[str, Any], name: str) -> np.ndarray:
    if name in attrs:
        return np.asarray(attrs[name], dtype=np.float64)
    tensor = attrs.get(f"{name}_as_tensor")
    return numpy_helper.to_array(tensor).astype(np.float64) if tensor is not None else np.zeros(0)


def prepare(onnx_bytes: bytes, background: np.ndarray, output_spec: Mapping[str, Any]) -> None:
    """Build and cache the plan ``explain`` uses for this artifact and background now (for a tree model,
    importing shap and building its trees: about a second, once per process), so that the first alert a
    process explains does not wait for it. Raises ExplanationError as ``explain`` would."""
    _plan(onnx_bytes, output_spec, np.asarray(background, dtype=np.float64).astype(np.float32))


def _plan_key(onnx_bytes: bytes, output_spec: Mapping[str, Any], bg: np.ndarray) -> tuple[str, ...]:
    return (
        runtime.sha256(onnx_bytes),
        hashlib.sha256(bg.tobytes()).hexdigest(),
        str(output_spec.get("name")),
        str(output_spec.get("index")),
    )


@cached(LRUCache(maxsize=16), key=_plan_key, lock=threading.Lock())
def _plan(onnx_bytes: bytes, output_spec: Mapping[str, Any], bg: np.ndarray) -> tuple[str, Any]:
    """How to explain this artifact: ("quadratic", form), ("quadratic_max", (forms, branch names)),
    ("tree", TreeExplainer) or ("generic", None).

    Parsing the graph and building shap's trees costs far more than explaining one window, so the plan is
    cached per (artifact sha256, output, background).
    """
    index = output_spec.get("index")
    try:
        model = onnx.load_from_string(bytes(onnx_bytes))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ExplanationError(f"The ONNX artifact cannot be parsed: {exc}") from exc
    name = output_spec["name"]
    plan: tuple[str, Any] = ("generic", None)
    quadratic = read_quadratic_forms(model, name) if index in (None, 0) else None
    if quadratic is not None and len(quadratic[0]) == 1:
        plan = ("quadratic", quadratic[0][0])
    elif quadratic is not None:
        plan = ("quadratic_max", quadratic)
    elif (trees := _tree_model(model, name, index)) is not None:
        import shap

        data: Any = bg.astype(np.float64)
        if len(data) > 100:  # shap samples down to 100 rows unless told otherwise
            data = shap.maskers.Independent(data, max_samples=len(data))
        plan = (
            "tree",
            shap.TreeExplainer(trees, data=data, feature_perturbation="interventional", model_output="raw"),
        )
    return plan


# -- model-agnostic ------------------------------------------------------------------------------------------


def _brute_force_shapley(
    session: Any, x: np.ndarray, bg: np.ndarray, output_spec: Mapping[str, Any]
) -> tuple[np.ndarray, float]:
    d, m = len(x), len(bg)
    coalitions = np.arange(2**d)
    masks = ((coalitions[:, None] >> np.arange(d)) & 1).astype(bool)  # [2^d, d]
    batch = np.where(masks[:, None, :], x[None, None, :], bg[None, :, :]).reshape(-1, d)
    value = _score(session, batch, output_spec).reshape(2**d, m).mean(axis=1)  # v(S), one batch
    sizes = masks.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)])
    phi = np.zeros(d)
    for i in range(d):
        without = coalitions[~masks[:, i]]
        phi[i] = np.sum(weight[sizes[without]] * (value[without | (1 << i)] - value[without]))
    return phi, float(value[0])


def _permutation_shapley(
    session: Any, x: np.ndarray, bg: np.ndarray, output_spec: Mapping[str, Any], n_perm: int
) -> tuple[np.ndarray, float]:
    d, m = len(x), len(bg)
    rng = np.random.default_rng(0)  # fixed: the same alert always gets the same explanation
    orders = []
    for _ in range(n_perm // 2):
        order = rng.permutation(d)
        orders += [order, order[::-1]]  # antithetic pairs cancel much of the sampling variance
    orders = np.array(orders)
    steps = np.zeros((len(orders), d + 1, d), dtype=bool)
    for p, order in enumerate(orders):
        for k in range(1, d + 1):
            steps[p, k, order[:k]] = True
    batch = np.where(steps[:, :, None, :], x[None, None, None, :], bg[None, None, :, :]).reshape(-1, d)
    value = _score(session, batch, output_spec).reshape(len(orders), d + 1, m).mean(axis=2)
    phi = np.zeros(d)
    for p, order in enumerate(orders):
        phi[order] += np.diff(value[p])
    return phi / len(orders), float(value[:, 0].mean())


def _score(session: Any, batch: np.ndarray, output_spec: Mapping[str, Any]) -> np.ndarray:
    try:
        return runtime.run_batch(session, batch, output_spec)
    except runtime.ModelRuntimeError as exc:
        raise ExplanationError(str(exc)) from exc


def _sensor(feature: str, sensors: Mapping[str, str] | None) -> str:
    role = feature.rsplit("__", 1)[0]
    return (sensors or {}).get(role, role)


# --- which sensors an explanation points at -----------------------------------------------------------

# The fewest roles covering this share of the total positive net push dominate an explanation, at most this
# many.
DOMINANT_SHARE = 0.6
DOMINANT_MAX_ROLES = 3


def dominant_roles(
    explanation: Mapping[str, Any] | None,
    *,
    higher: bool | None = None,
    parts: Mapping[str, str] | None = None,
) -> list[str]:
    """Sensor roles that dominate an explanation: the fewest roles, largest net push first, covering 60 % of
    the summed positive net pushes, at most three.

    A role's net push is its features' summed φ in the direction in which scores are bad
    (``detection.wording.pushes``, the rule the alert's words name their sensors by): only roles that pushed
    the score towards the alert count, so the title, the similar-alert grouping, the noise page and the
    quality gate name the sensors the words give, in their order. A role whose features cancel out (large
    summed |φ|, small net) or that pulled the score away is never dominant. ``higher``: the bad direction,
    None for the explanation's own (``higher_is_worse``). ``parts``: roles summed per part of the machine
    (``pushes``), so the parts that dominate are returned instead of the roles.
    """
    found = pushes(explanation, higher=higher, parts=parts)
    total = sum(push for _, push in found)
    picked: list[str] = []
    covered = 0.0
    for role, push in found:
        if covered >= DOMINANT_SHARE * total or len(picked) == DOMINANT_MAX_ROLES:
            break
        picked.append(role)
        covered += push
    return picked


def top_role(
    explanation: Mapping[str, Any] | None,
    *,
    higher: bool | None = None,
    parts: Mapping[str, str] | None = None,
) -> str:
    """The role that pushed the score most towards the alert ("" without one): the alert's title, the sensor
    its first reason names, and what "a similar alert" means. ``parts``: as ``dominant_roles``."""
    roles = dominant_roles(explanation, higher=higher, parts=parts)
    return roles[0] if roles else ""
