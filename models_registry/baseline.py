"""Per-asset baselines: a model that says ``output_spec["baseline"] == "per_asset"`` sees each window's
features minus its asset's operating point, not the raw features.

Pumps of one type run at their own flows, pressures and speeds. One model over raw features either flags
every pump that is not at the fleet's average or misses a drop that is small next to the spread between
pumps; the SKAB evaluation (``models_registry.evaluation.skab_protocol``) shows both. Subtracting each
asset's own mean over a calibration period removes the operating point and leaves the change.

* The pure arithmetic (``mean_vector``, ``apply``, ``expects_baseline``) lives in ``detection.baseline``,
  shared by training, the scorer, explanations, the edge runner and the SKAB evaluation.
* ``calibrate(asset, names, start, end)`` — the mean of the asset's production feature windows (the
  scoring pipeline's windows step, ``detection.pipeline``, via ``training_data.asset_windows_between``: the
  sensors' sample periods, one sensor per role, as the scorer) lying wholly inside [start, end], over the
  windows whose features are all finite; stored as the asset's current ``AssetBaseline`` for that feature
  list (the previous one is kept, no longer current).
* The rule: a baseline is the mean of windows of raw readings, keyed by feature list and shared by every
  baselined version over those features; the windows it is subtracted from are raw too, because a version
  cannot have both a baseline and a regime step (``detection.pipeline.Pipeline.from_spec`` refuses it).
* ``auto_calibrate(asset, names, until_s)`` — what the scorer does for an asset that has no baseline yet:
  the first ``VIGIL_BASELINE_WINDOWS`` complete windows from the moment every sensor the model reads had
  reported. Until the asset has that many, a baselined model stores no scores and raises no alerts for
  it (the asset page shows "calibrating"); afterwards scoring starts from the usual look-back.
* ``current_vectors(asset_ids, names)`` — one query: the newest current baseline of each asset that covers
  every name, as a vector in the order of ``names`` (a baseline of the asset type's whole feature set
  serves every model of it).

Versions without ``"baseline"`` in their output_spec are fed raw windows, exactly as before.

Robust calibrations (``mode="per_asset_robust"``, detection.baseline.Calibration: median and robust scale
per feature) are stored in the same table, one current row per (asset, feature list, mode), and come with
the asset's own open/clear thresholds for each robust version (``AssetThreshold``):

* The windows a calibration is computed from (either mode): complete, no data-quality flag, and not
  overlapping a labelled FAULT of the asset nor a faulty sensor's readings (an EXCLUDED label, which
  training leaves out too: neither is normal running) (``calibration_windows``). A manual period that
  overlaps a fault label is refused with the label named (``fault_labels_in``); one holding a faulty
  sensor's label calibrates from its other windows.
* ``recalibrate(asset, start, end, actor)`` — the button on the asset page and ``manage.py
  calibrate_baseline``: calibrates every mode the versions in use on the asset's type need (the mean
  vector when none is baselined) and, for each robust or pooled version in use, sets the asset's thresholds from the
  scores of the period's usable windows through the version's pipeline, by the version's threshold rule
  (detection.thresholds.asset_thresholds; too few independent windows give the version's thresholds).
* Pooled calibrations (``mode="per_asset_pooled"``, issue 13): stored and applied like robust ones (the
  row's ``scale`` is the scale applied), with per-asset thresholds; what differs is how one is made. The
  asset's own robust calibration over its usable windows and its span (first window's start to last
  window's end) are stored too (``own_scale``, ``own_span_s``), and the scale applied is the own one
  pooled (detection.baseline.pooled) with its fleet's OWN scales: the other active assets of its type
  with a current pooled calibration (``pool_with_fleet``; each feature with the members that have it).
  The rule: an asset is pooled when it calibrates (auto-calibration, recalibration), against the fleet as
  it is then; the other assets' stored calibrations and thresholds are never changed by it (they change
  when an engineer recalibrates them, which re-pools that asset). Assets calibrating together (a
  training fleet, assets reaching their first windows in one scoring chunk: ``auto_calibrate_many``) are
  pooled together, as the evaluations pool their runs. An asset alone in its fleet keeps its own scale.
* Thresholds in force for an asset (``thresholds_in_force``): the current ``AssetThreshold`` of the version
  made with the asset's current calibration, else the version's; a noise-control override (alerts) takes
  precedence over both.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from detection.baseline import (
    PER_ASSET,
    MIN_WINDOWS,
    MODES,
    PER_ASSET_POOLED,
    PER_ASSET_ROBUST,
    BaselineError,
    Calibration,
    LevelTrend,
    baseline_mode,
    calibration_span,
    is_robust,
    level_trends,
    mean_vector,
    peer_relative,
    period_mask,
    pooled,
    usable_rows,
)
from detection.baseline import apply as apply_baseline
from detection.baseline import calibrate as robust_calibration
from detection.features import MAX_WINDOWS
from detection.features import feature_names as all_feature_names
from detection.wording import calibration_trend_text
from detection.features import role_of, roles_read
from detection.pipeline import Pipeline
from detection.thresholds import AssetThresholds, ThresholdRule, asset_thresholds
from models_registry import cache
from models_registry.choices import ModelStatus
from models_registry.models import (
    AssetBaseline,
    AssetThreshold,
    BaselineSource,
    ModelVersion,
    features_key,
    scale_for,
)
from models_registry.training_data import asset_windows_between, fault_type_words
from plant.choices import LabelKind
from plant.models import Label, Reading, no_sensor_for
from plant.series import role_sensors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineStatus:
    """One baselined version in use for an asset and the baseline it scores against (None: calibrating)."""

    version: ModelVersion
    baseline: AssetBaseline | None
    thresholds: AssetThreshold | None = None
    override: tuple[float, float] | None = None  # a noise-control override (alerts' rows), given by the page
    unsettled: tuple[str, ...] = ()  # the calibration's level trends in words, given by the page

    @property
    def calibrating(self) -> bool:
        return self.baseline is None

    @property
    def open_threshold(self) -> float:
        """The open threshold in force: the override, else the asset's calibrated one, else the version's."""
        return self._in_force()[0]

    @property
    def clear_threshold(self) -> float:
        return self._in_force()[1]

    def _in_force(self) -> tuple[float, float]:
        if self.override is not None:
            return self.override
        if self.thresholds is not None:
            return self.thresholds.open_threshold, self.thresholds.clear_threshold
        return self.version.open_threshold, self.version.clear_threshold

    @property
    def robust(self) -> bool:
        return is_robust(baseline_mode(self.version.output_spec))

    @property
    def pooled(self) -> bool:
        return baseline_mode(self.version.output_spec) == PER_ASSET_POOLED

    @property
    def windows_needed(self) -> int:
        return int(settings.VIGIL_BASELINE_WINDOWS)


# --- the asset's windows --------------------------------------------------------------------------------------


# Labels whose windows never calibrate: a machine fault, and a faulty sensor's readings (a sensor-fault
# verdict's EXCLUDED label), which are no more the asset's normal running than a fault is.
NOT_NORMAL = (LabelKind.FAULT, LabelKind.EXCLUDED)


def fault_labels_in(
    asset, start: datetime, end: datetime, kinds: Collection[str] = (LabelKind.FAULT,)
) -> list[Label]:
    """The asset's labels of ``kinds`` (FAULT by default) overlapping [start, end], oldest first."""
    return list(
        Label.objects.filter(asset=asset, kind__in=list(kinds), start__lte=end, end__gte=start).order_by(
            "start", "pk"
        )
    )


def calibration_windows(
    asset, names: list[str], start: datetime, end: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ends, X[:, names], usable) of the asset's windows lying wholly inside [start, end]; ``usable``
    marks the windows that may calibrate: complete, unflagged (detection.baseline.usable_rows) and not
    overlapping a FAULT or EXCLUDED label of the asset (``NOT_NORMAL``)."""
    ends, X, flagged = _windows(asset, names, start, end)
    window_s = float(asset.asset_type.window_s)
    fault = np.zeros(len(ends), dtype=bool)
    for label in fault_labels_in(asset, start, end, NOT_NORMAL):
        fault |= (ends > label.start.timestamp()) & (ends - window_s < label.end.timestamp())
    return ends, X, usable_rows(X, flagged) & ~fault


def asset_windows(asset, names: list[str], start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(ends, X[:, names]) of the asset's production feature windows lying wholly inside [start, end]."""
    ends, X, _ = _windows(asset, names, start, end)
    return ends, X


def _windows(asset, names: list[str], start: datetime, end: datetime) -> tuple[np.ndarray, ...]:
    asset_type = asset.asset_type
    roles = list(asset_type.roles.order_by("key").values_list("key", flat=True))
    window_s = float(asset_type.window_s)
    windows = asset_windows_between(asset, roles, start, end)
    position = {name: i for i, name in enumerate(windows.names)}
    unknown = [name for name in names if name not in position]
    if unknown:
        raise BaselineError(f"{asset_type.slug!r} assets do not produce the features {unknown[:5]}")
    inside = period_mask(windows.ends, window_s, start.timestamp(), end.timestamp())
    columns = np.array([position[name] for name in names], dtype=np.intp)
    flagged = np.asarray(windows.flagged)
    return np.asarray(windows.ends)[inside], windows.X[inside][:, columns], flagged[inside]


# --- storing ------------------------------------------------------------------------------------------------


def retire_current(asset, names: list[str], mode: str = PER_ASSET) -> None:
    """The asset's current baseline of `mode` for exactly `names` becomes history (call inside the new
    one's transaction)."""
    AssetBaseline.objects.filter(
        asset=asset, features_key=features_key(names), mode=mode, is_current=True
    ).update(is_current=False)


def _names(asset, feature_names: list[str] | None) -> list[str]:
    """The features to calibrate: ``feature_names``, or every feature of the roles of its type the asset
    has a sensor for (an optional role it lacks has no windows to calibrate). BaselineError when a feature
    asked for reads a role the asset has no sensor for, or when there is nothing to calibrate."""
    roles = list(asset.asset_type.roles.order_by("key").values_list("key", flat=True))
    if not roles:
        raise BaselineError(f"asset type {asset.asset_type.slug!r} has no sensor roles, so no features")
    have = set(asset.sensors.values_list("role__key", flat=True))
    if feature_names:
        missing = set(roles_read(feature_names)).intersection(roles) - have
        if missing:
            raise BaselineError(
                f"{no_sensor_for(asset.tag, missing)}, so it has no windows of the features asked for"
            )
        return list(feature_names)
    names = all_feature_names([role for role in roles if role in have])
    if not names:
        raise BaselineError(f"{no_sensor_for(asset.tag, roles)}: there is nothing to calibrate")
    return names


def measure(
    asset, feature_names: list[str] | None, start: datetime, end: datetime, mode: str = PER_ASSET
) -> tuple[list[str], np.ndarray | Calibration, int]:
    """(feature names, mean vector or Calibration — a PooledCalibration for the pooled mode —, window count)
    of the asset over [start, end] from its
    usable windows (``calibration_windows``), without storing it (default features: those of every role
    of its type it has a sensor for, ``_names``). BaselineError names what is wrong, with the counts."""
    names, result, count, _trends = _measure(asset, feature_names, start, end, mode)
    return names, result, count


def _measure(
    asset, feature_names: list[str] | None, start: datetime, end: datetime, mode: str
) -> tuple[list[str], np.ndarray | Calibration, int, list[LevelTrend]]:
    if start >= end:
        raise BaselineError("the calibration period is empty: start must be before end")
    windows = (end - start).total_seconds() / float(asset.asset_type.step_s)
    if windows > MAX_WINDOWS:
        raise BaselineError(
            f"the calibration period from {local_text(start)} to {local_text(end)} holds about {windows:,.0f} "
            f"windows of {asset.asset_type.step_s:g} s, more than the {MAX_WINDOWS:,} a calibration may build; "
            "choose a shorter period of normal running"
        )
    names = _names(asset, feature_names)
    ends, X, usable = calibration_windows(asset, names, start, end)
    try:
        result, count = _calibration(X[usable], mode)
    except BaselineError:
        raise BaselineError(
            f"{asset.tag}: only {int(usable.sum())} complete feature windows without data-quality flags or "
            f"fault labels among the {len(ends)} windows of {asset.asset_type.window_s} s between "
            f"{local_text(start)} and {local_text(end)} (need at least {MIN_WINDOWS}; the others have "
            "gaps, flags or overlap a fault or a faulty sensor's readings)"
        ) from None
    if mode == PER_ASSET_POOLED:
        own = (result, calibration_span(ends[usable], float(asset.asset_type.window_s)))
        result = pool_with_fleet(asset.asset_type, names, {asset.pk: own})[asset.pk]
    return names, result, count, _trends(asset, names, ends[usable], X[usable])


def _calibration(X: np.ndarray, mode: str) -> tuple[np.ndarray | Calibration, int]:
    """(mean vector or the asset's own robust Calibration, window count) of its usable windows ``X``; a
    pooled mode's own calibration is pooled by the caller (``pool_with_fleet``)."""
    if is_robust(mode):
        calibration = robust_calibration(X)
        return calibration, calibration.count
    return mean_vector(X)


@dataclass(frozen=True)
class PooledCalibration:
    """A "per_asset_pooled" calibration as stored: the one applied (``applied``) and what it was made of,
    the asset's own robust calibration and its time span (which later assets' pooling reads)."""

    applied: Calibration
    own: Calibration
    span_s: float


def pool_with_fleet(
    asset_type, names: list[str], owns: Mapping[int, tuple[Calibration, float]]
) -> dict[int, PooledCalibration]:
    """asset id -> its pooled calibration over ``names``: its own calibration and span (``owns``) pooled
    (detection.baseline.pooled) with the OWN calibrations of its fleet, which is the other assets in
    ``owns`` (calibrating together, e.g. a training fleet) and every other active asset of ``asset_type``
    with a current pooled calibration (its newest one sharing most of ``names``; its stored own scale and
    span, never its pooled scale). Each feature is pooled with the members that have it; an asset with no
    fleet keeps its own scale. Stored calibrations of other assets are read, never changed."""
    window_s, step_s = float(asset_type.window_s), float(asset_type.step_s)
    wanted = set(names)
    stored: dict[int, tuple[int, AssetBaseline]] = {}
    rows = AssetBaseline.objects.filter(
        asset__asset_type=asset_type, asset__is_active=True, mode=PER_ASSET_POOLED, is_current=True
    ).exclude(asset_id__in=list(owns))
    for row in rows.order_by("-created_at", "-id"):
        shared = len(wanted.intersection(row.feature_names))
        if shared and row.own_scale and row.own_span_s is not None:
            if row.asset_id not in stored or shared > stored[row.asset_id][0]:
                stored[row.asset_id] = (shared, row)
    fleet = [
        (list(row.feature_names), Calibration(row.vector, row.own_scale, row.window_count), row.own_span_s)
        for _, row in stored.values()
    ]
    out = {}
    for asset_id, (own, span) in owns.items():
        others = [(names, calibration, s) for k, (calibration, s) in owns.items() if k != asset_id]
        applied = _pool_features(names, own, span, [*others, *fleet], window_s, step_s)
        out[asset_id] = PooledCalibration(applied, own, float(span))
    return out


def _pool_features(
    names: list[str],
    own: Calibration,
    span_s: float,
    members: Sequence[tuple[list[str], Calibration, float]],
    window_s: float,
    step_s: float,
) -> Calibration:
    """``own`` (over ``names``) pooled with ``members`` (feature names, own calibration, span), each
    feature with the members that have it (pooling is per feature, so this is ``pooled`` of each group of
    features with the same members)."""
    positions = [{name: i for i, name in enumerate(member[0])} for member in members]
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, name in enumerate(names):
        groups.setdefault(tuple(i for i, pos in enumerate(positions) if name in pos), []).append(j)
    scale = np.empty(len(names), dtype=np.float64)
    for having, columns in groups.items():
        fleet = [
            (members[i][1].subset([positions[i][names[j]] for j in columns]), members[i][2]) for i in having
        ]
        scale[columns] = pooled(own.subset(columns), span_s, fleet, window_s, step_s).scale
    return Calibration(own.location, scale, own.count)


def _trends(asset, names: list[str], ends: np.ndarray, X: np.ndarray) -> list[LevelTrend]:
    """The sensors whose level moved steadily through the calibration windows (a warning on the page)."""
    return level_trends(ends, X, names, float(asset.asset_type.window_s))


def store(
    asset,
    names: list[str],
    vector: np.ndarray | Calibration | PooledCalibration,
    *,
    start: datetime,
    end: datetime,
    window_count: int,
    source: str,
    actor=None,
    trends: Sequence[LevelTrend] = (),
) -> AssetBaseline:
    """Make this the asset's current baseline for `names` (a Calibration: its robust one; a
    PooledCalibration: its pooled one, with its own), keeping the previous one of that mode as history."""
    own: Calibration | None = None
    span_s = None
    if isinstance(vector, PooledCalibration):
        mode, own, span_s, vector = PER_ASSET_POOLED, vector.own, vector.span_s, vector.applied
    else:
        mode = PER_ASSET_ROBUST if isinstance(vector, Calibration) else PER_ASSET
    robust = isinstance(vector, Calibration)
    with transaction.atomic():
        retire_current(asset, names, mode)
        return AssetBaseline.objects.create(
            asset=asset,
            feature_names=list(names),
            mode=mode,
            vector=[float(value) for value in (vector.location if robust else vector)],
            scale=[float(value) for value in vector.scale] if robust else [],
            own_scale=[float(value) for value in own.scale] if own is not None else [],
            own_span_s=span_s,
            start=start,
            end=end,
            window_count=window_count,
            trends=[trend.to_json() for trend in trends],
            source=source,
            created_by=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
        )


def calibrate(
    asset,
    feature_names: list[str] | None,
    start: datetime,
    end: datetime,
    *,
    actor=None,
    source: str = BaselineSource.MANUAL,
    mode: str = PER_ASSET,
) -> AssetBaseline:
    """Calibrate and store the asset's baseline of `mode` over [start, end] (see ``measure``); a period
    overlapping a FAULT label of the asset is refused (a BaselineError naming the label)."""
    check_no_fault(asset, start, end)
    names, vector, count, trends = _measure(asset, feature_names, start, end, mode)
    return store(
        asset,
        names,
        vector,
        start=start,
        end=end,
        window_count=count,
        source=source,
        actor=actor,
        trends=trends,
    )


def local_text(moment: datetime, zone: tzinfo | None = None) -> str:
    """A time in a message as the recalibration form takes it: ``zone`` (default the current, the site's,
    time zone), to the minute ("2026-12-05 21:59"), not an ISO string with microseconds."""
    return f"{timezone.localtime(moment, zone):%Y-%m-%d %H:%M}"


def label_words(label: Label, zone: tzinfo) -> str:
    """A label as an engineer knows it: its fault in words (or its note) and its span on the site's clock
    ("the bearing wear fault labelled 2026-01-05 09:03 to 09:04 (Europe/Berlin)"), not its database id."""
    if label.fault_type:
        what = f"the {fault_type_words(label.fault_type, label.asset.asset_type)} fault"
    elif label.note.strip():
        note = " ".join(label.note.split())
        what = f'the fault "{note[:57] + "..." if len(note) > 60 else note}"'
    else:
        what = "a fault"
    start, end = local_text(label.start, zone), local_text(label.end, zone)
    # The end's date is said only when it is not the start's.
    end = end[11:] if end[:10] == start[:10] else end
    return f"{what} labelled {start} to {end} ({zone})"


def check_no_fault(asset, start: datetime, end: datetime) -> None:
    """BaselineError naming the first FAULT label of the asset that overlaps [start, end], if any."""
    labels = fault_labels_in(asset, start, end)
    if labels:
        more = (
            f" and {len(labels) - 1} more fault label{'s' if len(labels) > 2 else ''}"
            if len(labels) > 1
            else ""
        )
        raise BaselineError(
            f"{asset.tag}: the period overlaps {label_words(labels[0], asset.site.zone)}{more}; "
            "choose a period of normal running"
        )


@dataclass(frozen=True)
class Recalibration:
    """What ``recalibrate`` stored: the new calibration rows and the thresholds set per robust version."""

    baselines: list[AssetBaseline]
    thresholds: list[AssetThreshold]
    in_use: bool = True  # False: no version in use on the type scores against a per-asset calibration


def modes_in_use(asset_type_id: int) -> list[str]:
    """The baseline modes the versions in use on the asset type score against (what ``recalibrate``
    calibrates; none: only the mean vector, for versions to come)."""
    return [mode for mode in MODES if versions_in_use(asset_type_id, mode)]


def recalibrate(
    asset,
    start: datetime,
    end: datetime,
    *,
    actor=None,
    feature_names: list[str] | None = None,
    dry_run: bool = False,
) -> Recalibration:
    """Recalibrate the asset from a chosen normal period (see the module docstring): every mode the
    baselined versions in use on its type need (the mean vector when none is robust), and the asset's
    thresholds for every robust version in use. Nothing is stored when any part fails (BaselineError).
    ``dry_run``: every step runs and raises as it would, and nothing is kept (a form's check before it
    saves: the rows returned are rolled back)."""
    needed = modes_in_use(asset.asset_type_id)
    modes = needed or [PER_ASSET]
    with transaction.atomic():
        rows = [calibrate(asset, feature_names, start, end, actor=actor, mode=mode) for mode in modes]
        made: list[AssetThreshold] = []
        for row in rows:
            if row.robust:
                versions = versions_in_use(asset.asset_type_id, row.mode)
                made += set_asset_thresholds(asset, row, versions, start, end, actor=actor)
        if dry_run:
            transaction.set_rollback(True)
    return Recalibration(rows, made, in_use=bool(needed))


def auto_calibrate(
    asset, names: list[str], until_s: float | None = None, mode: str = PER_ASSET
) -> AssetBaseline | None:
    """Calibrate from the asset's first VIGIL_BASELINE_WINDOWS usable windows (complete, unflagged, outside
    fault and faulty-sensor labels), or None while it has too few (see the module docstring); a robust calibration also sets
    the asset's thresholds for the robust versions in use of its mode. Safe to race: the loser of the unique
    constraint reads the winner's row. A pooled calibration is pooled against the fleet's stored own ones."""
    return auto_calibrate_many([asset], names, {asset.pk: until_s}, mode).get(asset.pk)


def auto_calibrate_many(
    assets: Sequence[Any],
    names: list[str],
    until_s: Mapping[int, float | None] | None = None,
    mode: str = PER_ASSET,
) -> dict[int, AssetBaseline]:
    """``auto_calibrate`` of several assets of one type (asset id -> its row; those with too few windows
    are left out); a pooled mode pools the assets calibrating here together and with the fleet's stored own
    calibrations (``pool_with_fleet``), as training's fleet is. ``until_s``: asset id -> the time up to
    which its windows may be read (default: all)."""
    firsts = {}
    for asset in assets:
        chosen = _first_windows(asset, names, (until_s or {}).get(asset.pk))
        if chosen is not None:
            firsts[asset.pk] = (asset, *chosen)
    if not firsts:
        return {}
    made = {pk: _calibration(X, mode)[0] for pk, (_, _, X) in firsts.items()}
    if mode == PER_ASSET_POOLED:
        window_s = float(assets[0].asset_type.window_s)
        owns = {pk: (made[pk], calibration_span(ends, window_s)) for pk, (_, ends, _) in firsts.items()}
        made = pool_with_fleet(assets[0].asset_type, names, owns)  # type: ignore[assignment]
    rows = {pk: _store_auto(asset, names, ends, X, made[pk], mode) for pk, (asset, ends, X) in firsts.items()}
    return {pk: row for pk, row in rows.items() if row is not None}


def _first_windows(asset, names: list[str], until_s: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(ends, X) of the asset's first VIGIL_BASELINE_WINDOWS usable windows, or None while it has fewer."""
    n = int(settings.VIGIL_BASELINE_WINDOWS)
    asset_type = asset.asset_type
    window_s, step_s = float(asset_type.window_s), float(asset_type.step_s)
    sensor_roles, _ = role_sensors(asset, {role_of(name) for name in names})
    firsts = (
        Reading.objects.filter(sensor_id__in=list(sensor_roles))
        .values("sensor_id")
        .annotate(first=Min("ts"))
        .values_list("first", flat=True)
    )
    firsts = list(firsts)
    if len(firsts) < len(set(sensor_roles.values())) or not firsts:
        return None  # a sensor the model reads has never reported
    begin = max(firsts)
    span = window_s + step_s * (n - 1)
    stop = begin + timedelta(seconds=2 * span)  # room for windows lost to gaps
    # and for the windows of faults (and faulty sensors' readings) labelled there, which never calibrate
    for label in fault_labels_in(asset, begin, stop, NOT_NORMAL):
        stop += min(label.end, stop) - max(label.start, begin) + timedelta(seconds=window_s)
    if until_s is not None:
        if until_s < begin.timestamp() + span:
            return None  # cannot hold n windows yet: no need to read anything
        stop = min(stop, datetime.fromtimestamp(until_s, tz=dt_timezone.utc))
    ends, X, usable = calibration_windows(asset, names, begin, stop)
    chosen = np.flatnonzero(usable)[:n]
    if len(chosen) < n:
        return None
    return ends[chosen], X[chosen]


def _store_auto(
    asset,
    names: list[str],
    ends: np.ndarray,
    X: np.ndarray,
    vector: np.ndarray | Calibration | PooledCalibration,
    mode: str,
) -> AssetBaseline | None:
    """Store an automatic calibration made from the windows (ends, X) and, for a robust one, set the
    asset's thresholds for the versions in use of its mode (the race's loser reads the winner's row)."""
    window_s = float(asset.asset_type.window_s)
    period_end = datetime.fromtimestamp(float(ends[-1]), tz=dt_timezone.utc)
    period_start = datetime.fromtimestamp(float(ends[0]) - window_s, tz=dt_timezone.utc)
    try:
        row = store(
            asset,
            names,
            vector,
            start=period_start,
            end=period_end,
            window_count=len(X),
            source=BaselineSource.AUTO,
            trends=_trends(asset, names, ends, X),
        )
        if row.robust:
            versions = versions_in_use(asset.asset_type_id, mode)
            try:
                set_asset_thresholds(asset, row, versions, period_start, period_end)
            except BaselineError:
                # The calibration stands; the versions' own thresholds apply until a recalibration.
                logger.warning("asset %s: no calibrated thresholds", asset.tag, exc_info=True)
        return row
    except IntegrityError:
        # Another worker calibrated the asset at the same moment; use its row.
        return AssetBaseline.objects.filter(
            asset=asset, features_key=features_key(names), mode=mode, is_current=True
        ).first()


# --- per-asset thresholds -----------------------------------------------------------------------------------


def versions_in_use(asset_type_id: int, mode: str | None = None) -> list[ModelVersion]:
    """The champion and shadow versions of the asset type (not quarantined), only those of `mode`."""
    versions = ModelVersion.objects.filter(
        asset_type_id=asset_type_id,
        status__in=[ModelStatus.CHAMPION, ModelStatus.SHADOW],
        quarantined_at__isnull=True,
    ).order_by("status", "pk")
    return [v for v in versions if mode is None or (v.output_spec or {}).get("baseline") == mode]


def threshold_rule(version: ModelVersion) -> ThresholdRule:
    """The rule the version's thresholds were set with (its training params)."""
    return ThresholdRule.from_params((version.provenance or {}).get("params") or {})


def overlap(asset_type) -> float:
    """How many windows each window overlaps (window_s / step_s): the dependence asset_thresholds counts."""
    return float(asset_type.window_s) / float(asset_type.step_s)


def thresholds_from_scores(version: ModelVersion, scores: np.ndarray) -> AssetThresholds:
    """One asset's thresholds for a version from scores of its normal windows, by the version's rule."""
    return asset_thresholds(
        scores,
        threshold_rule(version),
        (version.open_threshold, version.clear_threshold),
        overlap=overlap(version.asset_type),
    )


def store_thresholds(
    asset_id: int,
    version: ModelVersion,
    found: AssetThresholds,
    calibration: AssetBaseline | None,
    *,
    actor=None,
) -> AssetThreshold:
    """Make `found` the asset's current thresholds for the version (the previous row is kept as history)."""
    with transaction.atomic():
        AssetThreshold.objects.filter(asset_id=asset_id, model_version=version, is_current=True).update(
            is_current=False
        )
        return AssetThreshold.objects.create(
            asset_id=asset_id,
            model_version=version,
            calibration=calibration,
            open_threshold=found.open_threshold,
            clear_threshold=found.clear_threshold,
            window_count=found.count,
            source=found.source,
            created_by=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
        )


def set_asset_thresholds(
    asset,
    row: AssetBaseline,
    versions: list[ModelVersion],
    start: datetime,
    end: datetime,
    *,
    actor=None,
) -> list[AssetThreshold]:
    """For each robust version: score the asset's usable windows of [start, end] through the version's
    pipeline with the calibration `row` and store the thresholds they give (see ``thresholds_from_scores``).
    BaselineError when a version cannot score them."""
    made = []
    for version in versions:
        names = list(version.feature_spec)
        if not row.covers(names):
            continue
        ends, X, usable = calibration_windows(asset, names, start, end)
        calibration = Calibration(row.vector_for(names), scale_for(row, names), row.window_count)
        scores = np.zeros(0)
        if usable.any():
            try:
                pipeline = Pipeline.from_spec(names, version.output_spec)
                model = cache.loaded(version)
                if pipeline.peers:
                    inputs = _peer_calibration_inputs(asset, version, calibration, ends, X, start, end)
                    kept = usable & ~np.isnan(inputs).any(axis=1)
                    scores = pipeline.score(model, inputs[kept])
                else:
                    scores = pipeline.score(model, apply_baseline(X[usable], calibration))
            except Exception as exc:  # a damaged artifact, a spec it cannot honour: named, never a 500
                raise BaselineError(f"{version} cannot score the period: {exc}") from None
        made.append(
            store_thresholds(asset.pk, version, thresholds_from_scores(version, scores), row, actor=actor)
        )
    return made


def _peer_calibration_inputs(
    asset,
    version: ModelVersion,
    calibration: Calibration,
    ends: np.ndarray,
    X: np.ndarray,
    start: datetime,
    end: datetime,
) -> np.ndarray:
    """A peer-relative version's input of the asset's windows (NaN rows where too few peers have a window):
    the asset with ``calibration`` against the assets of its type on its site with their current ones."""
    peers = list(
        type(asset)
        .objects.filter(asset_type=asset.asset_type, site=asset.site, is_active=True)
        .exclude(pk=asset.pk)
    )
    names = list(version.feature_spec)
    calibrations: dict[int, Calibration] = current_steps(version, [peer.pk for peer in peers])  # type: ignore[assignment]
    inputs = {}
    for peer in peers:
        if peer.pk in calibrations:
            peer_ends, peer_X = asset_windows(peer, names, start, end)
            complete = np.isfinite(peer_X).all(axis=1)
            inputs[peer.pk] = (peer_ends[complete], peer_X[complete])
    rows = np.flatnonzero(np.isfinite(X).all(axis=1))
    inputs[asset.pk] = (ends[rows], X[rows])
    calibrations[asset.pk] = calibration
    out = np.full(X.shape, np.nan, dtype=np.float32)
    kept_ends, Z = peer_relative(inputs, calibrations)[asset.pk]
    out[rows[np.isin(ends[rows], kept_ends)]] = Z
    return out


# --- reading ------------------------------------------------------------------------------------------------


def current_baselines(
    asset_ids: Collection[int], names: list[str], mode: str = PER_ASSET
) -> dict[int, AssetBaseline]:
    """asset id -> its newest current baseline of `mode` covering every name, in one query."""
    wanted = set(names)
    out: dict[int, AssetBaseline] = {}
    rows = AssetBaseline.objects.filter(asset_id__in=list(asset_ids), is_current=True, mode=mode).order_by(
        "asset_id", "-created_at", "-id"
    )
    for row in rows:
        if row.asset_id not in out and wanted <= set(row.feature_names):
            out[row.asset_id] = row
    return out


def as_step(row: AssetBaseline, names: list[str]) -> np.ndarray | Calibration:
    """The row as the pipeline's per-asset step over `names`: a float64 vector or a Calibration."""
    if row.robust:
        return Calibration(row.vector_for(names), scale_for(row, names), row.window_count)
    return np.asarray(row.vector_for(names), dtype=np.float64)


def current_vectors(asset_ids: Collection[int], names: list[str]) -> dict[int, np.ndarray]:
    """asset id -> float64 baseline vector in the order of `names` (assets without one are left out)."""
    return {asset_id: as_step(row, names) for asset_id, row in current_baselines(asset_ids, names).items()}


def current_steps(version: ModelVersion, asset_ids: Collection[int]) -> dict[int, np.ndarray | Calibration]:
    """asset id -> the version's per-asset step for it (a vector or a Calibration, by its mode); assets
    without a current calibration of that mode are left out. Empty for a version without the step."""
    mode = baseline_mode(version.output_spec)
    if mode is None:
        return {}
    names = list(version.feature_spec)
    return {
        asset_id: as_step(row, names) for asset_id, row in current_baselines(asset_ids, names, mode).items()
    }


def version_vector(version: ModelVersion, asset) -> np.ndarray | Calibration | None:
    """The step the version's input is baselined with for this asset (a vector, or a Calibration for a
    robust version); None for an unbaselined version. Raises BaselineError when the version is baselined
    and the asset has no calibration yet."""
    if baseline_mode(version.output_spec) is None:
        return None
    step = current_steps(version, [asset.pk]).get(asset.pk)
    if step is None:
        raise BaselineError(f"{asset} has no baseline for {version} yet (it is still calibrating)")
    return step


def calibrated_thresholds(version: ModelVersion, asset_ids: Collection[int]) -> dict[int, AssetThreshold]:
    """asset id -> the version's current AssetThreshold for it, only where it was made with the asset's
    current calibration (a recalibration the version missed leaves the version's thresholds in force)."""
    if not is_robust(baseline_mode(version.output_spec)):
        return {}
    rows = AssetThreshold.objects.filter(
        model_version=version, asset_id__any=asset_ids, is_current=True, calibration__is_current=True
    )
    return {row.asset_id: row for row in rows}


def thresholds_in_force(
    version: ModelVersion,
    asset_ids: Collection[int],
    overrides: dict[int, tuple[float, float]] | None = None,
) -> dict[int, tuple[float, float]]:
    """asset id -> (open, clear) where it differs from the version's: a noise-control override (given by
    the caller, alerts' rows) before the asset's calibrated thresholds; absent assets use the version's."""
    out = {
        asset_id: (row.open_threshold, row.clear_threshold)
        for asset_id, row in calibrated_thresholds(version, asset_ids).items()
    }
    out.update(overrides or {})
    return out


def unsettled_words(asset, trends: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """A calibration's stored level trends (``AssetBaseline.trends``) in the roles' words, one per sensor:
    the asset page, the recalibration message and ``calibrate_baseline`` say them."""
    if not trends:
        return ()
    roles = {
        key: (label, unit) for key, label, unit in asset.asset_type.roles.values_list("key", "label", "unit")
    }
    return tuple(
        calibration_trend_text(*roles.get(t["role"], (t["role"], "")), t["first"], t["last"]) for t in trends
    )


def calibration_status(asset) -> list[BaselineStatus]:
    """For the asset page: each baselined version scoring the asset's type, the calibration it uses and,
    for a robust version, the asset's calibrated thresholds for it (None: the version's)."""
    out = []
    for version in versions_in_use(asset.asset_type_id):
        mode = baseline_mode(version.output_spec)
        if mode is None:
            continue
        row = current_baselines([asset.pk], list(version.feature_spec), mode).get(asset.pk)
        thresholds = calibrated_thresholds(version, [asset.pk]).get(asset.pk)
        out.append(BaselineStatus(version, row, thresholds))
    return out
