"""The fleet protocol: many assets of one type, one shared model, per-asset normalisation and thresholds.

Pure NumPy over the production pieces (no ORM), so any dataset that can be cut into runs (one run = one
asset's readings, a normal calibration period, a test period and its labelled faults) is evaluated the
same way: the simulator fleet (``simfleet``) now, SKAB's pooled fleet and IMS bearings later.

1. Windows: each run's readings (quality bits set by the caller with the ingest's rules) become feature
   windows through ``detection.pipeline.Pipeline.windows`` (the scorer's code).
2. Calibration rows: the windows lying wholly inside the run's calibration period that are complete and
   carry no quality flag (``detection.baseline.usable_rows``).
3. Per-asset step, one of ``NORMALISATIONS``: ``"none"`` (raw features), ``"per_asset"`` (minus the mean
   vector of the calibration rows, today's product), ``"per_asset_robust"`` (standardised by the
   ``detection.baseline.calibrate`` calibration: median and robust scale), ``"per_asset_pooled"`` (that
   calibration with its scale shrunk toward the other runs' own scales, ``detection.baseline.pooled``,
   the product's rule for ``train_model --baseline per_asset_pooled``; applied like a robust one) or ``"per_asset_adaptive"``
   (the robust scale, against an EWMA location of the asset's own past that freezes while it is in alert:
   ``detection.adaptive``; its windows are scored one at a time after the calibration, the alert rules
   gating what the location learns). ``Variant.peers`` adds the peer step to a robust or pooled one: every
   run of the fleet is a peer of the others (``detection.baseline.peer_relative``), in training and
   scoring alike.
4. One shared model (``models_registry.training.train_anomaly``, the product's trainer) over every run's
   calibration rows after that step; the model holds out the last ``holdout_fraction`` of EVERY run's
   calibration rows (they are stacked last), so each asset has windows the model was not fitted on.
5. Thresholds: the version's (from the pooled hold-out) or, with ``asset_thresholds``, each asset's own from
   its hold-out scores by the same rule (``detection.thresholds.asset_thresholds``; too few independent
   windows, counting window_s / step_s overlapping windows as one, fall back to the version's).
6. Scores through ``Pipeline.run`` (onnxruntime), alerts through ``detection.rules.alert_episodes`` over the
   test period's scored windows with the product's open/clear window counts.
7. Counts per run: a labelled fault is alerted when an alert opens (its opening window's end) inside
   ``[start, end + attribution_s]`` (the delay is from the fault's start to the first such opening); every
   other alert opening in the test period is a false alarm; the normal time is the test period minus those
   attribution spans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection import adaptive, runtime
from detection.adaptive import PER_ASSET_ADAPTIVE
from detection.baseline import (
    PEER_MEDIAN,
    PER_ASSET,
    PER_ASSET_POOLED,
    PER_ASSET_ROBUST,
    calibrate,
    calibration_span,
    is_robust,
    mean_vector,
    period_mask,
    pool,
    usable_rows,
)
from detection.features import Series, Windows, feature_names
from detection.pipeline import Pipeline
from detection.rules import Episode, RuleParams, alert_episodes, overlap
from detection.thresholds import AssetThresholds, ThresholdRule, asset_thresholds
from models_registry.training import TrainedModel, train_anomaly

NONE = "none"
NORMALISATIONS = (NONE, PER_ASSET, PER_ASSET_ROBUST, PER_ASSET_ADAPTIVE, PER_ASSET_POOLED)
DAY_S = 86400.0


@dataclass(frozen=True)
class Event:
    """A labelled fault of one run, in epoch seconds."""

    kind: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class FleetRun:
    """One asset's readings in a fleet evaluation: ``series`` maps role -> (ts, values, quality)."""

    key: str
    group: str
    series: Mapping[str, Series]
    calibration: tuple[float, float]
    test: tuple[float, float]
    events: tuple[Event, ...] = ()
    sample_period_s: float | None = None


@dataclass(frozen=True)
class Protocol:
    """The settings of one fleet evaluation (product defaults unless a dataset says otherwise)."""

    window_s: float
    step_s: float
    open_windows: int
    clear_windows: int
    attribution_s: float
    holdout_fraction: float = 0.25
    params: Mapping[str, Any] = field(default_factory=dict)  # train_anomaly's, e.g. {"open_rule": "tail"}
    features: tuple[str, ...] | None = None  # the model's input columns (default: every feature of the roles)

    @property
    def window_overlap(self) -> int:
        """The clear hysteresis in readings (``detection.rules.RuleParams.window_overlap``)."""
        return overlap(self.window_s, self.step_s)


@dataclass(frozen=True)
class Variant:
    """One way of running the fleet: a per-asset step and whose thresholds alert."""

    normalisation: str
    asset_thresholds: bool = False
    peers: bool = False  # peer-relative step on top of a robust one (detection.baseline.peer_relative)

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"unknown normalisation {self.normalisation!r}; known: {', '.join(NORMALISATIONS)}"
            )
        if self.peers and not is_robust(self.normalisation):
            raise ValueError("the peer-relative step needs a robust (or pooled) per-asset calibration")

    @property
    def label(self) -> str:
        peers = ", peer-relative" if self.peers else ""
        return (
            f"{self.normalisation}{peers}, {'per-asset' if self.asset_thresholds else 'version'} thresholds"
        )


@dataclass
class EventOutcome:
    event: Event
    alerted: bool
    delay_s: float | None


@dataclass
class RunOutcome:
    """What the alert rules did on one run's test period."""

    key: str
    group: str
    events: list[EventOutcome]
    alerts: int
    false_alarms: int
    normal_days: float
    thresholds: AssetThresholds
    # The test period's scored windows (ends, scores) and the alerts over them, for point-wise metrics.
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    episodes: list[Episode] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.key,
            "group": self.group,
            "faults": len(self.events),
            "faults_alerted": sum(e.alerted for e in self.events),
            "delays_s": [e.delay_s for e in self.events],
            "fault_kinds": [e.event.kind for e in self.events],
            "alerts": self.alerts,
            "false_alarms": self.false_alarms,
            "normal_days": round(self.normal_days, 4),
            "thresholds": self.thresholds.to_json(),
        }


@dataclass
class Prepared:
    """Every run's windows and calibration rows (shared by all variants)."""

    runs: list[FleetRun]
    windows: dict[str, Windows]
    calibration: dict[str, np.ndarray]  # bool per window
    names: list[str]


def prepare(runs: Sequence[FleetRun], roles: list[str], protocol: Protocol) -> Prepared:
    """Windows (through the scorer's Pipeline) and calibration rows of every run."""
    keys = [run.key for run in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("fleet run keys must be unique")
    names = feature_names(roles)
    windows = Pipeline.from_spec(names, {}).windows(
        {run.key: run.series for run in runs},
        roles,
        window_s=protocol.window_s,
        step_s=protocol.step_s,
        start_s={run.key: None for run in runs},
        end_s={run.key: None for run in runs},
        sample_period_s={run.key: run.sample_period_s for run in runs},
    )
    calibration = {}
    for run in runs:
        w = windows[run.key]
        inside = period_mask(w.ends, protocol.window_s, *run.calibration)
        calibration[run.key] = inside & usable_rows(w.X, w.flagged)
    return Prepared(list(runs), windows, calibration, names)


def baselines(
    prepared: Prepared,
    normalisation: str,
    columns: np.ndarray | None = None,
    protocol: Protocol | None = None,
) -> dict[str, Any] | None:
    """Each run's per-asset step from its calibration rows (over ``columns``, default all): None (raw),
    mean vectors or Calibrations (robust, or pooled with the other runs' own calibrations by the product's
    rule, ``detection.baseline.pooled``: ``protocol`` gives the windows' length and step)."""
    if normalisation == NONE:
        return None
    out: dict[str, Any] = {}
    for run in prepared.runs:
        X = prepared.windows[run.key].X[prepared.calibration[run.key]]
        X = X if columns is None else X[:, columns]
        out[run.key] = calibrate(X) if is_robust(normalisation) else mean_vector(X)[0]
    if normalisation == PER_ASSET_POOLED:
        if protocol is None:
            raise ValueError("the pooled step needs the protocol's window length and step")
        # The whole fleet at once: what detection.baseline.pooled gives each run against the others' own
        # calibrations (the product's rule), computed once.
        return pool(out, calibration_spans(prepared, protocol.window_s), protocol.window_s, protocol.step_s)
    return out


def calibration_spans(prepared: Prepared, window_s: float) -> dict[str, float]:
    """Each run's calibration time span (detection.baseline.calibration_span of its calibration rows)."""
    return {
        run.key: calibration_span(prepared.windows[run.key].ends[prepared.calibration[run.key]], window_s)
        for run in prepared.runs
    }


def model_spec(normalisation: str, peers: bool = False) -> dict[str, Any]:
    """The output_spec keys a variant's model is scored with, as a product version of that mode has them
    (a pooled calibration is applied like a robust one); ``peers`` adds the peer-relative step."""
    if peers:
        return {**model_spec(normalisation), "peers": PEER_MEDIAN}
    if normalisation == NONE:
        return {}
    return {"baseline": normalisation}


def evaluate(prepared: Prepared, protocol: Protocol, variant: Variant) -> list[RunOutcome]:
    """One variant over the fleet: per-asset step, shared model, thresholds, alerts, counts per run."""
    outcomes = []
    for a in alert_runs(prepared, protocol, variant):
        outcome = count(a.run, a.ends, a.episodes, a.thresholds, protocol.attribution_s)
        outcome.ends, outcome.scores, outcome.episodes = a.ends, a.scores, list(a.episodes)
        outcomes.append(outcome)
    return outcomes


@dataclass
class RunAlerts:
    """One run's test period as the alert rules saw it: window ends, scores, alerts and thresholds, and the
    model inputs the scores are of (what an alert's explanation explains)."""

    run: FleetRun
    ends: np.ndarray
    scores: np.ndarray
    episodes: list[Episode]
    thresholds: AssetThresholds
    model: TrainedModel
    inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)


def alert_runs(prepared: Prepared, protocol: Protocol, variant: Variant) -> list[RunAlerts]:
    """Steps 3-6 of the module docstring for one variant: each run's test-period scores and alerts (the
    counting of ``evaluate`` is one reading of them; IMS reads lead times and time in alert)."""
    if variant.normalisation == PER_ASSET_ADAPTIVE:
        return adaptive_alert_runs(prepared, protocol, variant)
    names = list(protocol.features) if protocol.features else prepared.names
    spec = model_spec(variant.normalisation, variant.peers)
    pipeline = Pipeline.from_spec(names, spec)
    steps = baselines(prepared, variant.normalisation, pipeline.columns(prepared.names), protocol)
    model, holdout = train_shared(prepared, pipeline, steps, protocol)
    loaded = _loaded(model, spec)
    scored = pipeline.run(loaded, prepared.windows, baselines=steps)
    higher = runtime.higher_is_worse(model.output_spec)
    out = []
    for run in prepared.runs:
        part = scored[run.key]
        hold_scores = part.scores[np.isin(part.rows, holdout[run.key])]
        thresholds = _run_thresholds(model, protocol, variant, hold_scores)
        ends = part.ends
        test = _in_test(ends, run, protocol)
        episodes = alert_episodes(
            part.scores[test],
            thresholds.open_threshold,
            thresholds.clear_threshold,
            protocol.open_windows,
            protocol.clear_windows,
            higher=higher,
            window_overlap=protocol.window_overlap,
        )
        out.append(RunAlerts(run, ends[test], part.scores[test], episodes, thresholds, model, part.X[test]))
    return out


def adaptive_alert_runs(prepared: Prepared, protocol: Protocol, variant: Variant) -> list[RunAlerts]:
    """``alert_runs`` for ``"per_asset_adaptive"`` (detection.adaptive): each run's robust calibration, its
    calibration windows replayed against the EWMA location (the shared model's training inputs, hold-out
    last as for the other steps), thresholds from the hold-out scores, then every later complete window
    scored one at a time with the location frozen while the run is in alert (the gate uses the run's own
    thresholds and the protocol's M / N, the rules the alerts are counted by)."""
    names = list(protocol.features) if protocol.features else prepared.names
    spec = {"baseline": PER_ASSET_ADAPTIVE}
    pipeline = Pipeline.from_spec(names, {"baseline": PER_ASSET_ROBUST})  # columns only
    columns = pipeline.columns(prepared.names)
    calibrations = baselines(prepared, PER_ASSET_ROBUST, columns) or {}
    blocks, rows_of, states = [], {}, {}
    for run in prepared.runs:
        rows = np.flatnonzero(prepared.calibration[run.key])
        Z, states[run.key] = adaptive.start(
            prepared.windows[run.key].X[rows][:, columns], calibrations[run.key]
        )
        rows_of[run.key] = rows
        blocks.append(Z)
    model, n_holds = train_pooled(blocks, pipeline.feature_names, protocol.params, protocol.holdout_fraction)
    loaded = _loaded(model, spec)
    higher = runtime.higher_is_worse(model.output_spec)
    out = []
    for run, Z, n_hold in zip(prepared.runs, blocks, n_holds, strict=True):
        hold_scores = Pipeline.score(loaded, Z[len(Z) - n_hold :])
        thresholds = _run_thresholds(model, protocol, variant, hold_scores)
        params = RuleParams(
            thresholds.open_threshold,
            thresholds.clear_threshold,
            protocol.open_windows,
            protocol.clear_windows,
            higher=higher,
            window_overlap=protocol.window_overlap,
        )
        w = prepared.windows[run.key]
        after = float(w.ends[rows_of[run.key][-1]])
        rows = Pipeline.rows(w, columns, after)
        usable = usable_rows(w.X[rows][:, columns], None if w.flagged is None else w.flagged[rows])
        inputs, scores, _, _ = adaptive.advance(
            states[run.key],
            w.X[rows][:, columns],
            calibrations[run.key],
            lambda z: Pipeline.score(loaded, z),
            params,
            usable,
        )
        ends = w.ends[rows]
        test = _in_test(ends, run, protocol)
        episodes = alert_episodes(
            scores[test],
            thresholds.open_threshold,
            thresholds.clear_threshold,
            protocol.open_windows,
            protocol.clear_windows,
            higher=higher,
            window_overlap=protocol.window_overlap,
        )
        out.append(RunAlerts(run, ends[test], scores[test], episodes, thresholds, model, inputs[test]))
    return out


def _loaded(model: TrainedModel, spec: Mapping[str, Any]) -> runtime.LoadedModel:
    return runtime.LoadedModel(
        version_id=0,
        sha256=runtime.sha256(model.onnx_bytes),
        onnx_bytes=model.onnx_bytes,
        session=runtime.load_session(model.onnx_bytes),
        feature_names=model.feature_names,
        output_spec={**model.output_spec, **spec},
        background=model.background,
    )


def _run_thresholds(
    model: TrainedModel, protocol: Protocol, variant: Variant, hold_scores: np.ndarray
) -> AssetThresholds:
    """The run's own thresholds from its hold-out scores (``variant.asset_thresholds``) or the version's."""
    version = (model.open_threshold, model.clear_threshold)
    if variant.asset_thresholds:
        rule = ThresholdRule.from_params(model.params)
        overlap = protocol.window_s / protocol.step_s
        return asset_thresholds(hold_scores, rule, version, overlap=overlap)
    return AssetThresholds(version[0], version[1], int(len(hold_scores)), "version")


def _in_test(ends: np.ndarray, run: FleetRun, protocol: Protocol) -> np.ndarray:
    return (ends - protocol.window_s >= run.test[0] - 1e-6) & (ends <= run.test[1] + 1e-6)


def train_shared(
    prepared: Prepared, pipeline: Pipeline, steps: Mapping[str, Any] | None, protocol: Protocol
) -> tuple[TrainedModel, dict[str, np.ndarray]]:
    """The shared model over every run's calibration rows after the per-asset step; returns it with each
    run's hold-out window indexes (the last ``holdout_fraction`` of its calibration rows)."""
    columns = pipeline.columns(prepared.names)
    peer = None
    if pipeline.peers and steps is not None:
        # The group's reference at a calibration window's end comes from every peer's window there, as
        # when it is scored, not only from the peers' calibration windows.
        peer = pipeline.peer_inputs(
            prepared.windows,
            {run.key: Pipeline.rows(prepared.windows[run.key], columns) for run in prepared.runs},
            columns,
            steps,
        )
    blocks, rows_of = [], {}
    for run in prepared.runs:
        rows = np.flatnonzero(prepared.calibration[run.key])
        if peer is not None:
            kept, X = peer[run.key]
            inside = np.isin(kept, rows)
            rows_of[run.key] = kept[inside]
            blocks.append(X[inside])
            continue
        rows_of[run.key] = rows
        blocks.append(
            Pipeline.inputs(
                prepared.windows[run.key], rows, columns, None if steps is None else steps[run.key]
            )
        )
    model, n_holds = train_pooled(blocks, pipeline.feature_names, protocol.params, protocol.holdout_fraction)
    holdout = {
        run.key: rows_of[run.key][len(rows_of[run.key]) - n_hold :]
        for run, n_hold in zip(prepared.runs, n_holds, strict=True)
    }
    return model, holdout


def train_pooled(
    blocks: Sequence[np.ndarray],
    names: list[str],
    params: Mapping[str, Any],
    holdout_fraction: float,
) -> tuple[TrainedModel, list[int]]:
    """One model (``train_anomaly``) over several assets' calibration windows (``blocks``, time order each):
    the last ``holdout_fraction`` of EVERY asset's windows is stacked last, so the trainer's hold-out (which
    sets the version's thresholds) holds windows of every asset; returns the model and each block's
    hold-out size."""
    fits, holds, n_holds = [], [], []
    for X in blocks:
        n_hold = max(1, int(round(len(X) * holdout_fraction)))
        fits.append(X[: len(X) - n_hold])
        holds.append(X[len(X) - n_hold :])
        n_holds.append(n_hold)
    X = np.vstack(fits + holds)
    fraction = sum(n_holds) / len(X)
    return train_anomaly(X, names, params={**params, "holdout_fraction": fraction}), n_holds


def count(
    run: FleetRun,
    ends: np.ndarray,
    episodes: Sequence[Episode],
    thresholds: AssetThresholds,
    attribution_s: float,
) -> RunOutcome:
    """Faults alerted (with delays), false alarms and normal days of one run's test period."""
    opened = np.array([ends[e.opened] for e in episodes], dtype=np.float64)
    spans = [(event.start_s, event.end_s + attribution_s) for event in run.events]
    outcomes = []
    for event, (lo, hi) in zip(run.events, spans, strict=True):
        inside = opened[(opened >= lo) & (opened <= hi)]
        delay = float(inside.min() - event.start_s) if len(inside) else None
        outcomes.append(EventOutcome(event, bool(len(inside)), delay))
    attributed = np.zeros(len(opened), dtype=bool)
    for lo, hi in spans:
        attributed |= (opened >= lo) & (opened <= hi)
    return RunOutcome(
        key=run.key,
        group=run.group,
        events=outcomes,
        alerts=len(episodes),
        false_alarms=int((~attributed).sum()),
        normal_days=_normal_seconds(run.test, spans) / DAY_S,
        thresholds=thresholds,
    )


def summarise(outcomes: Sequence[RunOutcome]) -> dict[str, Any]:
    """Pooled counts of some runs: faults alerted / scheduled, delays, false alarms per asset-day."""
    events = [e for o in outcomes for e in o.events]
    delays = [e.delay_s for e in events if e.delay_s is not None]
    days = sum(o.normal_days for o in outcomes)
    false_alarms = sum(o.false_alarms for o in outcomes)
    return {
        "runs": len(outcomes),
        "faults": len(events),
        "faults_alerted": sum(e.alerted for e in events),
        "median_delay_s": float(np.median(delays)) if delays else None,
        "max_delay_s": float(max(delays)) if delays else None,
        "false_alarms": false_alarms,
        "normal_days": round(days, 4),
        "false_alarms_per_day": false_alarms / days if days > 0 else None,
        "own_thresholds": sum(o.thresholds.source == "asset" for o in outcomes),
        "by_kind": {
            kind: [
                sum(e.alerted for e in events if e.event.kind == kind),
                sum(e.event.kind == kind for e in events),
            ]
            for kind in sorted({e.event.kind for e in events})
        },
    }


def _normal_seconds(test: tuple[float, float], spans: Sequence[tuple[float, float]]) -> float:
    """Length of the test period outside the union of the attribution spans."""
    lo, hi = test
    covered, cursor = 0.0, lo
    for a, b in sorted(spans):
        a, b = max(a, cursor), min(b, hi)
        if b > a:
            covered += b - a
            cursor = b
    return max(hi - lo - covered, 0.0)
