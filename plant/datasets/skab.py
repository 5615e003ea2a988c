"""SKAB (Skoltech Anomaly Benchmark): one asset per experiment file of the testbed pump, 8 sensors at 1 Hz.

Reads ``settings.VIGIL_DATA_DIR / "skab" / "data"`` in place (GPL-3.0 data: never copied into the repo).
Layout and semantics follow ``DATASET_CARD.md`` there:

* asset type ``skab-testbed`` with the 8 sensor roles below (units from the card), 60 s windows every 10 s;
* site ``skab``; one asset per file, tagged ``<subset>-<file>`` (``valve1-3``) or ``anomaly-free``; sensor keys
  ``skab.<tag>.<role>``;
* readings through ``ingest_readings(None, ParsedBatch.from_arrays(...))``, so they get the same quality
  flags as API data; re-loading stores nothing twice (the ingest path counts duplicates);
* labels: every contiguous run of ``anomaly = 1`` becomes a fault Label (fault type from the file's
  subset), every run of ``anomaly = 0`` a normal Label, and the anomaly-free file one normal Label; source
  ``dataset``. Re-loading keeps identical labels and replaces only those that changed (e.g. another
  ``max_rows``). ``changepoint`` marks the same transitions and is not stored separately.

Timestamps in the files carry no zone; they are read as UTC. File selectors: ``"anomaly-free"``, a subset
(``"valve1"``) or one file (``"valve1/3"``); ``load_skab`` is what ``manage.py load_dataset skab`` calls.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from plant.choices import LabelKind, LabelSource
from plant.datasets import DatasetFormatError, DatasetMissing
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset, AssetType, Label, Sensor, SensorRole, Site

ASSET_TYPE = ("skab-testbed", "SKAB testbed pump")
SITE = ("skab", "SKAB testbed (Skoltech)")
ANOMALY_FREE = "anomaly-free"
SUBSETS = (ANOMALY_FREE, "valve1", "valve2", "other")
WINDOW_S, STEP_S = 60, 10


@dataclass(frozen=True)
class SkabRole:
    column: str
    key: str
    label: str
    unit: str
    valid_min: float  # physical limits of the testbed with margin, not the observed range
    valid_max: float


ROLES: tuple[SkabRole, ...] = (
    SkabRole("Accelerometer1RMS", "accel1", "Vibration RMS, accelerometer 1", "g", 0.0, 5.0),
    SkabRole("Accelerometer2RMS", "accel2", "Vibration RMS, accelerometer 2", "g", 0.0, 5.0),
    SkabRole("Current", "current", "Motor current", "A", 0.0, 20.0),
    # Gauge pressure after the pump; the transmitter reads slightly below zero at rest.
    SkabRole("Pressure", "pressure", "Pressure after the pump", "bar", -2.0, 10.0),
    SkabRole("Temperature", "temperature", "Motor body temperature", "°C", 0.0, 150.0),
    SkabRole("Thermocouple", "thermocouple", "Fluid temperature in the loop", "°C", 0.0, 100.0),
    SkabRole("Voltage", "voltage", "Motor voltage", "V", 0.0, 400.0),
    SkabRole("Volume Flow RateRMS", "flow", "Volume flow rate", "l/min", 0.0, 500.0),
)

# Fault type of each file's anomaly, from the card ("other" differs per experiment number).
SUBSET_FAULTS = {"valve1": "valve_closed_inlet", "valve2": "valve_closed_outlet"}
OTHER_FAULTS = (
    ((1, 4), "fluid_leak_or_addition"),
    ((5, 9), "rotor_imbalance"),
    ((10, 11), "water_level_increase"),
    ((12, 13), "cavitation"),
    ((14, 14), "hot_water_supply"),
)
_CHUNK_ROWS = 5000  # 40,000 readings per ingest batch


@dataclass(frozen=True)
class SkabFile:
    """One experiment file: ``subset`` is its folder, ``number`` its file stem (None for anomaly-free)."""

    subset: str
    number: int | None
    path: Path

    @property
    def ref(self) -> str:
        return self.subset if self.number is None else f"{self.subset}/{self.number}"

    @property
    def tag(self) -> str:
        return self.subset if self.number is None else f"{self.subset}-{self.number}"

    @property
    def fault_type(self) -> str:
        if self.subset in SUBSET_FAULTS:
            return SUBSET_FAULTS[self.subset]
        for (low, high), fault in OTHER_FAULTS:
            if self.number is not None and low <= self.number <= high:
                return fault
        return "anomaly"


@dataclass
class SkabRun:
    """The columns of one file: epoch seconds, values per role key, and the 0/1 labels (None if unlabelled)."""

    ts: np.ndarray
    values: dict[str, np.ndarray]
    anomaly: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class LoadResult:
    """What loading one file did."""

    ref: str
    asset: Asset
    rows: int
    accepted: int
    duplicates: int
    rejected: int
    labels_created: int
    labels_deleted: int
    label_counts: dict[str, int] = field(default_factory=dict)


def data_dir(base: Path | str | None = None) -> Path:
    """``<VIGIL_DATA_DIR>/skab/data``; raises DatasetMissing naming the path when it is not there."""
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / "skab" / "data"
    if not path.is_dir():
        raise DatasetMissing(
            f"SKAB data not found at {path}: set VIGIL_DATA_DIR to the folder holding skab/data "
            "(see ../shared/data/skab/DATASET_CARD.md)"
        )
    return path


def list_files(selectors: Iterable[str] | None = None, *, base: Path | str | None = None) -> list[SkabFile]:
    """The files named by ``selectors`` (all files when None), anomaly-free first, then by subset and number."""
    root = data_dir(base)
    found: list[SkabFile] = []
    for subset in SUBSETS:
        folder = root / subset
        if not folder.is_dir():
            continue
        for path in folder.glob("*.csv"):
            if subset == ANOMALY_FREE:
                found.append(SkabFile(subset, None, path))
            elif path.stem.isdigit():
                found.append(SkabFile(subset, int(path.stem), path))
    found.sort(key=lambda f: (SUBSETS.index(f.subset), -1 if f.number is None else f.number))
    if selectors is None:
        return found
    chosen: list[SkabFile] = []
    for selector in selectors:
        selector = selector.strip().strip("/")
        matches = [f for f in found if selector in (f.ref, f.subset, f.tag)]
        if not matches:
            available = ", ".join(sorted({f.subset for f in found})) or "none"
            raise DatasetMissing(
                f"no SKAB file matches {selector!r} under {root} (subsets there: {available}; "
                "use e.g. 'anomaly-free', 'valve1' or 'valve1/3')"
            )
        chosen.extend(f for f in matches if f not in chosen)
    return chosen


def read_run(path: Path, *, max_rows: int | None = None) -> SkabRun:
    """Parse one ``;``-separated SKAB file (pure; no database). ``max_rows`` keeps the first rows only."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetMissing(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle, delimiter=";")
        header = [cell.strip() for cell in next(reader, [])]
        wanted = ["datetime", *(role.column for role in ROLES)]
        missing = [name for name in wanted if name not in header]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {', '.join(missing)}")
        position = {name: header.index(name) for name in header}
        has_labels = "anomaly" in position
        stamps: list[float] = []
        columns: list[list[float]] = [[] for _ in ROLES]
        labels: list[float] = []
        for line, record in enumerate(reader, start=2):
            if max_rows is not None and len(stamps) >= max_rows:
                break
            if not record:
                continue
            try:
                moment = datetime.strptime(record[position["datetime"]].strip(), "%Y-%m-%d %H:%M:%S")
                stamps.append(moment.replace(tzinfo=dt_timezone.utc).timestamp())
                for column, role in zip(columns, ROLES, strict=True):
                    column.append(float(record[position[role.column]]))
                if has_labels:
                    labels.append(float(record[position["anomaly"]]))
            except (ValueError, IndexError) as exc:
                raise DatasetFormatError(f"{path}, line {line}: {exc}") from None
    anomaly = np.asarray(labels, dtype=np.int8) if has_labels else None
    if anomaly is not None and not np.all(np.isin(anomaly, (0, 1))):
        raise DatasetFormatError(f"{path}: the anomaly column holds values other than 0 and 1")
    return SkabRun(
        ts=np.asarray(stamps, dtype=np.float64),
        values={role.key: np.asarray(column, dtype=np.float64) for role, column in zip(ROLES, columns)},
        anomaly=anomaly,
    )


def label_segments(ts: np.ndarray, anomaly: np.ndarray | None) -> list[tuple[float, float, int]]:
    """Contiguous runs of equal labels as (first ts, last ts, label); an unlabelled run is one normal run."""
    if len(ts) == 0:
        return []
    if anomaly is None:
        return [(float(ts[0]), float(ts[-1]), 0)]
    starts = np.flatnonzero(np.r_[True, anomaly[1:] != anomaly[:-1]])
    ends = np.r_[starts[1:], len(anomaly)] - 1
    return [(float(ts[s]), float(ts[e]), int(anomaly[s])) for s, e in zip(starts, ends, strict=True)]


def ensure_asset_type() -> AssetType:
    """The ``skab-testbed`` asset type with its 8 roles (created once; an edited window is kept)."""
    asset_type, _ = AssetType.objects.get_or_create(
        slug=ASSET_TYPE[0],
        defaults={
            "name": ASSET_TYPE[1],
            "description": "Water-circulation testbed pump of the Skoltech Anomaly Benchmark (SKAB), 1 Hz.",
            "window_s": WINDOW_S,
            "step_s": STEP_S,
        },
    )
    for role in ROLES:
        SensorRole.objects.update_or_create(
            asset_type=asset_type, key=role.key, defaults={"label": role.label, "unit": role.unit}
        )
    return asset_type


def ensure_asset(file: SkabFile, *, site: Site | None = None, asset_type: AssetType | None = None) -> Asset:
    """The asset of one file with a sensor per role (idempotent)."""
    site = site or Site.objects.get_or_create(slug=SITE[0], defaults={"name": SITE[1]})[0]
    asset_type = asset_type or ensure_asset_type()
    where = "anomaly-free run" if file.number is None else f"{file.subset} experiment {file.number}"
    asset, _ = Asset.objects.get_or_create(
        site=site,
        tag=file.tag,
        defaults={"asset_type": asset_type, "name": f"SKAB {where}", "location": f"SKAB {file.ref}"},
    )
    roles = {role.key: role for role in asset_type.roles.all()}
    for role in ROLES:
        Sensor.objects.update_or_create(
            key=f"{site.slug}.{file.tag}.{role.key}",
            defaults={
                "asset": asset,
                "role": roles[role.key],
                "unit": role.unit,
                "valid_min": role.valid_min,
                "valid_max": role.valid_max,
                "sample_period_s": 1.0,
            },
        )
    return asset


def load_file(file: SkabFile, *, max_rows: int | None = None, site: Site | None = None) -> LoadResult:
    """Create the file's asset and sensors, ingest its readings and (re)write its dataset labels."""
    run = read_run(file.path, max_rows=max_rows)
    asset = ensure_asset(file, site=site)
    keys = {role.key: f"{asset.site.slug}.{file.tag}.{role.key}" for role in ROLES}
    accepted = duplicates = rejected = 0
    for start in range(0, len(run), _CHUNK_ROWS):
        part = slice(start, start + _CHUNK_ROWS)
        n = len(run.ts[part])
        batch = ParsedBatch.from_arrays(
            [keys[role.key] for role in ROLES for _ in range(n)],
            np.tile(run.ts[part], len(ROLES)),
            np.concatenate([run.values[role.key][part] for role in ROLES]),
        )
        result = ingest_readings(None, batch)
        accepted += result.accepted
        duplicates += result.duplicates
        rejected += len(result.rejected)
    created, deleted, counts = _write_labels(asset, file, run)
    return LoadResult(
        ref=file.ref,
        asset=asset,
        rows=len(run),
        accepted=accepted,
        duplicates=duplicates,
        rejected=rejected,
        labels_created=created,
        labels_deleted=deleted,
        label_counts=counts,
    )


def load_skab(
    selectors: Sequence[str] | None = None,
    *,
    max_rows: int | None = None,
    base: Path | str | None = None,
    progress: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Load the selected SKAB files (all when None); ``progress`` is called after each file."""
    files = list_files(selectors, base=base)
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    site = Site.objects.get_or_create(slug=SITE[0], defaults={"name": SITE[1]})[0]
    ensure_asset_type()
    results = []
    for file in files:
        result = load_file(file, max_rows=max_rows, site=site)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _write_labels(asset: Asset, file: SkabFile, run: SkabRun) -> tuple[int, int, dict[str, int]]:
    def when(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, tz=dt_timezone.utc)

    wanted = {}
    for start, end, value in label_segments(run.ts, run.anomaly):
        kind = LabelKind.FAULT if value else LabelKind.NORMAL
        fault_type = file.fault_type if value else ""
        wanted[(when(start), when(end), str(kind), fault_type)] = Label(
            asset=asset,
            start=when(start),
            end=when(end),
            kind=kind,
            fault_type=fault_type,
            source=LabelSource.DATASET,
            note=f"SKAB {file.ref}: anomaly={value}" if run.anomaly is not None else "SKAB anomaly-free run",
        )
    with transaction.atomic():
        existing = {
            (label.start, label.end, label.kind, label.fault_type): label.pk
            for label in Label.objects.filter(asset=asset, source=LabelSource.DATASET)
        }
        stale = [pk for key, pk in existing.items() if key not in wanted]
        Label.objects.filter(pk__in=stale).delete()
        Label.objects.bulk_create([label for key, label in wanted.items() if key not in existing])
    counts = {"fault": sum(1 for key in wanted if key[2] == LabelKind.FAULT)}
    counts["normal"] = len(wanted) - counts["fault"]
    return len([key for key in wanted if key not in existing]), len(stale), counts
