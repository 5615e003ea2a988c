"""NASA C-MAPSS turbofan run-to-failure data: the pure reader (no database).

Reads ``settings.VIGIL_DATA_DIR / "cmapss"`` in place (see DATASET_CARD.md there). Each subset has three
space-separated files without a header: ``train_FDxxx.txt`` and ``test_FDxxx.txt`` with 26 columns (unit,
cycle, 3 operational settings, 21 sensors; one row per flight cycle) and ``RUL_FDxxx.txt`` with the true
remaining cycles after the last test row of each test unit, one unit per line in unit order.

``available_subsets()`` lists the subsets the folder holds (every ``FDnnn`` with all three files; the NASA
release has FD001–FD004, a copy may hold fewer or more). ``read_subset("FD001")`` returns every unit as a cycles × 24 float array (settings then sensors, in the order
of ``COLUMNS``) in cycle order. Train units run to failure, so the RUL at row ``i`` of a unit of ``n`` rows is
``n - 1 - i``; ``train_rul`` returns that series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings

from plant.datasets import DatasetFormatError, DatasetMissing

# The subsets staged with the product's data folder; the loader and the evaluations take whatever subsets
# the folder holds (available_subsets()).
SUBSETS = ("FD001", "FD002", "FD003")
SUBSET_NAME = re.compile(r"FD\d{3}")
SETTINGS = ("setting_1", "setting_2", "setting_3")
SENSORS = tuple(f"s{i}" for i in range(1, 22))
COLUMNS = (*SETTINGS, *SENSORS)
# Physical meaning of s1..s21 (Saxena et al. 2008), for labels and reports.
SENSOR_NAMES = dict(
    zip(
        SENSORS,
        (
            "T2",
            "T24",
            "T30",
            "T50",
            "P2",
            "P15",
            "P30",
            "Nf",
            "Nc",
            "epr",
            "Ps30",
            "phi",
            "NRf",
            "NRc",
            "BPR",
            "farB",
            "htBleed",
            "Nf_dmd",
            "PCNfR_dmd",
            "W31",
            "W32",
        ),  # fmt: skip
        strict=True,
    )
)
_FILE_COLUMNS = 2 + len(COLUMNS)


@dataclass
class CmapssSubset:
    """One subset: ``train``/``test`` map unit id → cycles × 24 array; ``test_rul`` the true RUL at the last
    test cycle of each test unit."""

    name: str
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    train: dict[int, np.ndarray] = field(default_factory=dict)
    test: dict[int, np.ndarray] = field(default_factory=dict)
    test_rul: dict[int, int] = field(default_factory=dict)

    def train_rul(self, unit: int) -> np.ndarray:
        """True RUL of every row of a train unit (it fails after its last cycle): n-1, …, 1, 0."""
        return np.arange(len(self.train[unit]) - 1, -1, -1, dtype=np.float64)

    def test_rul_series(self, unit: int) -> np.ndarray:
        """True RUL of every row of a test unit, counting back from the RUL after its last cycle."""
        n = len(self.test[unit])
        return self.test_rul[unit] + np.arange(n - 1, -1, -1, dtype=np.float64)


def data_dir(base: Path | str | None = None) -> Path:
    """``<VIGIL_DATA_DIR>/cmapss``; raises DatasetMissing naming the path when it is not there."""
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / "cmapss"
    if not path.is_dir():
        raise DatasetMissing(
            f"C-MAPSS data not found at {path}: set VIGIL_DATA_DIR to the folder holding cmapss/ "
            "(see ../shared/data/cmapss/DATASET_CARD.md)"
        )
    return path


FILE_KINDS = ("train", "test", "RUL")


def subset_files(base: Path | str | None = None) -> dict[str, list[str]]:
    """Every ``FDnnn`` any of whose files the data directory holds, in name order, with the files of its
    three (train, test, RUL) that are missing: an empty list for a complete subset."""
    root = data_dir(base)
    kinds: dict[str, set[str]] = {}
    for path in root.glob("*_FD*.txt"):
        match = re.fullmatch(r"(train|test|RUL)_(FD\d{3})\.txt", path.name)
        if match and path.is_file():
            kinds.setdefault(match.group(2), set()).add(match.group(1))
    return {
        name: [f"{kind}_{name}.txt" for kind in FILE_KINDS if kind not in kinds[name]]
        for name in sorted(kinds)
    }


def incomplete_subsets(base: Path | str | None = None) -> dict[str, list[str]]:
    """The subsets of which the data directory holds some files but not all three: name → missing files."""
    return {name: missing for name, missing in subset_files(base).items() if missing}


def available_subsets(base: Path | str | None = None) -> tuple[str, ...]:
    """The subsets the data directory holds, in name order: every ``FDnnn`` whose train, test and RUL files
    are all there. DatasetMissing when the directory is missing or holds none (naming any incomplete one)."""
    files = subset_files(base)
    names = tuple(name for name, missing in files.items() if not missing)
    if not names:
        partial = "; ".join(f"{name} lacks {', '.join(missing)}" for name, missing in files.items())
        raise DatasetMissing(
            f"{data_dir(base)} holds no C-MAPSS subset (train_FDnnn.txt, test_FDnnn.txt, RUL_FDnnn.txt)"
            + (f": {partial}" if partial else "")
        )
    return names


def read_subset(subset: str, *, base: Path | str | None = None) -> CmapssSubset:
    """Read one subset (``"FD001"``, any ``FDnnn`` the folder holds) from the data directory; pure, no database."""
    name = subset.strip().upper()
    if not SUBSET_NAME.fullmatch(name):
        raise DatasetMissing(f"unknown C-MAPSS subset {subset!r}: subsets are named FD001, FD002, ...")
    try:
        root = data_dir(base)
    except DatasetMissing as exc:
        raise DatasetMissing(f"C-MAPSS subset {name}: {exc}") from None
    train = read_units(_existing(root / f"train_{name}.txt"))
    test_path = _existing(root / f"test_{name}.txt")
    test = read_units(test_path)
    rul_path = _existing(root / f"RUL_{name}.txt")
    ruls = read_rul(rul_path)
    if len(ruls) != len(test):
        raise DatasetFormatError(
            f"{rul_path}: {len(ruls)} RUL values for the {len(test)} units of {test_path}"
        )
    # RUL line i belongs to the i-th test unit in unit order.
    test_rul = {unit: rul for unit, rul in zip(sorted(test), ruls, strict=True)}
    return CmapssSubset(name=name, columns=list(COLUMNS), train=train, test=test, test_rul=test_rul)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise DatasetMissing(f"C-MAPSS file not found: {path}")
    return path


def read_units(path: Path) -> dict[int, np.ndarray]:
    """Parse a train/test file into unit → cycles × 24 array, checking each unit's cycles run 1, 2, 3, …"""
    rows: dict[int, list[list[float]]] = {}
    last_cycle: dict[int, int] = {}
    with path.open(encoding="ascii", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != _FILE_COLUMNS:
                raise DatasetFormatError(
                    f"{path}, line {line_no}: {len(cells)} columns, expected {_FILE_COLUMNS}"
                )
            try:
                unit, cycle = int(cells[0]), int(cells[1])
                values = [float(cell) for cell in cells[2:]]
            except ValueError as exc:
                raise DatasetFormatError(f"{path}, line {line_no}: {exc}") from None
            if not all(math.isfinite(value) for value in values):
                raise DatasetFormatError(f"{path}, line {line_no}: a non-finite value")
            expected = last_cycle.get(unit, 0) + 1
            if cycle != expected:
                raise DatasetFormatError(
                    f"{path}, line {line_no}: unit {unit} cycle {cycle} where cycle {expected} was expected"
                )
            last_cycle[unit] = cycle
            rows.setdefault(unit, []).append(values)
    if not rows:
        raise DatasetFormatError(f"{path}: no rows")
    return {unit: np.asarray(rows[unit], dtype=np.float64) for unit in sorted(rows)}


def read_rul(path: Path) -> list[int]:
    """Parse an ``RUL_FDxxx.txt`` file: one non-negative integer per line."""
    values: list[int] = []
    with path.open(encoding="ascii", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                value = int(text)
            except ValueError:
                raise DatasetFormatError(f"{path}, line {line_no}: {text!r} is not an integer RUL") from None
            if value < 0:
                raise DatasetFormatError(f"{path}, line {line_no}: negative RUL {value}")
            values.append(value)
    return values
