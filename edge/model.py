"""A bundle made ready to score: the one path from readings to scores at the edge.

``EdgeModel`` checks a bundle once (its pipeline, its features against this code's, the asset's baseline
or calibration, the ONNX session) and then scores any stretch of readings through the server's own
pipeline (``detection.pipeline``: regime step, windows, baseline, one onnxruntime batch). The CSV runner
(``edge.runner``) scores a whole file with it; the agent scores each new window as readings arrive. The
alert rules' parameters (thresholds in force for the asset, M/N windows, direction, the asset's criticality
shift of the severity) come with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from detection import features, runtime, wording
from detection.baseline import Calibration
from detection.bundle import Bundle, BundleError, shipped_step
from detection.explain import explain, prepare, typical_ranges, with_baseline
from detection.pipeline import Pipeline, PipelineError
from detection.rules import RuleParams, overlap

logger = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _session(sha256: str, onnx_bytes: bytes) -> Any:
    """One onnxruntime session per distinct model: a gateway's pumps of one type share a model, and a
    session costs ~7 MiB (bench/edge.py)."""
    return runtime.load_session(onnx_bytes)


@dataclass(frozen=True)
class EdgeScores:
    """Every complete window's end, score (None: not scorable, e.g. too little data) and coverage;
    ``inputs`` holds the model input of each scored window (its index -> row), what an explanation needs;
    ``flagged`` each window's quality bits per role ({role: OR of its readings' bits}: the quality gate's
    input, detection.gate)."""

    ends: np.ndarray
    scores: list[float | None]
    coverage: np.ndarray
    inputs: Mapping[int, np.ndarray] = field(default_factory=dict)
    flagged: Sequence[Mapping[str, int]] = ()


class EdgeModel:
    """See the module docstring. Raises BundleError naming what does not fit."""

    def __init__(self, bundle: Bundle, session: Any = None) -> None:
        spec = bundle.spec
        self.bundle = bundle
        self.spec = spec
        self.output_spec = spec.get("output_spec") or {}
        self.type_roles = list(spec["roles"])
        try:
            self.pipeline = Pipeline.from_spec(spec["feature_names"], self.output_spec, self.type_roles)
        except PipelineError as exc:
            raise BundleError(f"spec.json: {exc}") from None
        if self.pipeline.peers:
            raise BundleError(
                "the model scores an asset against its peers on the site: it runs on the server only"
            )
        # Windows over the roles the model reads (in the type's order, as training built them): a model of
        # an optional-sensor type may read fewer roles than the type has, and the asset may lack the others.
        read = set(features.roles_read(spec["feature_names"]))
        self.roles = [role for role in self.type_roles if role in read] or self.type_roles
        self.window_s = float(spec["window_s"])
        self.step_s = float(spec["step_s"])
        if not (self.window_s > 0 and self.step_s > 0):
            raise BundleError(
                f"spec.json: window_s and step_s must be positive, got {self.window_s:g} and {self.step_s:g}"
            )
        self.min_coverage = float(spec.get("min_coverage", 0.5))
        self.baseline = self._baseline()
        try:
            self.session = (
                session
                if session is not None
                else _session(hashlib.sha256(bundle.model).hexdigest(), bundle.model)
            )
            self.loaded = runtime.LoadedModel.unregistered(
                bundle.model, spec["feature_names"], self.output_spec, self.session
            )
        except runtime.ModelRuntimeError as exc:
            raise BundleError(f"model.onnx: {exc}") from None
        self.rule_params = RuleParams(
            open_threshold=float(spec["open_threshold"]),
            clear_threshold=float(spec["clear_threshold"]),
            # Bundles from before the rules were shipped open and close on a single window.
            open_windows=int(spec.get("open_windows", 1)),
            clear_windows=int(spec.get("clear_windows", 1)),
            higher=runtime.higher_is_worse(self.output_spec),
            # The asset's criticality (bundles exported for an asset; before it was shipped: none).
            severity_shift=int(spec.get("severity_shift", 0)),
            window_overlap=overlap(self.window_s, self.step_s),
        )
        if self.explainable:  # the first alert's words must not wait for shap's import and trees (~1 s)
            try:
                prepare(bundle.model, np.asarray(spec["background"], dtype=np.float64), self.output_spec)
            except Exception as exc:  # noqa: BLE001 - the words are a courtesy: the model must load regardless
                # (ExplanationError, or shap missing or refusing the trees); its alerts go out without words,
                # as AssetDecider.explained sends them when explaining fails.
                logger.warning("the bundle's model cannot be explained on this gateway: %r", exc)

    def _baseline(self) -> np.ndarray | Calibration | None:
        return shipped_step(self.spec, robust=self.pipeline.robust, baselined=self.pipeline.baselined)

    @property
    def explainable(self) -> bool:
        """Bundles exported with the version's background sample can explain their alerts locally."""
        return bool(self.spec.get("background"))

    def explanation(self, x: np.ndarray) -> dict[str, Any] | None:
        """The SHAP explanation of window input ``x`` (the same SHAP values of the same ONNX file as the
        server's); None when the bundle carries no background sample. Raises what explaining raises
        (ExplanationError). Tree (RUL) models too: edge/requirements.txt installs shap, whose TreeExplainer
        the server uses as well."""
        if not self.explainable:
            return None
        background = np.asarray(self.spec["background"], dtype=np.float64)
        result = explain(self.bundle.model, x, background, list(self.spec["feature_names"]), self.output_spec)
        with_baseline(result, self.baseline)
        return result

    def reason(self, x: np.ndarray, result: Mapping[str, Any] | None = None) -> wording.SensorReason | None:
        """The sensor that pushed window input ``x`` towards the alert most, in the board's words (the same
        ``detection.wording``): what the agent tells the HMI while the server is out of reach. ``result``:
        ``x``'s ``explanation`` when the caller has it. None when the bundle carries no background sample or
        no sensor pushed the score up. Raises what explaining raises (ExplanationError)."""
        result = self.explanation(x) if result is None else result
        if result is None:
            return None
        background = np.asarray(self.spec["background"], dtype=np.float64)
        names = list(self.spec["feature_names"])
        roles = {
            role: (str(label), str(unit)) for role, (label, unit) in self.spec.get("role_words", {}).items()
        }
        found = wording.reasons(
            result,
            typical_ranges(background, names),
            roles,
            open_threshold=self.rule_params.open_threshold,
            higher=self.rule_params.higher,
            top=1,
        )
        return found[0] if found else None

    @property
    def group(self) -> tuple:
        """Equal for models that score windows the same way (same artifact, features, windows and steps):
        their assets' windows are built and scored in one call (``score_many``); baselines stay per asset."""
        return (
            hashlib.sha256(self.bundle.model).hexdigest(),
            tuple(self.spec["feature_names"]),
            tuple(self.roles),
            self.window_s,
            self.step_s,
            self.min_coverage,
            repr(sorted(self.output_spec.items())),
        )

    def score(
        self, series: Mapping[str, tuple], *, start_s: float | None = None, end_s: float | None = None
    ) -> EdgeScores:
        """The windows of ``series`` ({role: (ts, values, quality)}) ending in (start_s, end_s], scored."""
        return score_many([(self, series, start_s, end_s)])[0]


def score_many(
    requests: Sequence[tuple[EdgeModel, Mapping[str, tuple], float | None, float | None]],
) -> list[EdgeScores]:
    """Score several assets' series (model, series, start_s, end_s) whose models share a ``group``: one
    windows build over all of them and one onnxruntime batch, each asset with its own baseline — the
    server's sweep does the same (detection.pipeline). A batch of 20 pumps costs little more than one."""
    lead = requests[0][0]
    if any(model.group != lead.group for model, *_ in requests):
        raise ValueError("score_many: every model of one call must share a group")
    windows = lead.pipeline.windows(
        {i: series for i, (_, series, _, _) in enumerate(requests)},
        lead.roles,
        window_s=lead.window_s,
        step_s=lead.step_s,
        start_s={i: start for i, (_, _, start, _) in enumerate(requests)},
        end_s={i: end for i, (_, _, _, end) in enumerate(requests)},
        sample_period_s={i: None for i in range(len(requests))},
        min_coverage=lead.min_coverage,
    )
    parts, usable = [], {}
    for i, (model, *_rest) in enumerate(requests):
        built = windows[i]
        if list(built.names) != list(lead.spec["feature_names"]):
            raise BundleError(
                "this runner's feature code builds different features than the bundle's model expects"
            )
        columns = lead.pipeline.columns(built.names)
        usable[i] = lead.pipeline.rows(built, columns)
        if usable[i].size:
            parts.append(lead.pipeline.inputs(built, usable[i], columns, model.baseline))
    values = np.empty(0)
    rows = np.concatenate(parts) if parts else np.empty((0, 0))
    if parts:
        try:
            # A non-finite score is reported as no score (None), not refused as on the server.
            values = lead.pipeline.score(lead.loaded, rows, finite=False)
        except (runtime.ModelRuntimeError, PipelineError) as exc:
            raise BundleError(f"model.onnx: {exc}") from None
    out, offset = [], 0
    for i in range(len(requests)):
        built = windows[i]
        scores: list[float | None] = [None] * len(built)
        inputs: dict[int, np.ndarray] = {}
        for index in usable[i].tolist():
            value = float(values[offset])
            inputs[index] = rows[offset]
            offset += 1
            scores[index] = value if math.isfinite(value) else None
        coverage = np.asarray(built.coverage, dtype=np.float64)
        coverage = coverage.min(axis=1) if coverage.ndim == 2 else coverage
        flagged = [dict(zip(lead.roles, map(int, row), strict=True)) for row in built.flagged]
        out.append(EdgeScores(np.asarray(built.ends, dtype=np.float64), scores, coverage, inputs, flagged))
    return out
