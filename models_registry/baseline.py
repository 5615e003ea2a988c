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
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min

from detection.baseline import BaselineError, expects_baseline, mean_vector, period_mask
from detection.features import feature_names as all_feature_names
from detection.features import role_of
from models_registry.choices import ModelStatus
from models_registry.training_data import asset_windows_between
from plant.series import role_sensors
from models_registry.models import AssetBaseline, BaselineSource, ModelVersion, features_key
from plant.models import Reading


@dataclass(frozen=True)
class BaselineStatus:
    """One baselined version in use for an asset and the baseline it scores against (None: calibrating)."""

    version: ModelVersion
    baseline: AssetBaseline | None

    @property
    def calibrating(self) -> bool:
        return self.baseline is None

    @property
    def windows_needed(self) -> int:
        return int(settings.VIGIL_BASELINE_WINDOWS)


# --- the asset's windows --------------------------------------------------------------------------------------


def asset_windows(asset, names: list[str], start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(ends, X[:, names]) of the asset's production feature windows lying wholly inside [start, end]."""

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
    return np.asarray(windows.ends)[inside], windows.X[inside][:, columns]


# --- storing ------------------------------------------------------------------------------------------------


def retire_current(asset, names: list[str]) -> None:
    """The asset's current baseline for exactly `names` becomes history (call inside the new one's transaction)."""
    AssetBaseline.objects.filter(asset=asset, features_key=features_key(names), is_current=True).update(
        is_current=False
    )


def measure(
    asset, feature_names: list[str] | None, start: datetime, end: datetime
) -> tuple[list[str], np.ndarray, int]:
    """(feature names, mean vector, window count) of the asset over [start, end], without storing it
    (default features: its type's whole feature set). BaselineError names what is wrong."""
    if start >= end:
        raise BaselineError("the calibration period is empty: start must be before end")
    roles = list(asset.asset_type.roles.order_by("key").values_list("key", flat=True))
    names = list(feature_names or all_feature_names(roles))
    if not names:
        raise BaselineError(f"asset type {asset.asset_type.slug!r} has no sensor roles, so no features")
    ends, X = asset_windows(asset, names, start, end)
    try:
        vector, count = mean_vector(X)
    except BaselineError as exc:
        raise BaselineError(
            f"{asset.tag}: {exc} between {start.isoformat()} and {end.isoformat()} "
            f"({len(ends)} windows of {asset.asset_type.window_s} s lie in it, the others have gaps)"
        ) from None
    return names, vector, count


def store(
    asset,
    names: list[str],
    vector: np.ndarray,
    *,
    start: datetime,
    end: datetime,
    window_count: int,
    source: str,
    actor=None,
) -> AssetBaseline:
    """Make this the asset's current baseline for `names`, keeping the previous one as history."""
    with transaction.atomic():
        retire_current(asset, names)
        return AssetBaseline.objects.create(
            asset=asset,
            feature_names=list(names),
            vector=[float(value) for value in vector],
            start=start,
            end=end,
            window_count=window_count,
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
) -> AssetBaseline:
    """Calibrate and store the asset's baseline over [start, end] (see ``measure``)."""
    names, vector, count = measure(asset, feature_names, start, end)
    return store(asset, names, vector, start=start, end=end, window_count=count, source=source, actor=actor)


def auto_calibrate(asset, names: list[str], until_s: float | None = None) -> AssetBaseline | None:
    """Calibrate from the asset's first VIGIL_BASELINE_WINDOWS complete windows, or None while it has too few
    (see the module docstring). Safe to race: the loser of the unique constraint reads the winner's row."""

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
    if until_s is not None:
        if until_s < begin.timestamp() + span:
            return None  # cannot hold n windows yet: no need to read anything
        stop = min(stop, datetime.fromtimestamp(until_s, tz=dt_timezone.utc))
    ends, X = asset_windows(asset, names, begin, stop)
    complete = np.flatnonzero(np.isfinite(X).all(axis=1))[:n]
    if len(complete) < n:
        return None
    vector, count = mean_vector(X[complete])
    period_end = datetime.fromtimestamp(float(ends[complete[-1]]), tz=dt_timezone.utc)
    period_start = datetime.fromtimestamp(float(ends[complete[0]]) - window_s, tz=dt_timezone.utc)
    try:
        return store(
            asset,
            names,
            vector,
            start=period_start,
            end=period_end,
            window_count=count,
            source=BaselineSource.AUTO,
        )
    except IntegrityError:
        # Another worker calibrated the asset at the same moment; use its row.
        return AssetBaseline.objects.filter(
            asset=asset, features_key=features_key(names), is_current=True
        ).first()


# --- reading ------------------------------------------------------------------------------------------------


def current_baselines(asset_ids: Collection[int], names: list[str]) -> dict[int, AssetBaseline]:
    """asset id -> its newest current baseline covering every name, in one query."""
    wanted = set(names)
    out: dict[int, AssetBaseline] = {}
    rows = AssetBaseline.objects.filter(asset_id__in=list(asset_ids), is_current=True).order_by(
        "asset_id", "-created_at", "-id"
    )
    for row in rows:
        if row.asset_id not in out and wanted <= set(row.feature_names):
            out[row.asset_id] = row
    return out


def current_vectors(asset_ids: Collection[int], names: list[str]) -> dict[int, np.ndarray]:
    """asset id -> float64 baseline vector in the order of `names` (assets without one are left out)."""
    return {
        asset_id: np.asarray(row.vector_for(names), dtype=np.float64)
        for asset_id, row in current_baselines(asset_ids, names).items()
    }


def version_vector(version: ModelVersion, asset) -> np.ndarray | None:
    """The vector the version's input is baselined with for this asset; None for an unbaselined version.
    Raises BaselineError when the version is baselined and the asset has no baseline yet."""
    if not expects_baseline(version.output_spec):
        return None
    names = list(version.feature_spec)
    vector = current_vectors([asset.pk], names).get(asset.pk)
    if vector is None:
        raise BaselineError(f"{asset} has no baseline for {version} yet (it is still calibrating)")
    return vector


def calibration_status(asset) -> list[BaselineStatus]:
    """For the asset page: each baselined version scoring the asset's type and the baseline it uses."""

    versions = [
        version
        for version in ModelVersion.objects.filter(
            asset_type_id=asset.asset_type_id,
            status__in=[ModelStatus.CHAMPION, ModelStatus.SHADOW],
            quarantined_at__isnull=True,
        ).order_by("status", "pk")
        if expects_baseline(version.output_spec)
    ]
    return [
        BaselineStatus(version, current_baselines([asset.pk], list(version.feature_spec)).get(asset.pk))
        for version in versions
    ]
