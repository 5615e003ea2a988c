"""Checks an artifact must pass before it may score anything: checksum, load, signature, outputs, latency."""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from django.utils import timezone

from detection import runtime
from models_registry.models import ModelVersion

LATENCY_RUNS = 50


class ModelRejected(Exception):
    """A version failed one validation check; `check` names it, `message` says what was wrong."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check} check failed: {message}")
        self.check = check
        self.message = message


@dataclass
class ValidationReport:
    """What validate_version found: the checks passed, in order, and the measured latency."""

    version_id: int
    passed: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    input_name: str = ""
    output_names: list[str] = field(default_factory=list)


def validate_version(version: ModelVersion, *, save: bool = True) -> ValidationReport:
    """Run every check on the stored artifact; raise ModelRejected at the first failure.

    On success the median single-window latency and the validation time are stored on the version
    (unless save=False), so a refused artifact leaves the row untouched.
    """
    report = ValidationReport(version_id=version.pk)
    data = check_checksum(version)
    report.passed.append("checksum")

    try:
        session = runtime.load_session(data)
    except runtime.ModelRuntimeError as exc:
        raise ModelRejected("load", _first_line(exc)) from None
    report.passed.append("load")

    report.input_name = _check_signature(version, session)
    report.output_names = [output.name for output in session.get_outputs()]
    report.passed.append("signature")

    _check_reference_batch(version, session)
    report.passed.append("reference_batch")

    report.latency_ms = _measure_latency(version, session, report.input_name)
    report.passed.append("latency")

    if save:
        version.latency_ms, version.validated_at = report.latency_ms, timezone.now()
        ModelVersion.objects.filter(pk=version.pk).update(
            latency_ms=version.latency_ms, validated_at=version.validated_at
        )
    return report


def check_checksum(version: ModelVersion) -> bytes:
    """The stored artifact's bytes, provided their sha256 is the one registered."""
    if not version.onnx_file:
        raise ModelRejected("checksum", "the version has no ONNX file")
    try:
        data = version.read_onnx_bytes()
    except (OSError, ValueError):
        raise ModelRejected("checksum", f"the ONNX file {version.onnx_file.name!r} is missing") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != version.sha256:
        raise ModelRejected(
            "checksum",
            f"the stored file's sha256 is {actual[:12]}…, the registry expects {version.sha256[:12]}…",
        )
    return data


def _check_signature(version: ModelVersion, session) -> str:
    inputs = session.get_inputs()
    width = len(version.feature_spec or [])
    if len(inputs) != 1:
        names = ", ".join(item.name for item in inputs)
        raise ModelRejected(
            "signature", f"the model has {len(inputs)} inputs ({names}); it must have exactly one"
        )
    model_input = inputs[0]
    if model_input.type != "tensor(float)":
        raise ModelRejected(
            "signature", f"input {model_input.name!r} is {model_input.type}, not tensor(float)"
        )
    shape = model_input.shape
    if len(shape) != 2:
        raise ModelRejected(
            "signature", f"input {model_input.name!r} has shape {shape}; it must be [batch, {width}]"
        )
    # A symbolic width cannot be checked here; the reference batch below then proves it accepts `width`.
    if isinstance(shape[1], int) and shape[1] != width:
        raise ModelRejected(
            "signature",
            f"input {model_input.name!r} takes {shape[1]} features but the feature spec lists {width}",
        )
    if width == 0:
        raise ModelRejected("signature", "the feature spec is empty")
    output_names = {output.name for output in session.get_outputs()}
    wanted = (version.output_spec or {}).get("name")
    if not isinstance(wanted, str) or not wanted:
        # The scorer reads exactly the named output (detection.runtime); it never guesses one.
        raise ModelRejected(
            "signature", f"the output spec does not name the score output (one of {sorted(output_names)})"
        )
    if wanted not in output_names:
        raise ModelRejected(
            "signature",
            f"the output spec names {wanted!r} but the model's outputs are {sorted(output_names)}",
        )
    return model_input.name


def _reference_batch(version: ModelVersion) -> np.ndarray:
    try:
        batch = np.asarray(version.background, dtype=np.float32)
    except (TypeError, ValueError):
        raise ModelRejected("reference_batch", "the stored background is not a numeric table") from None
    if batch.ndim != 2 or batch.shape[0] == 0:
        raise ModelRejected("reference_batch", "no background rows are stored to test the model with")
    if batch.shape[1] != version.n_features:
        raise ModelRejected(
            "reference_batch",
            f"background rows have {batch.shape[1]} columns but the feature spec lists {version.n_features}",
        )
    return batch


def _check_reference_batch(version: ModelVersion, session) -> None:
    batch = _reference_batch(version)
    try:
        scores = runtime.run_batch(session, batch, version.output_spec or {})
    except runtime.ModelRuntimeError as exc:
        raise ModelRejected("reference_batch", _first_line(exc)) from None
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        raise ModelRejected(
            "reference_batch", f"{bad} of {len(batch)} reference rows gave a non-finite score"
        )


def _measure_latency(version: ModelVersion, session, input_name: str) -> float:
    row = _reference_batch(version)[:1]
    session.run(None, {input_name: row})  # warm-up: the first run allocates
    timings = []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        session.run(None, {input_name: row})
        timings.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(timings), 4)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
