"""Hand-built ONNX graphs, and the parser that recognises them again for explanations.

The anomaly model (PCA T² + Q on standardised features) is a quadratic form: with ``z = (x - mu) * inv_sigma``
the score is ``zᵀ A z``. Its graph is::

    input float32 [N, d] -> Cast(double) -> Sub(mu) -> Mul(inv_sigma) = z -> MatMul(A) -> Mul(z)
        -> ReduceSum(axis 1, keepdims) -> score double [N, 1]

The input stays float32 (the feature-spec contract of every model); the arithmetic is float64 so that the
score of a far-out window (thousands) is still exact to ~1e-12 and explanations meet the 1e-4 additivity
contract against onnxruntime's own output. ``read_quadratic_graph`` accepts exactly this structure and
returns the initializers, so ``explain`` reads mu, inv_sigma and A from the very file being explained.

A combination of detectors (``detection.detectors``) is the max of several quadratic forms over one input::

    input -> Cast(double) = x64 -> for each branch k: Sub(mu_k) -> Mul(inv_sigma_k) -> MatMul(A_k) -> Mul
        -> ReduceSum = score_k;  Max(score_0, ..., score_K-1) -> score double [N, 1]

(a branch whose A is diagonal multiplies by its diagonal instead, ``Mul(w_k)``: O(d) numbers, not O(d²)),

built by ``build_max_quadratic_graph`` and read back by ``read_quadratic_forms`` (which also accepts the
single form, as a one-branch list); the branch names are stored in the model property ``vigil.branches``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "input"
SCORE_NAME = "score"
OPSET = 17
QUADRATIC_KIND = "quadratic_form"
MAX_QUADRATIC_KIND = "max_of_quadratic_forms"
BRANCHES_PROP = "vigil.branches"
_PIPELINE = ["Cast", "Sub", "Mul", "MatMul", "Mul", "ReduceSum"]


@dataclass(frozen=True)
class QuadraticForm:
    """score(x) = zᵀ A z with z = (x - mu) * inv_sigma, all float64."""

    mu: np.ndarray
    inv_sigma: np.ndarray
    A: np.ndarray

    def score(self, X: np.ndarray) -> np.ndarray:
        """NumPy reference of the graph (same float32 input rounding, float64 arithmetic)."""
        z = (np.asarray(X, dtype=np.float32).astype(np.float64) - self.mu) * self.inv_sigma
        return np.einsum("ni,ni->n", z @ self.A, z)


def build_quadratic_graph(form: QuadraticForm, *, doc: str = "") -> bytes:
    """Serialise ``form`` as the ONNX graph described in the module docstring."""
    d = len(form.mu)
    if form.inv_sigma.shape != (d,) or form.A.shape != (d, d):
        raise ValueError(
            f"mu {form.mu.shape}, inv_sigma {form.inv_sigma.shape} and A {form.A.shape} disagree."
        )
    inits = [
        numpy_helper.from_array(np.asarray(form.mu, dtype=np.float64), "mu"),
        numpy_helper.from_array(np.asarray(form.inv_sigma, dtype=np.float64), "inv_sigma"),
        numpy_helper.from_array(np.asarray(form.A, dtype=np.float64), "A"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("Sub", ["x64", "mu"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_sigma"], ["z"]),
        helper.make_node("MatMul", ["z", "A"], ["zA"]),
        helper.make_node("Mul", ["zA", "z"], ["terms"]),
        helper.make_node("ReduceSum", ["terms", "axes"], [SCORE_NAME], keepdims=1),
    ]
    return _score_model(nodes, inits, "vigil_quadratic_score", d, doc, {"vigil.graph": QUADRATIC_KIND})


def read_quadratic_graph(model: onnx.ModelProto, output_name: str) -> QuadraticForm | None:
    """The quadratic form of ``model`` if it has exactly the structure built above, else None."""
    graph = model.graph
    nodes = list(graph.node)
    if [n.op_type for n in nodes] != _PIPELINE or any(n.domain not in ("", "ai.onnx") for n in nodes):
        return None
    if len(graph.input) != 1 or nodes[-1].output[0] != output_name or not _is_cast(nodes[0], graph):
        return None
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return _read_branch(nodes[1:], nodes[0].output[0], inits, "")


def build_max_quadratic_graph(
    forms: Sequence[QuadraticForm], branches: Sequence[str], *, doc: str = ""
) -> bytes:
    """Serialise max_k zₖᵀ Aₖ zₖ over ``forms`` (named by ``branches``) as one graph (see module docstring)."""
    if len(forms) < 2 or len(branches) != len(forms) or len(set(branches)) != len(branches):
        raise ValueError("A max graph needs two or more forms, each with its own branch name.")
    d = len(forms[0].mu)
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    nodes = [helper.make_node("Cast", [INPUT_NAME], ["x64"], to=TensorProto.DOUBLE)]
    for k, form in enumerate(forms):
        if form.mu.shape != (d,) or form.inv_sigma.shape != (d,) or form.A.shape != (d, d):
            raise ValueError(f"Branch {k} does not have {d} features.")
        A = np.asarray(form.A, dtype=np.float64)
        # A diagonal branch (a per-sensor robust z) multiplies by its diagonal: O(d) in the file, not O(d²).
        diagonal = not np.any(A - np.diag(np.diag(A)))
        inits += [
            numpy_helper.from_array(np.asarray(form.mu, dtype=np.float64), f"mu_{k}"),
            numpy_helper.from_array(np.asarray(form.inv_sigma, dtype=np.float64), f"inv_sigma_{k}"),
            numpy_helper.from_array(np.diag(A).copy() if diagonal else A, f"{'w' if diagonal else 'A'}_{k}"),
        ]
        nodes += [
            helper.make_node("Sub", ["x64", f"mu_{k}"], [f"centred_{k}"]),
            helper.make_node("Mul", [f"centred_{k}", f"inv_sigma_{k}"], [f"z_{k}"]),
            helper.make_node(
                "Mul" if diagonal else "MatMul", [f"z_{k}", f"{'w' if diagonal else 'A'}_{k}"], [f"zA_{k}"]
            ),
            helper.make_node("Mul", [f"zA_{k}", f"z_{k}"], [f"terms_{k}"]),
            helper.make_node("ReduceSum", [f"terms_{k}", "axes"], [f"score_{k}"], keepdims=1),
        ]
    nodes.append(helper.make_node("Max", [f"score_{k}" for k in range(len(forms))], [SCORE_NAME]))
    props = {"vigil.graph": MAX_QUADRATIC_KIND, BRANCHES_PROP: ",".join(branches)}
    return _score_model(nodes, inits, "vigil_max_quadratic_score", d, doc, props)


def _score_model(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    name: str,
    d: int,
    doc: str,
    props: dict[str, str],
) -> bytes:
    """The checked, serialised model: float32 input [N, d] -> float64 score [N, 1]."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info(SCORE_NAME, TensorProto.DOUBLE, [None, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vigil")
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    model.doc_string = doc
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def read_quadratic_forms(
    model: onnx.ModelProto, output_name: str
) -> tuple[list[QuadraticForm], list[str]] | None:
    """The branches of a quadratic-form graph, single (one branch, named "") or max (built above), with
    their names; None for any other graph."""
    single = read_quadratic_graph(model, output_name)
    if single is not None:
        return [single], [""]
    graph = model.graph
    nodes = list(graph.node)
    n_branches, rest = divmod(len(nodes) - 2, 5)
    if n_branches < 2 or rest or any(n.domain not in ("", "ai.onnx") for n in nodes):
        return None
    if len(graph.input) != 1 or not _is_cast(nodes[0], graph):
        return None
    last = nodes[-1]
    if last.op_type != "Max" or list(last.output) != [output_name] or len(last.input) != n_branches:
        return None
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    forms = []
    for k in range(n_branches):
        block = nodes[1 + 5 * k : 6 + 5 * k]
        form = _read_branch(block, nodes[0].output[0], inits, f"_{k}")
        if form is None or block[-1].output[0] != last.input[k]:
            return None
        forms.append(form)
    if len({len(f.mu) for f in forms}) != 1:
        return None
    props = {p.key: p.value for p in model.metadata_props}
    names = props.get(BRANCHES_PROP, "").split(",")
    return forms, names if len(names) == n_branches else [f"branch_{k}" for k in range(n_branches)]


def _is_cast(node: onnx.NodeProto, graph: onnx.GraphProto) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (
        node.op_type == "Cast"
        and list(node.input) == [graph.input[0].name]
        and attrs.get("to") == TensorProto.DOUBLE
    )


def _read_branch(
    nodes: Sequence[onnx.NodeProto], source: str, inits: dict[str, np.ndarray], suffix: str
) -> QuadraticForm | None:
    """Sub(mu) -> Mul(inv_sigma) -> MatMul(A) -> Mul -> ReduceSum(axis 1) reading ``source``, with the
    initializers named mu, inv_sigma, A + ``suffix``; None if the nodes are anything else."""
    ops = [n.op_type for n in nodes]
    if ops != _PIPELINE[1:] and not (suffix and ops == ["Sub", "Mul", "Mul", "Mul", "ReduceSum"]):
        return None
    sub, mul, matmul, mul2, reduce = nodes
    diagonal = matmul.op_type == "Mul"  # only in a max graph: a diagonal branch, see the builder
    mu_k, sigma_k, a_k = f"mu{suffix}", f"inv_sigma{suffix}", f"{'w' if diagonal else 'A'}{suffix}"
    red_attrs = {a.name: helper.get_attribute_value(a) for a in reduce.attribute}
    ok = (
        list(sub.input) == [source, mu_k]
        and list(mul.input) == [sub.output[0], sigma_k]
        and list(matmul.input) == [mul.output[0], a_k]
        and sorted(mul2.input) == sorted([matmul.output[0], mul.output[0]])
        and reduce.input[0] == mul2.output[0]
        and len(reduce.input) == 2
        and red_attrs.get("keepdims", 1) == 1
        and not red_attrs.get("noop_with_empty_axes", 0)
    )
    if not ok or not {mu_k, sigma_k, a_k, reduce.input[1]} <= inits.keys():
        return None
    if [int(a) for a in np.ravel(inits[reduce.input[1]])] not in ([1], [-1]):
        return None
    mu, inv_sigma, A = (np.asarray(inits[k], dtype=np.float64) for k in (mu_k, sigma_k, a_k))
    d = len(mu)
    if diagonal and A.shape == (d,):
        A = np.diag(A)
    if mu.shape != (d,) or inv_sigma.shape != (d,) or A.shape != (d, d):
        return None
    return QuadraticForm(mu=mu, inv_sigma=inv_sigma, A=A)


def build_linear_graph(
    width: int,
    *,
    weights: np.ndarray | None = None,
    declared_width: int | str | None = None,
    input_type: int = TensorProto.FLOAT,
    output_name: str = "score",
    extra_input: bool = False,
) -> bytes:
    """score = X @ w as a [batch, 1] output: the smallest model a registry can validate.

    The keyword options build the wrong-contract variants the registry must refuse (a declared width or
    input type that differs from the feature spec, a second input); the benches and the reliability
    check use the plain form.
    """
    weights = (
        np.linspace(0.5, 1.5, width).astype(np.float32) if weights is None else weights.astype(np.float32)
    )
    declared = width if declared_width is None else declared_width
    inputs = [helper.make_tensor_value_info("X", input_type, [None, declared])]
    nodes = []
    source = "X"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["X"], ["Xf"], to=TensorProto.FLOAT))
        source = "Xf"
    nodes.append(helper.make_node("MatMul", [source, "W"], [output_name]))
    if extra_input:
        inputs.append(helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1]))
    graph = helper.make_graph(
        nodes,
        "linear",
        inputs,
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(weights.reshape(width, 1), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
