"""The SKAB evaluation protocol on Vigil's production pieces (pure functions, no ORM).

Per run (one SKAB file = one asset):

1. Readings get the ingest path's quality flags (``detection.quality.flag_series`` with the sensor's valid range
   and the settings' spike / stuck / gap rules), then the scoring pipeline's windows step
   (``detection.pipeline``, raw readings) turns them into the product's feature windows (``window_s``/``step_s``; readings flagged out of range or spike are left out
   exactly as in live scoring).
2. Per-asset baseline, the product's (``models_registry.baseline``, what live scoring, training,
   explanations and edge bundles of a ``"baseline": "per_asset"`` model use): the first
   ``calibration_points`` points of the run are its calibration period (SKAB's protocol trains on the first
   400 points of each file, the normal part before the fault). The baseline is the mean feature vector of
   the windows lying wholly inside it (``period_mask`` + ``mean_vector``); the model sees
   ``apply(x, baseline)`` = x - baseline. Each SKAB run sits at its own operating point (the anomaly-free
   file runs at ~125 l/min, the valve runs at ~32), so one model over raw features either flags every run
   or misses the ~1 l/min drop a closed valve causes.
3. One PCA T²+Q model (``models_registry.training.train_anomaly``, ONNX) over the baselined calibration windows
   of every run: the hold-out that sets the thresholds is the last quarter of every run's calibration period.
4. Scores come from that ONNX file through the pipeline's scoring step (``detection.runtime``), alerts from
   ``detection.rules.alert_episodes`` (the lifecycle's open-after-M / clear-after-N rules) with the
   model's open and clear thresholds; a point is predicted anomalous while an alert is active at it
   (``pointwise.points_from_windows``).
5. Every alert's opening window is explained with ``detection.explain.explain`` (the code the product
   stores explanations with) and its top role (``detection.explain.top_role``) is compared with ``FAULT_ROLES``.

In the product the calibration period is an engineer's choice (``manage.py calibrate_baseline``) or, by
default, an asset's first ``VIGIL_BASELINE_WINDOWS`` windows; here it is SKAB's 400 points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection import baseline as asset_baseline
from detection import runtime
from detection.explain import explain, top_role
from detection.wording import reasons
from detection.features import Series, Windows, feature_names, role_of
from detection.pipeline import RAW_READINGS, Pipeline
from detection.rules import Episode, active_mask, alert_episodes, overlap
from models_registry.evaluation.fleet import Event, FleetRun, train_pooled
from models_registry.evaluation.pointwise import Counts, confusion, points_from_windows
from models_registry.training import TrainedModel
from plant.datasets import DatasetFormatError
from plant.datasets.skab import ROLES, SkabFile, SkabRun, label_segments, read_run
from plant.ingest.service import quality_rules
from detection.quality import flag_series

CALIBRATION_POINTS = 400  # SKAB's notebooks fit every method on df[:400] of each file
SAMPLE_PERIOD_S = 1.0  # SKAB's testbed records at 1 Hz
WINDOW_S, STEP_S = 30.0, 5.0
HOLDOUT_FRACTION = 0.25
MIN_CALIBRATION_WINDOWS = 8  # fewer calibration windows give no baseline worth the name
THERMAL_ROLES = ("temperature", "thermocouple")
LEVEL_STATS = ("mean", "min", "max")

# What a fault should show up in, from the card's sensor list: a valve closed at the pump inlet or outlet
# throttles the loop, so the flow rate falls and the pressure after the pump moves.
FAULT_ROLES: dict[str, tuple[str, ...]] = {
    "valve_closed_inlet": ("flow", "pressure"),
    "valve_closed_outlet": ("flow", "pressure"),
}


def feature_set(name: str) -> list[str]:
    """The model's input columns. The thermal roles' levels follow the rig's slow warm-up, which a 400-point
    calibration cannot cover; "no_thermal_levels" keeps their dynamics only, "no_thermal" drops them."""
    names = feature_names([role.key for role in ROLES])
    if name == "all":
        return names
    if name == "no_thermal_levels":
        return [n for n in names if not (role_of(n) in THERMAL_ROLES and n.rsplit("__", 1)[1] in LEVEL_STATS)]
    if name == "no_thermal":
        return [n for n in names if role_of(n) not in THERMAL_ROLES]
    raise ValueError(f"unknown feature set {name!r}")


FEATURE_SETS = ("all", "no_thermal_levels", "no_thermal")


@dataclass(frozen=True)
class Config:
    """One hyper-parameter choice: the feature set, PCA variance and the alert rules' M and N."""

    features: str = "all"
    variance: float = 0.95
    open_windows: int = 3
    clear_windows: int = 6
    detector: str = "pca"

    @property
    def label(self) -> str:
        text = f"{self.features}, variance {self.variance:g}, M={self.open_windows}, N={self.clear_windows}"
        return text if self.detector == "pca" else f"{self.detector}, {text}"


@dataclass
class PreparedRun:
    """One run's windows, baselined features and labels; ``test`` marks the points after calibration."""

    file: SkabFile
    ts: np.ndarray
    anomaly: np.ndarray
    windows: Windows
    calibration: np.ndarray  # bool per window: wholly inside the calibration period
    Z: np.ndarray  # float32 [n, 48]: features minus the run's baseline
    test: np.ndarray  # bool per point
    window_overlap: int = 1  # detection.rules.overlap(window_s, step_s): the clear hysteresis in readings


@dataclass
class RunResult:
    """What the alert rules did on one run under one model."""

    run: PreparedRun
    scores: np.ndarray
    episodes: list[Episode]
    predicted: np.ndarray  # bool per point
    counts: Counts  # on the test part
    counts_all: Counts  # on every point


@dataclass
class Detector:
    """A trained model and the columns of ``PreparedRun.Z`` it reads."""

    config: Config
    model: TrainedModel
    columns: np.ndarray
    loaded: runtime.LoadedModel | None = field(repr=False, default=None)


def flagged_series(run: SkabRun) -> dict[str, Series]:
    """Each role's (ts, values, quality) with the ingest's quality flags (the sensor's valid range and the
    settings' spike / stuck / gap rules)."""
    series = {}
    for role in ROLES:
        values = run.values[role.key]
        quality = flag_series(
            run.ts,
            values,
            0,
            valid_min=role.valid_min,
            valid_max=role.valid_max,
            sample_period_s=SAMPLE_PERIOD_S,
            **quality_rules(),
        )
        series[role.key] = (run.ts, values, quality)
    return series


def calibration_overlap(file: SkabFile, run: SkabRun, calibration_points: int) -> str | None:
    """A warning when the run's labelled fault starts inside its calibration period (the first
    ``calibration_points`` points), else None: its calibration then holds fault windows."""
    if run.anomaly is None:
        return None
    inside = np.flatnonzero(np.asarray(run.anomaly[:calibration_points]).astype(bool))
    if not len(inside):
        return None
    return (
        f"{file.ref}: the labelled fault starts at point {int(inside[0])}, inside the "
        f"{calibration_points}-point calibration period; its calibration holds fault windows"
    )


def too_few_calibration_windows(
    file: SkabFile, values: Mapping[str, np.ndarray], windows: int, calibration_points: int
) -> str:
    """The message for a run whose calibration period holds too few complete feature windows, naming the
    roles without a usable reading there (a window needs every role: missing or out-of-range readings are
    left out, as in live scoring)."""
    head = slice(0, calibration_points)
    empty = [
        role.key
        for role in ROLES
        if not np.any(
            np.isfinite(values[role.key][head])
            & (values[role.key][head] >= role.valid_min)
            & (values[role.key][head] <= role.valid_max)
        )
    ]
    why = (
        f"; no reading inside the sensor's valid range there for {', '.join(empty)}"
        if empty
        else "; its readings are too sparse or too often flagged by the ingest's quality rules"
    )
    return (
        f"{file.path}: only {windows} complete feature windows fit in the {calibration_points}-point "
        f"calibration period (at least {MIN_CALIBRATION_WINDOWS} needed){why}"
    )


@dataclass
class FleetInput:
    """One SKAB file as an asset of the pooled fleet: the fleet protocol's run, its points and labels."""

    file: SkabFile
    run: FleetRun
    ts: np.ndarray
    anomaly: np.ndarray  # bool per point (all False for an unlabelled run)
    calibration_points: int
    warning: str | None


def fleet_input(file: SkabFile, calibration_points: int = CALIBRATION_POINTS) -> FleetInput:
    """The file as a fleet asset: calibration = its first ``calibration_points`` points, test = the rest,
    events = its labelled fault segments (none for the anomaly-free file)."""
    run = read_run(file.path)
    if len(run) <= calibration_points:
        raise DatasetFormatError(
            f"{file.path}: {len(run)} rows, not more than the {calibration_points}-point calibration period"
        )
    anomaly = np.zeros(len(run), dtype=bool) if run.anomaly is None else run.anomaly.astype(bool)
    events = tuple(
        Event(file.fault_type, start, end)
        for start, end, label in label_segments(run.ts, run.anomaly)
        if label
    )
    ts = run.ts
    fleet = FleetRun(
        key=file.ref,
        group=file.subset,
        series=flagged_series(run),
        calibration=(float(ts[0]), float(ts[calibration_points - 1])),
        test=(float(ts[calibration_points]), float(ts[-1])),
        events=events,
        sample_period_s=SAMPLE_PERIOD_S,
    )
    return FleetInput(
        file, fleet, ts, anomaly, calibration_points, calibration_overlap(file, run, calibration_points)
    )


def prepare(
    file: SkabFile,
    *,
    window_s: float = WINDOW_S,
    step_s: float = STEP_S,
    calibration_points: int = CALIBRATION_POINTS,
) -> PreparedRun:
    run = read_run(file.path)
    if run.anomaly is None:
        raise DatasetFormatError(f"{file.path}: no anomaly column; only labelled runs can be evaluated")
    if len(run) <= calibration_points:
        raise DatasetFormatError(
            f"{file.path}: {len(run)} rows, not more than the {calibration_points}-point calibration period"
        )
    series = flagged_series(run)
    windows = RAW_READINGS.asset_windows(
        series,
        [role.key for role in ROLES],
        window_s=window_s,
        step_s=step_s,
        sample_period_s=SAMPLE_PERIOD_S,
    )
    calibration = asset_baseline.period_mask(
        windows.ends, window_s, run.ts[0], run.ts[calibration_points - 1]
    )
    if calibration.sum() < MIN_CALIBRATION_WINDOWS:
        raise DatasetFormatError(
            too_few_calibration_windows(file, run.values, int(calibration.sum()), calibration_points)
        )
    baseline, _ = asset_baseline.mean_vector(windows.X[calibration])
    # The baselined model input of every feature, by the pipeline's baseline step (the model reads columns).
    every = Pipeline.from_spec(windows.names, {"baseline": asset_baseline.PER_ASSET})
    Z = every.inputs(windows, np.arange(len(windows)), every.columns(windows.names), baseline)
    return PreparedRun(
        file=file,
        ts=run.ts,
        anomaly=run.anomaly.astype(bool),
        windows=windows,
        calibration=calibration,
        Z=Z,
        test=np.arange(len(run)) >= calibration_points,
        window_overlap=overlap(window_s, step_s),
    )


def train(runs: Sequence[PreparedRun], config: Config) -> Detector:
    """One PCA T²+Q model over every run's baselined calibration windows (no labels are read)."""
    names = feature_names([role.key for role in ROLES])
    wanted = feature_set(config.features)
    columns = np.array([names.index(n) for n in wanted], dtype=np.intp)
    blocks = [run.Z[run.calibration][:, columns] for run in runs]
    model, _ = train_pooled(
        blocks,
        wanted,
        {"variance": config.variance, "seed": 0, "detector": config.detector},
        HOLDOUT_FRACTION,
    )
    return Detector(
        config, model, columns, runtime.LoadedModel.unregistered(model.onnx_bytes, wanted, model.output_spec)
    )


def detect(detector: Detector, run: PreparedRun) -> RunResult:
    """Score the run through onnxruntime and apply the alert rules; point predictions and counts."""
    model, config = detector.model, detector.config
    scores = Pipeline.score(detector.loaded, run.Z[:, detector.columns], finite=False)
    episodes = alert_episodes(
        scores,
        model.open_threshold,
        model.clear_threshold,
        config.open_windows,
        config.clear_windows,
        higher=runtime.higher_is_worse(model.output_spec),
        window_overlap=run.window_overlap,
    )
    active = active_mask(len(scores), episodes)
    predicted = points_from_windows(run.ts, run.windows.ends, active)
    return RunResult(
        run=run,
        scores=scores,
        episodes=episodes,
        predicted=predicted,
        counts=confusion(run.anomaly[run.test], predicted[run.test]),
        counts_all=confusion(run.anomaly, predicted),
    )


def explain_alerts(detector: Detector, result: RunResult) -> list[dict[str, Any]]:
    """The explanation of every alert's opening window, as the product would store it, and whether its top
    role matches the fault's physics (``None`` when the alert opened outside the labelled fault)."""
    model, run = detector.model, result.run
    expected = FAULT_ROLES.get(run.file.fault_type, ())
    out = []
    for episode in result.episodes:
        end = float(run.windows.ends[episode.opened])
        at = min(int(np.searchsorted(run.ts, end, side="right")) - 1, len(run.ts) - 1)
        during_fault = bool(run.anomaly[max(at, 0)])
        explanation = explain(
            model.onnx_bytes,
            run.Z[episode.opened, detector.columns],
            model.background,
            model.feature_names,
            model.output_spec,
            strict=False,
        )
        role = top_role(explanation)
        # The feature the explanation's first line leads with: the top role's largest push.
        said = reasons(explanation, {}, {}, top=1)
        out.append(
            {
                "run": run.file.ref,
                "opened_at_point": at,
                "during_fault": during_fault,
                "score": explanation["output"],
                "additivity_error": explanation["additivity_error"],
                "additivity_ok": explanation["additivity_ok"],
                "top_role": role,
                "top_feature": said[0].lead.feature if said else None,
                "expected_roles": list(expected),
                "physics_match": (role in expected) if during_fault and expected else None,
            }
        )
    return out
