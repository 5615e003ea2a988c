"""What every dataset loader shares: asset type / asset / sensor creation, chunked ingest through
``plant.ingest.ingest_readings`` (the API's code path), dataset-label synchronisation and a progress bar.

A dataset module reads its files into ``Unit`` objects (one per asset: columns of epoch seconds and values
per role, plus the labels the dataset gives), with no database access; ``store_units`` writes them. Loading
is idempotent: readings go through the ingest path, which stores a (sensor, ts) once and counts the rest as
duplicates, and labels are synchronised by (start, end, kind, fault type, reason).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TextIO

import numpy as np
from django.db import transaction

from plant.choices import LabelKind, LabelSource
from plant.ingest import ParsedBatch, ingest_readings
from plant.ingest.hooks import bulk_load
from plant.models import Asset, AssetType, Label, Sensor, SensorRole, Site

CHUNK_READINGS = 40_000  # readings per ingest call: large enough to amortise, small enough for SQLite
# Datasets are recorded history on their own time axis (C-MAPSS from 2000-01-01, SKAB and AI4I from 2020):
# the gateways' age limit (VIGIL_INGEST_MAX_AGE_DAYS) does not apply to them; the storage range still does.
HISTORY_MAX_AGE_S = math.inf


@dataclass(frozen=True)
class RoleSpec:
    """A sensor role of a dataset's asset type, with the unit and physically plausible range of its sensors.

    ``column`` is the name of the column in the dataset file, when it differs from ``key``; ``required``
    False for a role only some units have (plant.SensorRole.required).
    """

    key: str
    label: str
    unit: str
    valid_min: float | None = None
    valid_max: float | None = None
    column: str = ""
    required: bool = True


@dataclass(frozen=True)
class AssetTypeSpec:
    """The asset type a dataset's assets belong to: its roles and the shape of its feature windows."""

    slug: str
    name: str
    description: str
    roles: tuple[RoleSpec, ...]
    window_s: int = 60
    step_s: int = 10

    def role(self, key: str) -> RoleSpec:
        return next(role for role in self.roles if role.key == key)


@dataclass(frozen=True)
class LabelSpec:
    """A dataset label on a time range of one asset (epoch seconds, UTC)."""

    start: float
    end: float
    kind: str
    fault_type: str = ""
    reason: str = ""
    note: str = ""


@dataclass
class Unit:
    """One asset's data as read from the dataset: ``values`` maps role key → column aligned with ``ts``.

    Only the roles present in ``values`` get a sensor, so one asset type can serve files with fewer channels.
    ``role_ranges`` overrides the type's plausible range per role (e.g. NAB series of different quantities).
    """

    ref: str
    tag: str
    name: str
    location: str
    asset_type: AssetTypeSpec
    ts: np.ndarray
    values: dict[str, np.ndarray]
    labels: list[LabelSpec] = field(default_factory=list)
    sample_period_s: float = 1.0
    role_ranges: dict[str, tuple[str, float | None, float | None]] = field(default_factory=dict)
    # A --limit-rows slice of a dataset whose labels come from the rows read (SKAB's anomaly column, AI4I's
    # failure flags): its labels are known only up to here (epoch s), see sync_labels' ``until``.
    labels_until: float | None = None

    @property
    def readings(self) -> int:
        return len(self.ts) * len(self.values)


@dataclass
class LoadResult:
    """What loading one unit did: rows read, readings stored / already there / refused, labels changed."""

    ref: str
    asset: Asset
    rows: int
    accepted: int
    duplicates: int
    rejected: int
    labels_created: int
    labels_deleted: int
    label_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.ref}: {self.rows} rows -> {self.accepted} new readings, {self.duplicates} already stored,"
            f" {self.rejected} rejected; labels {self.label_counts.get('fault', 0)} fault /"
            f" {self.label_counts.get('normal', 0)} normal (+{self.labels_created} -{self.labels_deleted})"
        )


class Progress:
    """A textual progress bar with percent, redrawn on one line of ``stream`` (stderr) when it moves."""

    def __init__(self, total: int, stream: TextIO | None = None, label: str = "loading", width: int = 30):
        self.total = max(int(total), 0)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.width = width
        self.done = 0
        self._shown = -1
        self._started = time.monotonic()

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + int(n))
        percent = 100 if self.total == 0 else int(100 * self.done / self.total)
        if percent != self._shown:
            self._shown = percent
            filled = self.width * percent // 100
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% ({self.done}/{self.total})")
            self.stream.flush()

    def close(self) -> None:
        if self._shown < 100:
            self.advance(self.total - self.done)
        self.stream.write(f" in {time.monotonic() - self._started:.1f} s\n")
        self.stream.flush()


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=dt_timezone.utc)


def ensure_site(slug: str, name: str) -> Site:
    return Site.objects.get_or_create(slug=slug, defaults={"name": name})[0]


def ensure_asset_type(spec: AssetTypeSpec) -> AssetType:
    """The asset type with its roles (created once; window settings an engineer edited are kept)."""
    asset_type, _ = AssetType.objects.get_or_create(
        slug=spec.slug,
        defaults={
            "name": spec.name,
            "description": spec.description,
            "window_s": spec.window_s,
            "step_s": spec.step_s,
        },
    )
    for role in spec.roles:
        SensorRole.objects.update_or_create(
            asset_type=asset_type,
            key=role.key,
            defaults={"label": role.label, "unit": role.unit, "required": role.required},
        )
    return asset_type


def sensor_key(site: Site, tag: str, role: str) -> str:
    return f"{site.slug}.{tag}.{role}"


def ensure_asset(site: Site, asset_type: AssetType, unit: Unit) -> tuple[Asset, dict[str, str]]:
    """The unit's asset with one sensor per role it has (idempotent); returns it and role → sensor key."""
    asset, _ = Asset.objects.get_or_create(
        site=site,
        tag=unit.tag,
        defaults={"asset_type": asset_type, "name": unit.name[:120], "location": unit.location[:200]},
    )
    roles = {role.key: role for role in asset_type.roles.all()}
    keys = {}
    for key in unit.values:
        spec = unit.asset_type.role(key)
        unit_name, low, high = unit.role_ranges.get(key, (spec.unit, spec.valid_min, spec.valid_max))
        keys[key] = sensor_key(site, unit.tag, key)
        Sensor.objects.update_or_create(
            key=keys[key],
            defaults={
                "asset": asset,
                "role": roles[key],
                "unit": unit_name,
                "valid_min": low,
                "valid_max": high,
                "sample_period_s": unit.sample_period_s,
            },
        )
    return asset, keys


def ingest_columns(
    keys: dict[str, str],
    ts: np.ndarray,
    values: dict[str, np.ndarray],
    *,
    advance: Callable[[int], None] | None = None,
) -> tuple[int, int, int]:
    """Ingest aligned columns in chunks through ``ingest_readings`` (no site scope: a trusted caller).

    Returns (accepted, duplicates, rejected). Scoring marks are set but no task is sent per chunk: the
    sweep picks the assets up, so a bulk load does not flood the broker (or wait for a missing one).
    """
    roles = list(values)
    rows_per_chunk = max(1, CHUNK_READINGS // max(1, len(roles)))
    accepted = duplicates = rejected = 0
    with bulk_load():
        for start in range(0, len(ts), rows_per_chunk):
            part = slice(start, start + rows_per_chunk)
            n = len(ts[part])
            batch = ParsedBatch.from_arrays(
                [keys[role] for role in roles for _ in range(n)],
                np.tile(ts[part], len(roles)),
                np.concatenate([values[role][part] for role in roles]),
            )
            result = ingest_readings(None, batch, max_age_s=HISTORY_MAX_AGE_S)
            accepted += result.accepted
            duplicates += result.duplicates
            rejected += len(result.rejected)
            if advance is not None:
                advance(n * len(roles))
    return accepted, duplicates, rejected


def sync_labels(
    asset: Asset, specs: Sequence[LabelSpec], *, keep_others: bool = False, until: float | None = None
) -> tuple[int, int, dict[str, int]]:
    """Make the asset's dataset labels exactly ``specs``: keep identical ones, delete stale, create new.

    Returns (created, deleted, counts per kind). Labels of other sources (feedback, manual) are untouched;
    with ``keep_others`` nothing is deleted (a replay adds the labels of each run it sends).

    ``until`` (epoch s): the specs are a preview's, known only up to then (Unit.labels_until). A stored
    label that starts later is left alone, and one that runs past it is the label a spec ending there was
    cut from: kept, not replaced by the shorter one. So loading the first rows again never loses the labels
    a longer load stored; inside the rows read, labels that no longer match are still replaced.
    """
    cut = None if until is None else utc(until)

    def seen(start: datetime, end: datetime, kind: str, fault_type: str, reason: str) -> tuple:
        return (start, end if cut is None else min(end, cut), kind, fault_type, reason)

    wanted: dict[tuple, Label] = {}
    for spec in specs:
        start, end = utc(spec.start), utc(max(spec.end, spec.start))
        key = seen(start, end, str(spec.kind), spec.fault_type, spec.reason)
        wanted[key] = Label(
            asset=asset,
            start=start,
            end=end,
            kind=spec.kind,
            fault_type=spec.fault_type[:60],
            reason=spec.reason[:60],
            source=LabelSource.DATASET,
            note=spec.note,
        )
    with transaction.atomic():
        existing = [
            (seen(label.start, label.end, label.kind, label.fault_type, label.reason), label.pk)
            for label in Label.objects.filter(asset=asset, source=LabelSource.DATASET)
            if cut is None or label.start <= cut
        ]
        stale = [] if keep_others else [pk for key, pk in existing if key not in wanted]
        Label.objects.filter(pk__in=stale).delete()
        stored = {key for key, _ in existing}
        new = [label for key, label in wanted.items() if key not in stored]
        Label.objects.bulk_create(new)
    counts = {"fault": sum(1 for key in wanted if key[2] == LabelKind.FAULT)}
    counts["normal"] = len(wanted) - counts["fault"]
    return len(new), len(stale), counts


def store_unit(site: Site, unit: Unit, *, advance: Callable[[int], None] | None = None) -> LoadResult:
    """Create the unit's asset type, asset and sensors, ingest its readings and synchronise its labels."""
    asset_type = ensure_asset_type(unit.asset_type)
    asset, keys = ensure_asset(site, asset_type, unit)
    accepted, duplicates, rejected = ingest_columns(keys, unit.ts, unit.values, advance=advance)
    created, deleted, counts = sync_labels(asset, unit.labels, until=unit.labels_until)
    return LoadResult(
        ref=unit.ref,
        asset=asset,
        rows=len(unit.ts),
        accepted=accepted,
        duplicates=duplicates,
        rejected=rejected,
        labels_created=created,
        labels_deleted=deleted,
        label_counts=counts,
    )


def store_units(
    site: tuple[str, str],
    units: Iterable[Unit],
    *,
    progress: Progress | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Store every unit on the dataset's site (created if needed); ``progress`` advances per chunk."""
    site_obj = ensure_site(*site)
    results = []
    for unit in units:
        result = store_unit(site_obj, unit, advance=progress.advance if progress else None)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def check_limit(limit_rows: int | None) -> None:
    if limit_rows is not None and limit_rows < 1:
        raise ValueError(f"--limit-rows must be at least 1, got {limit_rows}")


def segments(ts: np.ndarray, flags: np.ndarray) -> list[tuple[float, float, int]]:
    """Contiguous runs of equal flags as (first ts, last ts, flag)."""
    if len(ts) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, flags[1:] != flags[:-1]])
    ends = np.r_[starts[1:], len(flags)] - 1
    return [(float(ts[s]), float(ts[e]), int(flags[s])) for s, e in zip(starts, ends, strict=True)]
