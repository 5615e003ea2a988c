"""onnxruntime helpers shared by scoring, validation, explanations and the edge runner.

Imports only numpy and onnxruntime (no Django, no onnx) so the edge runner can use it on a gateway.

* ``load_session(onnx_bytes, threads=1)`` — a CPU session; one intra-op thread by default because
  onnxruntime's float32 sums then do not depend on the batch size, which makes it the reference output that
  explanations are checked against (``reference_session`` is the cached one-thread session).
* ``input_signature(session)`` — input name, feature count and element type, for validation against a
  feature spec.
* ``run_batch(session, X, output_spec)`` — scores a float32 batch and returns the score column as float64.
* ``select_output(value, output_spec)`` — the named-output / column look-up used by ``run_batch``.
* ``higher_is_worse(output_spec)`` — the score direction thresholds are compared in.
* ``LoadedModel`` — one model version ready to run (session, feature names, output spec, background); the
  server's per-process cache (``models_registry.cache``) builds these from ModelVersion rows.

``output_spec`` is ``{"name": <graph output>, "index": <column or None>, "direction": "higher_is_anomalous"}``;
``index`` None means the output has exactly one column (or is one-dimensional). The returned score is the
raw output: direction is for the caller comparing it with thresholds.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from cachetools import LRUCache, cached


class ModelRuntimeError(ValueError):
    """An ONNX artifact cannot be loaded or run the way its specs say."""


@dataclass(frozen=True)
class InputSignature:
    name: str
    n_features: int | None  # None when the graph leaves the feature dimension symbolic
    element_type: str  # onnxruntime's spelling, e.g. "tensor(float)"
    n_inputs: int


@dataclass(frozen=True)
class LoadedModel:
    """Everything a scorer or explainer needs of one version, ready to run."""

    version_id: int
    sha256: str
    onnx_bytes: bytes
    session: ort.InferenceSession
    feature_names: list[str]
    output_spec: dict
    background: np.ndarray

    def score(self, X: np.ndarray) -> np.ndarray:
        return run_batch(self.session, np.asarray(X, dtype=np.float32), self.output_spec)

    @classmethod
    def unregistered(
        cls,
        onnx_bytes: bytes,
        feature_names: Sequence[str],
        output_spec: Mapping[str, Any],
        session: ort.InferenceSession | None = None,
    ) -> LoadedModel:
        """A model that is no registered version (an evaluation's or an edge bundle's): version id 0, no
        background; ``session`` defaults to a new one-thread session."""
        return cls(
            version_id=0,
            sha256=sha256(onnx_bytes),
            onnx_bytes=onnx_bytes,
            session=session if session is not None else load_session(onnx_bytes),
            feature_names=list(feature_names),
            output_spec=dict(output_spec),
            background=np.zeros((0, len(feature_names)), dtype=np.float32),
        )


def sha256(onnx_bytes: bytes) -> str:
    return hashlib.sha256(onnx_bytes).hexdigest()


def load_session(onnx_bytes: bytes, *, threads: int = 1) -> ort.InferenceSession:
    """A CPU inference session for the artifact; raises ModelRuntimeError naming the problem."""
    if not isinstance(onnx_bytes, bytes | bytearray | memoryview) or not len(onnx_bytes):
        raise ModelRuntimeError("The ONNX artifact is empty.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(bytes(onnx_bytes), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types for bad files
        raise ModelRuntimeError(f"onnxruntime cannot load the model: {str(exc).strip()[:300]}") from exc


@cached(LRUCache(maxsize=16), key=sha256, lock=threading.Lock())
def reference_session(onnx_bytes: bytes) -> ort.InferenceSession:
    """The cached one-thread session for these exact bytes (keyed by sha256, LRU of 16)."""
    return load_session(onnx_bytes, threads=1)


def input_signature(session: ort.InferenceSession) -> InputSignature:
    inputs = session.get_inputs()
    first = inputs[0]
    shape = list(first.shape or [])
    n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    return InputSignature(
        name=first.name, n_features=n_features, element_type=first.type, n_inputs=len(inputs)
    )


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def run_batch(session: ort.InferenceSession, X: np.ndarray, output_spec: Mapping[str, Any]) -> np.ndarray:
    """Score rows of X (float32 [n, d]) and return the output_spec score column as float64 [n]."""
    signature = input_signature(session)
    if signature.n_inputs != 1:
        raise ModelRuntimeError(
            f"The model has {signature.n_inputs} inputs; Vigil models take one feature matrix."
        )
    if signature.element_type != "tensor(float)":
        raise ModelRuntimeError(f"The model input is {signature.element_type}; Vigil feeds tensor(float).")
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise ModelRuntimeError(f"Expected a feature matrix [n, d], got shape {X.shape}.")
    if signature.n_features is not None and X.shape[1] != signature.n_features:
        raise ModelRuntimeError(f"The model expects {signature.n_features} features, got {X.shape[1]}.")
    name = _output_name(output_spec)
    if name not in output_names(session):
        raise ModelRuntimeError(f"The model has no output {name!r} (it has {output_names(session)}).")
    try:
        (value,) = session.run([name], {signature.name: X})
    except Exception as exc:
        raise ModelRuntimeError(f"onnxruntime failed to run the model: {str(exc).strip()[:300]}") from exc
    return select_output(value, output_spec, n_rows=len(X))


def select_output(value: Any, output_spec: Mapping[str, Any], *, n_rows: int | None = None) -> np.ndarray:
    """The score column of one graph output value, as float64 [n]."""
    if isinstance(value, list):
        raise ModelRuntimeError(
            f"Output {_output_name(output_spec)!r} is a sequence of maps (ZipMap); convert the model with "
            "zipmap=False or point output_spec at a tensor output."
        )
    arr = np.asarray(value)
    index = output_spec.get("index")
    if arr.ndim == 1 and index in (None, 0):
        column = arr
    elif arr.ndim == 2 and index is None and arr.shape[1] == 1:
        column = arr[:, 0]
    elif arr.ndim == 2 and isinstance(index, int) and 0 <= index < arr.shape[1]:
        column = arr[:, index]
    else:
        raise ModelRuntimeError(
            f"Output {_output_name(output_spec)!r} has shape {arr.shape}; output_spec index {index!r} does not "
            "select one score column from it."
        )
    if n_rows is not None and len(column) != n_rows:
        raise ModelRuntimeError(f"The model returned {len(column)} scores for {n_rows} rows.")
    return column.astype(np.float64)


def higher_is_worse(output_spec: Mapping[str, Any] | None) -> bool:
    """True unless output_spec["direction"] says lower scores are the anomalous ones ("lower…")."""
    direction = str((output_spec or {}).get("direction", "higher")).lower()
    return not direction.startswith("lower")


def _output_name(output_spec: Mapping[str, Any]) -> str:
    name = output_spec.get("name") if isinstance(output_spec, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ModelRuntimeError(f"output_spec must name the score output, got {output_spec!r}.")
    return name
