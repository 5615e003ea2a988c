"""SHAP values of the exact ONNX artifact that scored a window.

``explain(onnx_bytes, x, background, feature_names, output_spec, sensors=None)`` reads the given file and
dispatches on its graph:

* ``tree_shap_onnx`` — the score output comes from an ``ai.onnx.ml`` TreeEnsembleRegressor (post_transform
  NONE, SUM or AVERAGE). Its nodes become each leaf's box of inputs (``_tree_model``: split modes map onto
  ``x <= t``, BRANCH_LT with the next float32 below t, GT/GTE their complements; each tree's root is its
  first node, as onnxruntime reads it) and the interventional TreeSHAP values over the background are
  computed exactly from those boxes (``_tree_shapley``: what ``shap.TreeExplainer(..., data=background,
  feature_perturbation="interventional")`` computes, with numpy alone, so the edge agent explains an RUL
  model on a gateway, which has no shap, as the server does). The ensemble may read
  the input through an exact float32 -> float64 Cast (RUL models sum their trees in float64).
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

import functools
import hashlib
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
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
        phi, base = _tree_shapley(plan, x)
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


@dataclass(frozen=True)
class Leaves:
    """Leaves of a tree ensemble whose paths test the same number p of features: each leaf is the box of the
    inputs that reach it (per feature of its path ``low < x <= high``, the path's splits on that feature
    merged into one interval) and its value (divided by the tree count for an AVERAGE ensemble)."""

    features: np.ndarray  # [leaves, p] int
    low: np.ndarray  # [leaves, p] float64
    high: np.ndarray  # [leaves, p] float64
    values: np.ndarray  # [leaves] float64

    def inside(self, X: np.ndarray) -> np.ndarray:
        """[n, leaves, p]: which path conditions each row of X meets (float32 inputs, as onnxruntime reads
        them; float32 to float64 is exact, so the comparisons are the runtime's)."""
        v = np.asarray(X, dtype=np.float32).astype(np.float64)[:, self.features]
        return (v > self.low) & (v <= self.high)


@dataclass(frozen=True)
class TreePlan:
    """A tree ensemble ready to explain against one background of m rows: its leaves grouped by path
    length, each group with the rows that meet each of its conditions as bit sets ([leaves, p, words]
    uint64, bit j: row j), and the base value (the mean output over the background)."""

    groups: tuple[tuple[Leaves, np.ndarray], ...]
    valid: np.ndarray  # [words] uint64: the bits of the m rows
    m: int
    base: float


def _bit_sets(inside: np.ndarray) -> np.ndarray:
    """[m, ...] bool -> [..., ceil(m / 64)] uint64, bit j set when row j is True."""
    words = (len(inside) + 63) // 64
    padded = np.zeros((words * 64, *inside.shape[1:]), dtype=bool)
    padded[: len(inside)] = inside
    packed = np.packbits(padded, axis=0, bitorder="little")  # [words * 8, ...] uint8
    return np.ascontiguousarray(np.moveaxis(packed, 0, -1)).view(np.uint64)


def _tree_plan(groups: list[Leaves], base: float, bg: np.ndarray) -> TreePlan:
    """The rows of the background that meet each path condition, as bit sets (``TreePlan``)."""
    m = len(bg)
    planned = []
    reached = 0.0
    for leaves in groups:
        parts = []
        size = max(1, (1 << 22) // max(1, m * leaves.features.shape[1]))  # ~4 M booleans at a time
        for start in range(0, len(leaves.values), size):
            part = slice(start, start + size)
            chunk = Leaves(leaves.features[part], leaves.low[part], leaves.high[part], leaves.values[part])
            parts.append(_bit_sets(chunk.inside(bg)))
        rows = np.concatenate(parts)
        if leaves.features.shape[1]:
            counts = np.bitwise_count(np.bitwise_and.reduce(rows, axis=1)).sum(axis=1)  # rows reaching it
        else:
            counts = np.full(len(leaves.values), m)  # a tree that is one leaf
        reached += float(counts @ leaves.values)
        planned.append((leaves, rows))
    valid = _bit_sets(np.ones((m, 1), dtype=bool))[0]
    return TreePlan(tuple(planned), valid, m, base + reached / m)


def _tree_model(
    model: onnx.ModelProto, output_name: str, index: int | None
) -> tuple[list[Leaves], float] | None:
    """The leaves (grouped by path length) and base value of a TreeEnsembleRegressor feeding
    ``output_name``, else None."""
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
    # In float32 inputs x < t is x <= (the float32 just below t); GT/GTE are the complements of LTE/LT.
    t32 = thresholds.astype(np.float32)
    nudged = np.isin(modes, ["BRANCH_LT", "BRANCH_GTE"])
    t32[nudged] = np.nextafter(t32[nudged], np.float32(-np.inf))
    cut = t32.astype(np.float64)
    below_is_true = np.isin(modes, ["BRANCH_LEQ", "BRANCH_LT"])
    is_leaf = np.array([m == "LEAF" for m in modes], dtype=bool)
    tree_ids = [int(t) for t in a["nodes_treeids"]]
    row_of = {(t, int(n)): r for r, (t, n) in enumerate(zip(tree_ids, a["nodes_nodeids"], strict=True))}
    values = np.zeros(len(modes))
    for tree, node, target_id, weight in zip(
        a["target_treeids"], a["target_nodeids"], a["target_ids"], weights.tolist(), strict=True
    ):
        if int(target_id) == target:
            values[row_of[(int(tree), int(node))]] += weight
    if aggregate in (b"AVERAGE", "AVERAGE"):
        values /= len(set(tree_ids))
    branch = np.flatnonzero(~is_leaf)
    children = np.full((2, len(modes)), -1)  # the true and false child of each branch
    for side, ids in enumerate((a["nodes_truenodeids"], a["nodes_falsenodeids"])):
        for r in branch.tolist():
            children[side, r] = row_of.get((tree_ids[r], int(ids[r])), -1)
    if (children[:, branch] < 0).any():
        return None
    below = np.where(below_is_true, children[0], children[1])  # the child of x <= t
    above = np.where(below_is_true, children[1], children[0])
    # Each tree's first node is its root, as onnxruntime reads the ensemble.
    roots = np.array(
        sorted({tree: r for r, tree in reversed(list(enumerate(tree_ids)))}.values()), dtype=np.intp
    )
    feature = np.asarray(a["nodes_featureids"], dtype=np.intp)
    n_features = int(feature[branch].max()) + 1 if len(branch) else 0

    # Every leaf's box, level by level from the roots (the explained inputs are finite, ``explain`` refuses
    # others, so the missing-value branches never matter); each level's leaves are grouped by the number of
    # features their path tests.
    found: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    frontier = roots
    low = np.full((len(roots), n_features), -np.inf)
    high = np.full((len(roots), n_features), np.inf)
    for _ in range(len(modes) + 1):
        if not len(frontier):
            break
        done = is_leaf[frontier]
        if done.any():
            lo, hi = low[done], high[done]
            tested = (lo > -np.inf) | (hi < np.inf)
            counts = tested.sum(axis=1)
            for p in np.unique(counts).tolist():
                same = counts == p
                order = np.argsort(~tested[same], axis=1, kind="stable")[:, :p]
                found.setdefault(p, []).append(
                    (
                        order,
                        np.take_along_axis(lo[same], order, axis=1),
                        np.take_along_axis(hi[same], order, axis=1),
                        values[frontier[done][same]],
                    )
                )
        frontier, low, high = frontier[~done], low[~done], high[~done]
        i, f, t = np.arange(len(frontier)), feature[frontier], cut[frontier]
        high_below, low_above = high.copy(), low.copy()
        high_below[i, f] = np.minimum(high[i, f], t)
        low_above[i, f] = np.maximum(low[i, f], t)
        frontier = np.concatenate([below[frontier], above[frontier]])
        low, high = np.concatenate([low, low_above]), np.concatenate([high_below, high])
    else:
        return None  # a cycle: not a tree
    groups = [
        Leaves(*(np.concatenate([part[k] for part in parts]) for k in range(4)))
        for _, parts in sorted(found.items())
    ]
    return groups, float(bases[target]) if len(bases) > target else 0.0


def _tree_shapley(plan: TreePlan, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Interventional TreeSHAP of the ensemble at ``x`` over the plan's background, exact.

    For one background row b the game is v(S) = f(x_S, b_rest), and f is a sum over leaves of value ×
    [the input is in the leaf's box]. Take one leaf: a path condition x fails (the set O) must be met by b
    and its feature must be left out of S, else the leaf is not reached; a condition x meets and b fails
    (the set A, per row) needs its feature in S. So the leaf is reached iff A ⊆ S and O ∩ S = ∅, a game
    whose Shapley values are value × (|A|-1)! |O|! / (|A|+|O|)! for each feature of A and
    -value × |A|! (|O|-1)! / (|A|+|O|)! for each of O. The explanation sums them over the leaves and
    averages over the background rows, which is what shap's interventional TreeExplainer computes; here
    with numpy alone (a gateway explains its tree models as the server does), the rows as bit sets: per
    leaf the rows that reach it past O, and a bit-sliced count of |A| per row.
    """
    phi = np.zeros(len(x))
    for leaves, rows in plan.groups:
        width = leaves.features.shape[1]
        if not width:
            continue  # a one-leaf tree is the same for every input: no feature moves it
        met = leaves.inside(np.asarray(x)[None, :])[0]  # [leaves, p]
        live = np.bitwise_and.reduce(np.where(met[:, :, None], plan.valid, rows), axis=1)  # b meets O
        fails = np.where(met[:, :, None], plan.valid & ~rows, np.uint64(0))  # per condition of A
        n_out = width - met.sum(axis=1)  # |O| per leaf
        planes = [np.zeros_like(live) for _ in range(width.bit_length())]
        for k in range(width):  # |A| per row in binary, one bit plane per digit
            carry = fails[:, k]
            for i, plane in enumerate(planes):
                planes[i], carry = plane ^ carry, plane & carry
        weight = _tree_weights(width)
        on_a = np.zeros(met.shape)
        on_o = np.zeros(len(met))
        for n_a in range(width + 1):
            exact = live.copy()  # the live rows with |A| = n_a
            for i, plane in enumerate(planes):
                exact &= plane if n_a >> i & 1 else ~plane
            on_o += np.bitwise_count(exact).sum(axis=1) * weight[1, n_a, n_out]
            if n_a:
                on_a += (
                    np.bitwise_count(fails & exact[:, None, :]).sum(axis=2) * weight[0, n_a, n_out][:, None]
                )
        share = np.where(met, on_a, on_o[:, None]) * leaves.values[:, None]
        phi += np.bincount(leaves.features.ravel(), weights=share.ravel(), minlength=len(x))
    return phi / plan.m, plan.base


@functools.cache
def _tree_weights(width: int) -> np.ndarray:
    """[2, width + 1, width + 1]: the Shapley weight of a feature of A (0) or of O (1) given |A|, |O|."""
    weight = np.zeros((2, width + 1, width + 1))
    for n_a in range(width + 1):
        for n_o in range(width + 1 - n_a):
            total = math.factorial(n_a + n_o)
            if n_a:
                weight[0, n_a, n_o] = math.factorial(n_a - 1) * math.factorial(n_o) / total
            if n_o:
                weight[1, n_a, n_o] = -math.factorial(n_a) * math.factorial(n_o - 1) / total
    return weight


def _floats(attrs: Mapping[str, Any], name: str) -> np.ndarray:
    if name in attrs:
        return np.asarray(attrs[name], dtype=np.float64)
    tensor = attrs.get(f"{name}_as_tensor")
    return numpy_helper.to_array(tensor).astype(np.float64) if tensor is not None else np.zeros(0)


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
    ("tree", TreePlan) or ("generic", None).

    Parsing the graph (and, for trees, finding which background rows reach each leaf) costs far more than
    explaining one window, so the plan is cached per (artifact sha256, output, background).
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
        plan = ("tree", _tree_plan(*trees, bg))
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


def dominant_roles(explanation: Mapping[str, Any] | None, *, higher: bool | None = None) -> list[str]:
    """Sensor roles that dominate an explanation: the fewest roles, largest net push first, covering 60 % of
    the summed positive net pushes, at most three.

    A role's net push is its features' summed φ in the direction in which scores are bad
    (``detection.wording.pushes``, the rule the alert's words name their sensors by): only roles that pushed
    the score towards the alert count, so the title, the similar-alert grouping, the noise page and the
    quality gate name the sensors the words give, in their order. A role whose features cancel out (large
    summed |φ|, small net) or that pulled the score away is never dominant. ``higher``: the bad direction,
    None for the explanation's own (``higher_is_worse``).
    """
    found = pushes(explanation, higher=higher)
    total = sum(push for _, push in found)
    picked: list[str] = []
    covered = 0.0
    for role, push in found:
        if covered >= DOMINANT_SHARE * total or len(picked) == DOMINANT_MAX_ROLES:
            break
        picked.append(role)
        covered += push
    return picked


def top_role(explanation: Mapping[str, Any] | None, *, higher: bool | None = None) -> str:
    """The role that pushed the score most towards the alert ("" without one): the alert's title, the sensor
    its first reason names, and what "a similar alert" means."""
    roles = dominant_roles(explanation, higher=higher)
    return roles[0] if roles else ""
