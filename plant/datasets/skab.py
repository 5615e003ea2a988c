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
(``"valve1"``) or one file (``"valve1/3"``); ``load_skab`` is what ``manage.py load_dataset skab`` calls. The
database side (asset type, sensors, chunked ingest, label sync) is ``plant.datasets.common``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
from django.conf import settings

from plant.choices import LabelKind
from plant.datasets import DatasetFormatError, DatasetMissing, UnknownSubset, text_lines
from plant.datasets.common import (
    AssetTypeSpec,
    LabelSpec,
    LoadResult,
    Progress,
    RoleSpec,
    Unit,
    check_limit,
    ensure_site,
    segments,
    store_units,
)
from plant.datasets.common import ensure_asset as _ensure_asset
from plant.datasets.common import ensure_asset_type as _ensure_asset_type
from plant.models import Asset, AssetType, Site
from plant.params import is_digits

__all__ = ["DatasetMissing", "LoadResult", "load_skab", "list_files", "read_run", "read_units"]

SITE = ("skab", "SKAB testbed (Skoltech)")
ANOMALY_FREE = "anomaly-free"
SUBSETS = (ANOMALY_FREE, "valve1", "valve2", "other")  # SKAB v0.9's folders (ordering; any folder is read)
WINDOW_S, STEP_S = 30, 5  # as the SKAB evaluation (models_registry.evaluation.skab_protocol)

# Units from the card; ranges are physical limits of the testbed with margin, not the observed range.
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("accel1", "Vibration RMS, accelerometer 1", "g", 0.0, 5.0, "Accelerometer1RMS"),
    RoleSpec("accel2", "Vibration RMS, accelerometer 2", "g", 0.0, 5.0, "Accelerometer2RMS"),
    RoleSpec("current", "Motor current", "A", 0.0, 20.0, "Current"),
    # Gauge pressure after the pump; the transmitter reads slightly below zero at rest.
    RoleSpec("pressure", "Pressure after the pump", "bar", -2.0, 10.0, "Pressure"),
    RoleSpec("temperature", "Motor body temperature", "°C", 0.0, 150.0, "Temperature"),
    RoleSpec("thermocouple", "Fluid temperature in the loop", "°C", 0.0, 100.0, "Thermocouple"),
    RoleSpec("voltage", "Motor voltage", "V", 0.0, 400.0, "Voltage"),
    RoleSpec("flow", "Volume flow rate", "l/min", 0.0, 500.0, "Volume Flow RateRMS"),
)
TESTBED = AssetTypeSpec(
    slug="skab-testbed",
    name="SKAB testbed pump",
    description="Water-circulation testbed pump of the Skoltech Anomaly Benchmark (SKAB), 1 Hz.",
    roles=ROLES,
    window_s=WINDOW_S,
    step_s=STEP_S,
)
ASSET_TYPE = (TESTBED.slug, TESTBED.name)

# Fault type of each file's anomaly, from the card ("other" differs per experiment number).
SUBSET_FAULTS = {"valve1": "valve_closed_inlet", "valve2": "valve_closed_outlet"}
OTHER = "other"
OTHER_FAULTS = (
    ((1, 4), "fluid_leak_or_addition"),
    ((5, 9), "rotor_imbalance"),
    ((10, 11), "water_level_increase"),
    ((12, 13), "cavitation"),
    ((14, 14), "hot_water_supply"),
)
# Copies of SKAB number the "other" experiments in two ways: v0.9's data/README (and the card) 1..14;
# older upstream commits and copies made from them 9..23, where the data/README of that time names 13-17
# rotor imbalance, 18-19 water level, 20-21 cavitation and 22 hot water (the card's 5..14, 8 numbers up).
# Its 9-12 and 23 are not described there, so they keep the folder's name: a run is never given another
# experiment's fault. A folder's numbering is read from the numbers it holds (``other_numbering``).
UPSTREAM_OTHER_FAULTS = (
    ((13, 17), "rotor_imbalance"),
    ((18, 19), "water_level_increase"),
    ((20, 21), "cavitation"),
    ((22, 22), "hot_water_supply"),
)
CARD, UPSTREAM = "1..14", "9..23"
_UPSTREAM_FIRST = 9


def other_numbering(numbers: Iterable[int]) -> str | None:
    """Which numbering a folder of "other" experiments uses: CARD when it holds a number below 9 and none
    above 14, UPSTREAM when it holds none below 9 and one above 14, else None (ambiguous: e.g. only 9..14,
    which the two numberings use for different experiments)."""
    numbers = set(numbers)
    if not numbers:
        return None
    low, high = min(numbers), max(numbers)
    if low < _UPSTREAM_FIRST and high <= 14:
        return CARD
    if low >= _UPSTREAM_FIRST and high > 14:
        return UPSTREAM
    return None


def other_fault(number: int | None, numbering: str | None) -> str:
    """The fault type of experiment ``number`` of the "other" folder under ``numbering`` (OTHER when the
    numbering is unknown or does not describe that number)."""
    table = {CARD: OTHER_FAULTS, UPSTREAM: UPSTREAM_OTHER_FAULTS}.get(numbering or "", ())
    for (low, high), fault in table:
        if number is not None and low <= number <= high:
            return fault
    return OTHER


@dataclass(frozen=True)
class SkabFile:
    """One experiment file: ``subset`` is its folder, ``number`` its file stem (None for anomaly-free)."""

    subset: str
    number: int | None
    path: Path
    # The "other" folder's numbering (``other_numbering`` of the numbers the folder holds; list_files sets it).
    numbering: str | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        return self.subset if self._name is None else f"{self.subset}/{self._name}"

    @property
    def tag(self) -> str:
        return self.subset if self._name is None else f"{self.subset}-{self._name}"

    @property
    def _name(self) -> str | None:
        # A normal-run file is named by its folder ("anomaly-free"); another file there (a copy holding
        # more than one normal run) by its stem, so every file keeps a distinct asset.
        if self.number is None:
            return None if self.path.stem == self.subset else self.path.stem
        return str(self.number)

    @property
    def fault_type(self) -> str:
        if self.subset in SUBSET_FAULTS:
            return SUBSET_FAULTS[self.subset]
        if self.subset == OTHER:
            return other_fault(self.number, self.numbering)
        # A folder SKAB v0.9 does not have: its name is the best statement of the fault its runs share.
        return self.subset


@dataclass
class SkabRun:
    """The columns of one file: epoch seconds, values per role key, and the 0/1 labels (None if unlabelled)."""

    ts: np.ndarray
    values: dict[str, np.ndarray]
    anomaly: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ts)


def data_dir(base: Path | str | None = None) -> Path:
    """``<VIGIL_DATA_DIR>/skab/data``; raises DatasetMissing naming the path when it is not there."""
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / "skab" / "data"
    if not path.is_dir():
        setting = "--data-dir" if base is not None else "VIGIL_DATA_DIR"
        raise DatasetMissing(
            f"SKAB data not found at {path}: set {setting} to the folder holding skab/data "
            "(see ../shared/data/skab/DATASET_CARD.md)"
        )
    return path


def list_files(selectors: Iterable[str] | None = None, *, base: Path | str | None = None) -> list[SkabFile]:
    """The files named by ``selectors`` (all files when None), anomaly-free first, then by subset and number.

    An unknown selector raises UnknownSubset listing the subsets and files there are.
    """
    root = data_dir(base)
    found: list[SkabFile] = []
    # Every sub-folder with CSV files is a subset (a copy may hold fewer or more than SKAB v0.9's four):
    # a folder of numbered files is a subset of experiments, the anomaly-free folder one normal run.
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        subset = folder.name
        for path in folder.glob("*.csv"):
            if subset == ANOMALY_FREE:
                found.append(SkabFile(subset, None, path))
            elif is_digits(path.stem):  # "².csv" is no experiment (int() refuses it)
                found.append(SkabFile(subset, int(path.stem), path))
    numbering = other_numbering(f.number for f in found if f.subset == OTHER and f.number is not None)
    found = [replace(f, numbering=numbering) if f.subset == OTHER else f for f in found]
    found.sort(key=lambda f: (_subset_order(f.subset), -1 if f.number is None else f.number, f.path.name))
    if selectors is None:
        return found
    chosen: list[SkabFile] = []
    for selector in selectors:
        selector = selector.strip().strip("/")
        matches = [f for f in found if selector in (f.ref, f.subset, f.tag)]
        if not matches:
            raise UnknownSubset(
                f"no SKAB file matches {selector!r} under {root}; valid subsets: {valid_subsets(found)}"
            )
        chosen.extend(f for f in matches if f not in chosen)
    return chosen


def _subset_order(subset: str) -> tuple[int, str]:
    # SKAB's own subsets in their usual order, then any other folder by name.
    return (SUBSETS.index(subset), "") if subset in SUBSETS else (len(SUBSETS), subset)


def subsets_of(files: Sequence[SkabFile]) -> list[str]:
    """The subsets the files come from, in list_files' order."""
    return sorted({f.subset for f in files}, key=_subset_order)


def valid_subsets(files: Sequence[SkabFile]) -> str:
    """E.g. "anomaly-free, valve1 (valve1/0..15), valve2 (valve2/0..3)"."""
    parts = []
    for subset in subsets_of(files):
        mine = [f for f in files if f.subset == subset]
        numbers = [f.number for f in mine if f.number is not None]
        if not numbers:
            parts.append(", ".join(f.ref for f in mine))
        else:
            parts.append(f"{subset} ({subset}/{min(numbers)}..{max(numbers)})")
    return ", ".join(parts) or "none"


def read_run(path: Path, *, max_rows: int | None = None) -> SkabRun:
    """Parse one ``;``-separated SKAB file (pure; no database). ``max_rows`` keeps the first rows only."""
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the header
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetMissing(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(text_lines(handle, path), delimiter=";")
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
    if not stamps:
        raise DatasetFormatError(f"{path}: no rows after the header")
    # Checked as floats: 1e400 or nan would not convert to int8.
    if has_labels and not np.all(np.isin(np.asarray(labels, dtype=np.float64), (0, 1))):
        raise DatasetFormatError(f"{path}: the anomaly column holds values other than 0 and 1")
    anomaly = np.asarray(labels, dtype=np.int8) if has_labels else None
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
    return segments(ts, anomaly)


def run_labels(file: SkabFile, run: SkabRun) -> list[LabelSpec]:
    """A fault label per run of anomaly = 1 (fault type from the subset), a normal label per run of 0."""
    labels = []
    for start, end, value in label_segments(run.ts, run.anomaly):
        note = f"SKAB {file.ref}: anomaly={value}" if run.anomaly is not None else "SKAB anomaly-free run"
        kind = LabelKind.FAULT if value else LabelKind.NORMAL
        labels.append(LabelSpec(start, end, kind, file.fault_type if value else "", note=note))
    return labels


def to_unit(file: SkabFile, run: SkabRun, *, limited: bool = False) -> Unit:
    """The file's unit; ``limited``: ``run`` is the file's first rows only, so are its labels."""
    where = f"normal run {file.ref}" if file.number is None else f"{file.subset} experiment {file.number}"
    if file.ref == ANOMALY_FREE:
        where = "anomaly-free run"
    return Unit(
        ref=file.ref,
        tag=file.tag,
        name=f"SKAB {where}",
        location=f"SKAB {file.ref}",
        asset_type=TESTBED,
        ts=run.ts,
        values=run.values,
        labels=run_labels(file, run),
        sample_period_s=1.0,
        labels_until=float(run.ts[-1]) if limited and len(run.ts) else None,
    )


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """The selected files as units (pure: no database); ``limit_rows`` keeps the first rows of each file."""
    check_limit(limit_rows)
    return [
        to_unit(file, read_run(file.path, max_rows=limit_rows), limited=limit_rows is not None)
        for file in list_files(selectors, base=base)
    ]


def ensure_asset_type() -> AssetType:
    """The ``skab-testbed`` asset type with its 8 roles (created once; an edited window is kept)."""
    return _ensure_asset_type(TESTBED)


def ensure_asset(file: SkabFile, *, site: Site | None = None, asset_type: AssetType | None = None) -> Asset:
    """The asset of one file with a sensor per role (idempotent)."""
    site = site or ensure_site(*SITE)
    empty = SkabRun(ts=np.zeros(0), values={role.key: np.zeros(0) for role in ROLES}, anomaly=None)
    return _ensure_asset(site, asset_type or ensure_asset_type(), to_unit(file, empty))[0]


def load_skab(
    selectors: Sequence[str] | None = None,
    *,
    max_rows: int | None = None,
    base: Path | str | None = None,
    progress: Callable[[LoadResult], None] | Progress | None = None,
) -> list[LoadResult]:
    """Load the selected SKAB files (all when None). ``progress`` is a bar advanced per ingest chunk, or a
    callable called after each file."""
    units = read_units(selectors, limit_rows=max_rows, base=base)
    if isinstance(progress, Progress):
        return store_units(SITE, units, progress=progress)
    return store_units(SITE, units, on_result=progress)
