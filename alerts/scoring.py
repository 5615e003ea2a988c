"""The scorer: every complete feature window of an asset since its last stored score, for the champion and
every shadow version of its asset type, stored once and handed to the alert state machine once.

One run (`score_assets`) for a list of assets:

1. claim: read each asset's due-mark `seq` (alerts.ScoringDue);
2. read the ORM once: versions in use (not quarantined), sensors, each sensor's latest reading, each
   (asset, version)'s last stored window end, then ONE range query of readings covering every version's
   needs and the champion's sensor-fault step's (``alerts.services.sensor_faults.readings_from``: the
   context of its rule engine, and an hour for the drift rule when a drift bin completes);
3. NumPy: each version's scoring pipeline (detection.pipeline, the one the backtest, the edge runner and
   retraining's hold-out use): its windows by detection.features.build_windows_many over all the assets at
   once (bit-identical to build_windows per asset; built once per distinct regime step), its complete new
   rows, the per-asset baseline, then one onnxruntime batch per version over the windows of all assets
   (models_registry.cache keeps sessions per version id and sha256);
4. store, one transaction per version: lock the assets, re-read the last stored ends under the lock, bulk
   insert the Score rows after them, run the sensor-fault step on the champion's (its findings hold the
   windows a faulty sensor explains) and call alerts.services.apply_scores with exactly those windows, so a
   re-run (acks_late redelivery after SIGKILL, a duplicate task) stores nothing twice and applies nothing
   twice;
5. release: clear the mark only where `seq` is unchanged; assets that got data meanwhile are re-enqueued.

Windows: a window ending at e is complete once every reporting sensor of the asset has a reading at or
after e (sensors silent for more than two windows do not hold the others back; their windows are dropped
for coverage by build_windows, never imputed). A reading that arrives after its window was scored is not
re-scored. Look-back: a first run (no stored score for the pair) starts at most `VIGIL_SCORING_LOOKBACK_S`
(6 h) before the asset's latest complete time.

Backlog (a pair whose last score is older than that, e.g. after a broker outage with fast data): every
window is scored, oldest first, in chunks: one run reads at most `VIGIL_SCORING_LOOKBACK_S` of readings per
asset, writes how far it got (ScoringProgress, so a chunk without a scorable window is not read again) and
leaves the asset due; the task re-enqueues itself until the asset is caught up. The alert state machine
sees the same windows in the same order as in one pass, so chunks raise the same alerts. Windows older
than `VIGIL_SCORING_MAX_BACKLOG_S` (7 days) before the latest complete time are not scored: the span is
recorded as a ScoringGap (asset page, alert health page, the asset's chart JSON) and logged.

Versions with a regime step (``output_spec["regimes"]``, detection.regimes) score windows of their
readings standardised per operating regime, by the same ``regimes.apply`` the C-MAPSS evaluation uses; a
step that cannot be parsed or names roles the asset type lacks quarantines the version (INPUTS).

Baselined versions (``output_spec["baseline"] == "per_asset"``) score ``x - the asset's baseline``
(models_registry.baseline); robust ones (``"per_asset_robust"``, and ``"per_asset_pooled"``, whose
calibration's scale is pooled with its fleet's) ``(x - median) / scale`` of the asset's
robust calibration, and raise alerts at the asset's own thresholds (threshold precedence: a noise-control
override, then the asset's calibrated thresholds, then the version's). An asset without a calibration of
the version's mode is auto-calibrated from its first VIGIL_BASELINE_WINDOWS usable windows and gets no
scores from such a version until then. A peer-relative version (``output_spec["peers"] == "median"``,
detection.baseline.peer_relative) scores each asset against the median change of the assets of its type
on its site scored in the same sweep (its peer group); a window end fewer than MIN_PEERS of them reach is
not scored (a later sweep scores it if the peers' windows arrive before the asset's cursor passes it).

Optional sensors: an asset's windows are built over the roles it has (the roles it has no sensor for are
NaN columns, detection.features ``absent_roles``), so a version reading only roles the asset has scores it.
A version reading a role the asset lacks cannot score it: the pair is left out of the look-back and
recorded once as a ScoringGap (reason MISSING_ROLE, logged), and the asset page says which role is missing
for which model (alerts.asset_panels).

Failures of a version at run time (unreadable or altered artifact, features it names that the asset type
does not produce, wrong input width, non-finite scores) quarantine that version with a ModelIncident; the
other versions keep scoring. Quarantined versions are skipped until an engineer clears them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from datetime import timezone as dt_timezone

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery

from alerts.broadcast import broadcast_alerts
from alerts.choices import GapReason
from alerts.models import Score, ScoringDue, ScoringGap, ScoringProgress
from alerts.scheduling import mark_due
from alerts.services import ScoredWindow, apply_scores
from alerts.services.lifecycle import assets_with_active_alert, rules_needed
from alerts.services.sensor_faults import SensorFaults, apply_sensor_faults, held_roles, readings_from
from alerts.services.overrides import thresholds_in_force
from detection.baseline import Calibration, baseline_mode
from detection.features import Windows, roles_read
from detection.pipeline import ModelCrash, Pipeline, PipelineError, ScoreOutputError
from detection.runtime import ModelRuntimeError
from models_registry import baseline, cache
from models_registry.choices import ModelStatus
from models_registry.models import IncidentKind, ModelVersion
from models_registry.quarantine import quarantine
from plant.models import Asset, AssetType, Reading, Sensor, no_sensor_for
from plant.pgcopy import PG_EPOCH_OFFSET_US, pg_copy_stream
from plant.series import read_readings

logger = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x56_49_47  # "VIG": the first key of pg_advisory_xact_lock(int, int)
_UNION_CHUNK = 200  # (asset, version) pairs per last-score query; SQLite allows 500 compound terms


@dataclass
class ScoringReport:
    """What one run did: new scores per version id, versions quarantined, assets left due (re-enqueued;
    among them the backlogged ones, scored up to a chunk's end only), gaps recorded."""

    assets: int = 0
    windows: int = 0
    stored: dict[int, int] = field(default_factory=dict)
    quarantined: list[int] = field(default_factory=list)
    still_due: list[int] = field(default_factory=list)
    backlogged: list[int] = field(default_factory=list)
    gaps: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _AssetData:
    asset: Asset
    sensors: dict[int, str]  # sensor id -> role (one sensor per role)
    keys: dict[str, str]  # role -> sensor key
    periods: dict[str, float]
    end_s: float | None = None
    start_s: float | None = None
    windows: Windows | None = None
    prepared: dict[int, Windows] = field(default_factory=dict)  # version id -> windows of its regime step
    capped: bool = False  # end_s cut to one chunk of a longer backlog
    read_from_s: float | None = None  # readings read after this (the windows' start, or the sensor step's)
    series: dict[str, tuple] = field(default_factory=dict)  # role -> (ts, values, quality) read
    faults: SensorFaults | None = None  # what the champion's sensor-fault step found (shadows use it too)


@lru_cache(maxsize=4096)
def _utc(seconds: float) -> datetime:
    # Cached: the assets of a sweep share their window ends (multiples of the step), and a datetime is
    # immutable; building one per stored window cost more than anything else in storing it.
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


# --- the run ------------------------------------------------------------------------------------------------


def score_assets(asset_ids: Sequence[int]) -> ScoringReport:
    """Score every complete new window of the assets for every version in use; idempotent (see module)."""
    report = ScoringReport()
    ids = sorted({int(asset_id) for asset_id in asset_ids})
    claims = dict(ScoringDue.objects.filter(asset_id__any=ids).values_list("asset_id", "seq"))
    assets = list(Asset.objects.filter(pk__any=ids, is_active=True).select_related("asset_type"))
    by_type: dict[int, list[Asset]] = defaultdict(list)
    for asset in assets:
        by_type[asset.asset_type_id].append(asset)
    for group in by_type.values():
        _score_type(group[0].asset_type, group, report)
    report.assets = len(assets)
    report.still_due = _release(claims, report.backlogged)
    return report


def _score_type(asset_type: AssetType, assets: list[Asset], report: ScoringReport) -> None:
    versions = list(
        ModelVersion.objects.filter(
            asset_type=asset_type,
            status__in=[ModelStatus.CHAMPION, ModelStatus.SHADOW],
            quarantined_at__isnull=True,
        ).order_by("status", "pk")  # champion sorts before shadow
    )
    if not versions:
        return
    started = time.perf_counter()
    roles = list(asset_type.roles.order_by("key").values_list("key", flat=True))
    data = _load_assets(assets)
    cursors = _cursors([a.pk for a in assets], [v.pk for v in versions])
    window_s, step_s = float(asset_type.window_s), float(asset_type.step_s)
    # A chunk always reaches past at least one window end, so a backlog cannot stall on a tiny look-back.
    lookback = max(float(settings.VIGIL_SCORING_LOOKBACK_S), window_s + step_s)
    limit = float(settings.VIGIL_SCORING_MAX_BACKLOG_S)
    gaps: list[tuple[_AssetData, ModelVersion, float, float]] = []
    unservable = _missing_roles(versions, roles, data.values())
    champion = versions[0].status == ModelStatus.CHAMPION
    if unservable:
        report.gaps += _record_missing_roles(unservable, data, lookback)
    for item in data.values():
        if item.end_s is None:
            continue
        oldest = item.end_s - max(limit, lookback)
        starts = []
        for version in versions:
            if (item.asset.pk, version.pk) in unservable:
                continue  # it cannot score this asset: no look-back for it, every run
            end = cursors.get((item.asset.pk, version.pk))
            if end is None:
                starts.append(item.end_s - lookback)
                continue
            if end < oldest:
                gaps.append((item, version, end, oldest))
                end = cursors[(item.asset.pk, version.pk)] = oldest
            starts.append(end)
        if not starts:
            continue
        first_new = min(starts)
        if item.end_s - first_new > lookback:
            # A backlog: this run scores its oldest chunk only; the asset stays due for the rest.
            item.end_s, item.capped = first_new + lookback, True
        # build_windows' first end is then the first multiple of step_s after first_new.
        item.start_s = item.read_from_s = first_new - window_s + 1e-6
        if champion:
            # The champion's sensor-fault step (alerts.services.sensor_faults) reads the same read.
            item.read_from_s = min(item.start_s, readings_from(first_new, item.end_s, step_s))
    if gaps:
        report.gaps += _record_gaps(gaps)
    series, windowed = _read_series([item for item in data.values() if item.start_s is not None])
    for item in data.values():
        item.series = series.get(item.asset.pk, {})
    report.timings["read"] = report.timings.get("read", 0.0) + time.perf_counter() - started

    started = time.perf_counter()
    todo = [
        item
        for item in data.values()
        if item.start_s is not None and item.end_s is not None and item.end_s > item.start_s
    ]
    # One vectorised pass for the whole chunk, bit-identical to build_windows per asset (which the edge
    # runner and training use), so a window scores the same wherever it is computed; once per distinct
    # regime step (detection.pipeline), the raw windows for every version without one.
    pipelines, failed = _pipelines(versions, roles, report)
    prepared = _prepare_windows(pipelines, roles, todo, windowed, window_s, step_s)
    for item in todo:
        item.windows = prepared[None][item.asset.pk]
        for version_id, pipeline in pipelines.items():
            item.prepared[version_id] = prepared[pipeline.windows_key][item.asset.pk]
    report.timings["features"] = report.timings.get("features", 0.0) + time.perf_counter() - started

    for version in versions:
        if version.pk not in failed:
            _score_version(version, pipelines[version.pk], data, cursors, report)
    capped = [item for item in data.values() if item.capped]
    if capped:
        failed |= set(report.quarantined)
        _save_progress(
            [(item.asset.pk, v.pk, item.end_s) for item in capped for v in versions if v.pk not in failed]
        )
        report.backlogged += [item.asset.pk for item in capped]


def _pipelines(
    versions: list[ModelVersion], roles: list[str], report: ScoringReport
) -> tuple[dict[int, Pipeline], set[int]]:
    """version id -> its scoring pipeline; a version whose regime step cannot be parsed or names roles the
    asset type lacks is quarantined (INPUTS) and returned among the failed ids instead."""
    pipelines: dict[int, Pipeline] = {}
    failed: set[int] = set()
    for version in versions:
        try:
            pipelines[version.pk] = Pipeline.from_spec(version.feature_spec, version.output_spec, roles)
        except PipelineError as exc:
            _fail(version, IncidentKind.INPUTS, str(exc), report)
            failed.add(version.pk)
    return pipelines, failed


def _prepare_windows(
    pipelines: dict[int, Pipeline],
    roles: list[str],
    todo: list[_AssetData],
    series: dict[int, dict[str, tuple]],
    window_s: float,
    step_s: float,
) -> dict[str | None, dict]:
    """windows key (None: raw readings) -> {asset id: Windows} of the chunk from ``series``, the readings
    of the windows (_read_series' second part), built once per distinct regime step. Timestamps and quality are unchanged by the step, so all have the raw windows' ends and flags."""
    steps: dict[str | None, Pipeline] = {None: Pipeline.from_spec([], {})}
    for pipeline in pipelines.values():
        steps.setdefault(pipeline.windows_key, pipeline)
    return {
        key: pipeline.windows(
            {item.asset.pk: series.get(item.asset.pk, {}) for item in todo},
            roles,
            window_s=window_s,
            step_s=step_s,
            start_s={item.asset.pk: item.start_s for item in todo},
            end_s={item.asset.pk: item.end_s for item in todo},
            sample_period_s={item.asset.pk: item.periods for item in todo},
            absent_roles={item.asset.pk: [role for role in roles if role not in item.keys] for item in todo},
        )
        for key, pipeline in steps.items()
    }


def _windows_for(item: _AssetData, version: ModelVersion) -> Windows | None:
    """The windows this version scores: of its regime-standardised readings if it has a step, else raw."""
    return item.prepared.get(version.pk, item.windows)


class _LoadFailed(Exception):
    """The version's artifact could not be loaded (an IncidentKind.LOAD)."""


def _score_version(
    version: ModelVersion,
    pipeline: Pipeline,
    data: dict[int, _AssetData],
    cursors: dict[tuple[int, int], float],
    report: ScoringReport,
) -> None:
    """Score the version's new windows of every asset through its pipeline and store them; a failure of
    the version quarantines it with the matching incident kind."""
    started = time.perf_counter()
    windows = {
        pk: w for pk, w in ((i.asset.pk, _windows_for(i, version)) for i in data.values()) if w is not None
    }

    def load():
        try:
            return cache.loaded(version)
        except Exception as exc:  # unreadable file, altered bytes, a graph onnxruntime refuses
            raise _LoadFailed(str(exc)) from exc

    try:
        # A baselined model scores an asset only against its operating point; an asset still calibrating
        # gets no scores (and so no alerts) from this version yet.
        scored = pipeline.run(
            load,
            windows,
            baselines=lambda asset_ids: _baselines(version, [data[pk] for pk in asset_ids]),
            after_s={pk: cursors.get((pk, version.pk), -np.inf) for pk in windows},
            # A peer-relative version's peer group: the assets of its type on one site scored together.
            groups={pk: data[pk].asset.site_id for pk in windows},
        )
    except _LoadFailed as exc:
        _fail(version, IncidentKind.LOAD, str(exc), report)
        return
    except ScoreOutputError as exc:
        _fail(version, IncidentKind.OUTPUTS, str(exc), report)
        return
    except ModelCrash as exc:
        _fail(version, IncidentKind.RUNTIME, str(exc), report)
        return
    except (PipelineError, ModelRuntimeError) as exc:  # features it names, the input width
        _fail(version, IncidentKind.INPUTS, str(exc), report)
        return
    if not scored:
        return
    report.timings["score"] = report.timings.get("score", 0.0) + time.perf_counter() - started
    report.windows += sum(len(part.rows) for part in scored.values())

    started = time.perf_counter()
    batches = [(data[pk], part.rows, part.X, part.scores, part.baseline) for pk, part in scored.items()]
    stored = _store(version, batches)
    report.stored[version.pk] = report.stored.get(version.pk, 0) + stored
    report.timings["store"] = report.timings.get("store", 0.0) + time.perf_counter() - started


def _baselines(version: ModelVersion, items: list[_AssetData]) -> dict[int, np.ndarray | Calibration]:
    """asset id -> the version's per-asset step for it (a mean vector or a robust Calibration, by its mode);
    assets without one are auto-calibrated when they have enough windows, together (a pooled version's
    assets calibrating in one chunk are pooled with each other and the fleet's stored calibrations:
    models_registry.baseline.auto_calibrate_many) and left out otherwise."""
    names = list(version.feature_spec)
    mode = baseline_mode(version.output_spec)
    steps = baseline.current_steps(version, [item.asset.pk for item in items])
    missing = [item for item in items if item.asset.pk not in steps]
    if missing:
        until = {item.asset.pk: item.end_s for item in missing}
        made = baseline.auto_calibrate_many([item.asset for item in missing], names, until, mode=mode)
        steps.update({asset_id: baseline.as_step(row, names) for asset_id, row in made.items()})
    return steps


def _fail(version: ModelVersion, kind: str, message: str, report: ScoringReport) -> None:
    if quarantine(version, kind, message):
        report.quarantined.append(version.pk)


def _store(version: ModelVersion, batches: list) -> int:
    """One transaction: lock, keep windows after the last stored end, insert their scores, apply them."""
    asset_ids = sorted(item.asset.pk for item, *_ in batches)
    total = 0
    with transaction.atomic():
        _lock_assets(asset_ids)
        cursors = _last_ends(asset_ids, [version.pk])
        pending: list[_NewWindows] = []
        for item, index, X, scores, vector in batches:
            windows = _windows_for(item, version)
            ends = windows.ends[index]
            new = np.flatnonzero(ends > cursors.get((item.asset.pk, version.pk), -np.inf) + 1e-6)
            if len(new):
                bits = windows.flagged[index[new]]
                pending.append(_NewWindows(item, windows.roles, new, ends[new], scores[new], bits, X, vector))
        _insert_scores(version, *_score_columns(pending))
        changed: list[int] = []
        # One query tells which assets hold an active alert; the others need none unless a window is above
        # the open threshold (see apply_scores).
        asset_ids = [part.item.asset.pk for part in pending]
        active = assets_with_active_alert(version, asset_ids) if pending else set()
        # The chunk's per-asset thresholds: overrides (alerts.ThresholdOverride) before a robust version's
        # calibrated ones (models_registry.AssetThreshold), in two queries at most.
        overrides = thresholds_in_force(version, asset_ids) if pending else {}
        if version.status == ModelStatus.CHAMPION and pending:
            # Sensor faults (alerts.services.sensor_faults) once per chunk, on the champion's window ends
            # and the readings already read; what they find holds the windows a faulty sensor explains.
            faults = apply_sensor_faults(
                version,
                [
                    (
                        part.item.asset,
                        [_utc(end) for end in part.ends.tolist()],
                        part.item.sensors,
                        part.item.series,
                    )
                    for part in pending
                ],
            )
            changed += faults.changed
            for part in pending:
                part.item.faults = faults
        for part in pending:
            item = part.item
            total += len(part.ends)
            # A healthy asset (no active alert, nothing above the open threshold) needs no rule engine: its
            # windows are not even made into objects.
            if not rules_needed(
                version, item.asset, part.scores.tolist(), with_active=active, thresholds=overrides
            ):
                continue
            scored = part.scored()
            held = {}
            if item.faults is not None:
                for w in scored:
                    roles = held_roles(item.faults, item.asset.pk, w.flagged)
                    if roles:
                        held[w.end] = roles
            changed += apply_scores(
                item.asset,
                version,
                scored,
                sensors=item.keys,
                with_active=active,
                thresholds=overrides,
                held=held,
            )
        broadcast_alerts(changed)  # sent after commit
    return total


@dataclass
class _NewWindows:
    """One asset's windows of a version to store: positions among its scored rows, ends, scores, flags."""

    item: _AssetData
    roles: list[str]
    rows: np.ndarray  # positions in the version's scored rows (and in X) of the new windows
    ends: np.ndarray  # epoch seconds
    scores: np.ndarray
    bits: np.ndarray  # [window, role] OR of the readings' quality bits
    X: np.ndarray
    baseline: np.ndarray | Calibration | None

    def flagged(self) -> list[dict[str, int]]:
        """Per window, role -> its quality bits, for the roles with any."""
        some = self.bits.any(axis=1).tolist()
        return [_flags(self.roles, row) if any_ else {} for row, any_ in zip(self.bits.tolist(), some)]

    def scored(self) -> list[ScoredWindow]:
        """The windows as the alert lifecycle takes them (alerts.services.apply_scores)."""
        return [
            ScoredWindow(end=_utc(end), score=score, x=self.X[k], flagged=flagged, baseline=self.baseline)
            for k, end, score, flagged in zip(
                self.rows.tolist(), self.ends.tolist(), self.scores.tolist(), self.flagged()
            )
        ]


def _flags(roles: list[str], bits: list[int]) -> dict[str, int]:
    """Score.flagged of a window: role -> the OR of its readings' quality bits, for the roles with any."""
    return {role: b for role, b in zip(roles, bits) if b}


def _score_columns(
    pending: list[_NewWindows],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, dict[str, int]]]:
    """(asset ids, window ends in epoch seconds, scores, {row: flagged} of the rows with any flag) of the
    new windows, in columns for _insert_scores (no Python object per window but the flagged ones)."""
    if not pending:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), {}
    asset_ids = np.repeat([part.item.asset.pk for part in pending], [len(part.ends) for part in pending])
    flagged: dict[int, dict[str, int]] = {}
    offset = 0
    for part in pending:
        for k in np.flatnonzero(part.bits.any(axis=1)).tolist():
            flagged[offset + k] = _flags(part.roles, part.bits[k].tolist())
        offset += len(part.ends)
    return (
        asset_ids.astype(np.int64),
        np.concatenate([part.ends for part in pending]),
        np.concatenate([part.scores for part in pending]),
        flagged,
    )


def _insert_scores(
    version: ModelVersion,
    asset_ids: np.ndarray,
    ends_s: np.ndarray,
    scores: np.ndarray,
    flagged: Mapping[int, dict[str, int]],
) -> None:
    """Insert Score rows of one version, given as columns (asset ids, window ends in epoch seconds, scores)
    and the flagged value of the rows that have one (row -> {role: bits}; the others: {}), skipping
    existing windows. On PostgreSQL one binary COPY built by NumPy: no object and no SQL literal per row."""
    if not len(asset_ids):
        return
    if connection.vendor != "postgresql":
        Score.objects.bulk_create(
            [
                Score(
                    asset_id=a, model_version=version, window_end=_utc(e), score=v, flagged=flagged.get(i, {})
                )
                for i, (a, e, v) in enumerate(zip(asset_ids.tolist(), ends_s.tolist(), scores.tolist()))
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
        return
    meta = Score._meta
    qn = connection.ops.quote_name
    columns = ", ".join(qn(meta.get_field(name).column) for name in _SCORE_COLUMNS)
    # The caller holds the assets' locks and keeps only windows after the last stored end, so no row can
    # exist already and COPY (about a third of INSERT ... ON CONFLICT's cost) goes straight into the
    # table. Should one exist all the same, its savepoint is rolled back and the rows take the INSERT,
    # which skips the stored ones.
    try:
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.copy(f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_score_copy_buffer(version.pk, asset_ids, ends_s, scores, flagged))
        return
    except psycopg.errors.UniqueViolation:
        pass
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(meta.db_table)} ({columns})"
            " SELECT a, %s, e, v, f::jsonb FROM unnest(%s::int8[], %s::timestamptz[], %s::float8[], %s::text[])"
            " AS r(a, e, v, f) ON CONFLICT DO NOTHING",
            [
                version.pk,
                asset_ids.tolist(),
                [_utc(e) for e in ends_s.tolist()],
                scores.tolist(),
                [json.dumps(flagged.get(i, {})) for i in range(len(asset_ids))],
            ],
        )


_SCORE_COLUMNS = ("asset", "model_version", "window_end", "score", "flagged")
# A Score row of a binary COPY stream up to its jsonb column's payload (version byte 1, then JSON text).
_SCORE_ROW = [
    ("nfields", ">i2"),
    ("len_asset", ">i4"),
    ("asset", ">i8"),
    ("len_version", ">i4"),
    ("version", ">i8"),
    ("len_end", ">i4"),
    ("end", ">i8"),
    ("len_score", ">i4"),
    ("score", ">f8"),
    ("len_flagged", ">i4"),
]


def _score_copy_buffer(
    version_id: int,
    asset_ids: np.ndarray,
    ends_s: np.ndarray,
    scores: np.ndarray,
    flagged: Mapping[int, dict[str, int]],
) -> bytes:
    """The rows as one binary COPY stream of _SCORE_COLUMNS. Rows are fixed-width but for their flagged
    JSON, so they are built per distinct flagged value (almost always {}): one NumPy record array each."""
    payloads = np.zeros(len(asset_ids), dtype=np.int64)  # 0: {}
    distinct: dict[bytes, int] = {b"\x01{}": 0}
    for i, value in flagged.items():
        if value:
            payload = b"\x01" + json.dumps(value, sort_keys=True).encode()
            payloads[i] = distinct.setdefault(payload, len(distinct))
    # Microseconds as datetime.fromtimestamp rounds them (half to even of the fraction), so a window end
    # is stored exactly as the ORM would store _utc(end).
    whole, frac = np.divmod(np.asarray(ends_s, dtype=np.float64), 1.0)
    ends_us = whole.astype(np.int64) * 1_000_000 + np.round(frac * 1e6).astype(np.int64)
    blocks = []
    for payload, code in distinct.items():
        at = np.flatnonzero(payloads == code)
        if not len(at):
            continue
        block = np.empty(len(at), dtype=np.dtype([*_SCORE_ROW, ("flagged", f"S{len(payload)}")]))
        block["nfields"] = len(_SCORE_COLUMNS)
        block["len_asset"] = block["len_version"] = block["len_end"] = block["len_score"] = 8
        block["asset"] = asset_ids[at]
        block["version"] = version_id
        block["end"] = ends_us[at] - PG_EPOCH_OFFSET_US
        block["score"] = scores[at]
        block["len_flagged"] = len(payload)
        block["flagged"] = payload
        blocks.append(block.tobytes())
    return pg_copy_stream(blocks)


def _lock_assets(asset_ids: list[int]) -> None:
    """Serialise scorers of the same assets for the transaction. SQLite's IMMEDIATE transactions already
    serialise every writer; PostgreSQL takes transaction-scoped advisory locks in id order (no deadlock),
    which leave ingestion's due-mark updates unblocked."""
    if connection.vendor != "postgresql" or not asset_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, a) FROM unnest(%s::int[]) AS a",
            [_LOCK_NAMESPACE, asset_ids],
        )


# --- reading the database ------------------------------------------------------------------------------------


def _load_assets(assets: list[Asset]) -> dict[int, _AssetData]:
    data = {asset.pk: _AssetData(asset, {}, {}, {}) for asset in assets}
    latest = Reading.objects.filter(sensor_id=OuterRef("pk")).order_by("-ts").values("ts")[:1]
    rows = (
        Sensor.objects.filter(asset_id__any=[asset.pk for asset in assets])
        .order_by("pk")
        .annotate(last=Subquery(latest))
        .values_list("pk", "asset_id", "role__key", "key", "sample_period_s", "last")
    )
    lasts: dict[int, list[float]] = defaultdict(list)
    for sensor_id, asset_id, role, key, period, last in rows:
        item = data[asset_id]
        if role in item.keys:
            continue  # one sensor per role, as in training; a spare sensor does not double a feature
        item.sensors[sensor_id] = role
        item.keys[role] = key
        item.periods[role] = float(period)
        if last is not None:
            lasts[asset_id].append(last.timestamp())
    for asset_id, values in lasts.items():
        item = data[asset_id]
        window_s = float(item.asset.asset_type.window_s)
        newest = max(values)
        reporting = [value for value in values if value >= newest - 2 * window_s]
        item.end_s = min(reporting)
    return data


def _last_ends(asset_ids: list[int], version_ids: list[int]) -> dict[tuple[int, int], float]:
    """(asset id, version id) -> epoch seconds of the last stored window end, one index probe per pair."""
    meta = Score._meta
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    c_asset = qn(meta.get_field("asset").column)
    c_version = qn(meta.get_field("model_version").column)
    c_end = qn(meta.get_field("window_end").column)
    pairs = [(a, v) for a in asset_ids for v in version_ids]
    found: dict[tuple[int, int], float] = {}
    if connection.vendor == "postgresql" and pairs:
        # One statement: a correlated LIMIT 1 probe of the unique index per pair.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT p.a, p.v, (SELECT {c_end} FROM {table} WHERE {c_asset} = p.a AND {c_version} = p.v"
                f" ORDER BY {c_end} DESC LIMIT 1) FROM unnest(%s::int[], %s::int[]) AS p(a, v)",
                [[a for a, _ in pairs], [v for _, v in pairs]],
            )
            for asset_id, version_id, end in cursor.fetchall():
                if end is not None:
                    found[(asset_id, version_id)] = _as_datetime(end).timestamp()
        return found
    for start in range(0, len(pairs), _UNION_CHUNK):
        chunk = pairs[start : start + _UNION_CHUNK]
        parts = [
            f"SELECT * FROM (SELECT {c_asset}, {c_version}, {c_end} FROM {table}"
            f" WHERE {c_asset} = %s AND {c_version} = %s ORDER BY {c_end} DESC LIMIT 1) AS p{i}"
            for i in range(len(chunk))
        ]
        params = [value for pair in chunk for value in pair]
        with connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts), params)
            for asset_id, version_id, end in cursor.fetchall():
                found[(asset_id, version_id)] = _as_datetime(end).timestamp()
    return found


def _as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)
    return datetime.fromisoformat(str(value)).replace(tzinfo=dt_timezone.utc)


def _read_series(items: list[_AssetData]) -> tuple[dict[int, dict[str, tuple]], dict[int, dict[str, tuple]]]:
    """({asset id: {role: (ts_s, values, quality)}} from one range query over every sensor of the items,
    the same cut to the readings of each item's windows: those after its start_s, where the read reached
    further back for the sensor-fault step)."""
    if not items:
        return {}, {}
    sensor_role: dict[int, tuple[int, str]] = {}
    cut: dict[int, float] = {}
    for item in items:
        for sensor_id, role in item.sensors.items():
            sensor_role[sensor_id] = (item.asset.pk, role)
        further = item.read_from_s is not None and item.read_from_s < item.start_s
        cut[item.asset.pk] = item.start_s if further else -np.inf
    begin = _utc(min(item.start_s if item.read_from_s is None else item.read_from_s for item in items))
    end = _utc(max(item.end_s for item in items))
    sid, ts, values, quality = read_readings(list(sensor_role), begin, end, include_start=False)
    out: dict[int, dict[str, tuple]] = defaultdict(dict)
    windowed: dict[int, dict[str, tuple]] = defaultdict(dict)
    if not len(sid):
        return out, windowed
    bounds = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1], True])
    starts, stops = bounds[:-1], bounds[1:]
    owners = [sensor_role[sensor_id] for sensor_id in sid[starts].tolist()]
    # Per sensor, how many of its readings are at or before its asset's cut (they come first: time order).
    limit = np.repeat([cut[asset_id] for asset_id, _ in owners], stops - starts)
    before = np.add.reduceat((ts <= limit).astype(np.int64), starts)
    for (asset_id, role), lo, hi, skip in zip(owners, starts.tolist(), stops.tolist(), before.tolist()):
        out[asset_id][role] = columns = (ts[lo:hi], values[lo:hi], quality[lo:hi])
        windowed[asset_id][role] = columns if not skip else tuple(c[skip:] for c in columns)
    return out, windowed


def _release(claims: dict[int, int], backlogged: list[int]) -> list[int]:
    """Clear each claimed mark whose seq did not move, except on backlogged assets (they stay due, so the
    sweep finds them if the follow-up task is lost); return the assets still due (to re-enqueue)."""
    if backlogged:
        mark_due(backlogged)
    by_seq: dict[int, list[int]] = defaultdict(list)
    for asset_id, seq in claims.items():
        if asset_id not in backlogged:
            by_seq[seq].append(asset_id)
    for seq, asset_ids in by_seq.items():
        ScoringDue.objects.filter(asset_id__any=asset_ids, seq=seq).update(due=False, scored_seq=seq)
    if not claims and not backlogged:
        return []
    return list(
        ScoringDue.objects.filter(asset_id__any={*claims, *backlogged}, due=True)
        .order_by("asset_id")
        .values_list("asset_id", flat=True)
    )


def _cursors(asset_ids: list[int], version_ids: list[int]) -> dict[tuple[int, int], float]:
    """(asset id, version id) -> epoch seconds up to which windows were scored or, in a backlog catch-up,
    looked at (ScoringProgress); pairs with neither are absent (a first run)."""
    cursors = _last_ends(asset_ids, version_ids)
    progress = ScoringProgress.objects.filter(asset_id__any=asset_ids, model_version_id__any=version_ids)
    for asset_id, version_id, through in progress.values_list("asset_id", "model_version_id", "through"):
        key = (asset_id, version_id)
        cursors[key] = max(cursors.get(key, -np.inf), through.timestamp())
    return cursors


def _save_progress(rows: list[tuple[int, int, float]]) -> None:
    """Record (asset id, version id, epoch s): that version has looked at every window of the asset up to
    then (a capped chunk's end, or the end of a recorded gap)."""
    ScoringProgress.objects.bulk_create(
        [ScoringProgress(asset_id=a, model_version_id=v, through=_utc(through)) for a, v, through in rows],
        update_conflicts=True,
        unique_fields=["asset", "model_version"],
        update_fields=["through"],
    )


def _missing_roles(
    versions: list[ModelVersion], roles: list[str], items: Iterable[_AssetData]
) -> dict[tuple[int, int], list[str]]:
    """(asset id, version id) -> the roles of the type the version reads that the asset has no sensor for
    (pairs with none are absent). A role the type lacks is the version's defect, not the asset's: the
    pipeline quarantines the version for it (INPUTS)."""
    reads = {version.pk: set(roles_read(version.feature_spec)).intersection(roles) for version in versions}
    out: dict[tuple[int, int], list[str]] = {}
    for item in items:
        for version in versions:
            missing = sorted(reads[version.pk].difference(item.keys))
            if missing:
                out[(item.asset.pk, version.pk)] = missing
    return out


def _record_missing_roles(
    unservable: dict[tuple[int, int], list[str]], data: dict[int, _AssetData], lookback: float
) -> int:
    """Record once per (asset, version) that the version does not score the asset for want of a sensor:
    a ScoringGap (reason MISSING_ROLE) over the look-back it would have scored, and a log line. Pairs
    already recorded, or whose asset has no reading yet, are left for later (one query per run)."""
    done = set(
        ScoringGap.objects.filter(
            reason=GapReason.MISSING_ROLE,
            asset_id__in={asset_id for asset_id, _ in unservable},
            model_version_id__in={version_id for _, version_id in unservable},
        ).values_list("asset_id", "model_version_id")
    )
    todo = [
        (pair, missing)
        for pair, missing in unservable.items()
        if pair not in done and data[pair[0]].end_s is not None
    ]
    if not todo:
        return 0
    versions = {v.pk: v for v in ModelVersion.objects.filter(pk__in={pair[1] for pair, _ in todo})}
    created = ScoringGap.objects.bulk_create(
        [
            ScoringGap(
                asset_id=asset_id,
                model_version_id=version_id,
                start=_utc(data[asset_id].end_s - lookback),
                end=_utc(data[asset_id].end_s),
                reason=GapReason.MISSING_ROLE,
            )
            for (asset_id, version_id), _ in todo
        ],
        ignore_conflicts=True,
    )
    for (asset_id, version_id), missing in todo:
        logger.warning(
            "%s, which model %s reads: it does not score this asset (recorded as a scoring gap)",
            no_sensor_for(data[asset_id].asset.tag, missing),
            versions[version_id],
        )
    return len(created)


def _record_gaps(gaps: list[tuple[_AssetData, ModelVersion, float, float]]) -> int:
    """Record the spans older than VIGIL_SCORING_MAX_BACKLOG_S as not scored, and move each pair's progress
    past them in the same transaction (so a run that dies next does not record or score them again)."""
    with transaction.atomic():
        created = ScoringGap.objects.bulk_create(
            [
                ScoringGap(
                    asset_id=item.asset.pk,
                    model_version=version,
                    start=_utc(start),
                    end=_utc(end),
                    reason=GapReason.BACKLOG_LIMIT,
                )
                for item, version, start, end in gaps
            ],
            ignore_conflicts=True,
        )
        _save_progress([(item.asset.pk, version.pk, end) for item, version, _, end in gaps])
    for item, version, start, end in gaps:
        logger.warning(
            "asset %s / model %s: %.1f h of backlog older than VIGIL_SCORING_MAX_BACKLOG_S not scored "
            "(%s – %s), recorded as a scoring gap",
            item.asset.tag,
            version,
            (end - start) / 3600.0,
            _utc(start).isoformat(),
            _utc(end).isoformat(),
        )
    return len(created)
