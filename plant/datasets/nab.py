"""NAB (Numenta Anomaly Benchmark v1.1): univariate series with labelled anomaly windows, read in place.

A pure reader (no database): ``settings.VIGIL_DATA_DIR / "nab"`` holds ``data/<category>/<file>.csv``
(``timestamp,value``), ``labels/combined_windows.json`` (the scoring windows) and
``labels/combined_labels.json`` (the labelled anomaly points), as described in its ``DATASET_CARD.md``.
Series are named as NAB names them, ``"<category>/<file>.csv"``. Timestamps carry no zone and are read as
UTC; everything comes back as float epoch seconds so the scorer and the feature code share one time axis.

Rows stay in file order, because NAB scores by row position (window widths, the probationary period and
false-positive distances are counted in rows). Two real files do not have strictly increasing time:
``ec2_request_latency_system_failure.csv`` repeats 03:00 eleven times (a daylight-saving artefact) and
``machine_temperature_system_failure.csv`` steps back 55 minutes at line 10151. Code that needs increasing
time (feature windows) takes ``NabSeries.increasing()``, the rows that move time forward.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from plant.datasets import DatasetFormatError, DatasetMissing, text_lines

WINDOWS_FILE = "labels/combined_windows.json"
LABELS_FILE = "labels/combined_labels.json"


class UnknownSeries(DatasetMissing):
    """A series or category name that the dataset does not have; the message lists the ones it does."""


@dataclass
class NabSeries:
    """One NAB file: ``ts`` (float epoch seconds, UTC, in file order) and ``values`` of equal length,
    the scoring ``windows`` as (start, end) epoch pairs in time order, and the labelled ``anomalies``."""

    name: str
    ts: np.ndarray
    values: np.ndarray
    windows: list[tuple[float, float]] = field(default_factory=list)
    anomalies: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def increasing(self) -> np.ndarray:
        """Boolean mask of the rows whose time is later than every row before them (the first row included):
        the series with repeated or backward timestamps dropped, still in file order."""
        if len(self.ts) == 0:
            return np.zeros(0, dtype=bool)
        previous_max = np.maximum.accumulate(np.concatenate(([-np.inf], self.ts[:-1])))
        return self.ts > previous_max


def data_dir(base: Path | str | None = None) -> Path:
    """``<VIGIL_DATA_DIR>/nab``; raises DatasetMissing naming the path when it (or its data/) is not there."""
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / "nab"
    if not (path / "data").is_dir():
        raise DatasetMissing(
            f"NAB data not found at {path / 'data'}: set VIGIL_DATA_DIR to the folder holding nab/data "
            "(see ../shared/data/nab/DATASET_CARD.md)"
        )
    return path


def list_categories(*, base: Path | str | None = None) -> list[str]:
    """The category folders present under ``nab/data`` (e.g. ``realKnownCause``), sorted; hidden folders
    (``.ipynb_checkpoints``, ``.git``) are no category."""
    return sorted(
        p.name for p in (data_dir(base) / "data").iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def list_series(category: str = "realKnownCause", *, base: Path | str | None = None) -> list[str]:
    """Names (``"<category>/<file>.csv"``) of the category's series, sorted; unknown category -> UnknownSeries."""
    root = data_dir(base)
    folder = root / "data" / category
    if "/" in category or category.startswith(".") or not folder.is_dir():
        known = ", ".join(list_categories(base=base)) or "none"
        raise UnknownSeries(f"unknown NAB category {category!r}; categories in {root / 'data'}: {known}")
    return [f"{category}/{p.name}" for p in sorted(folder.glob("*.csv"))]


def read_series(name: str, *, base: Path | str | None = None) -> NabSeries:
    """Read one series with its windows and anomaly labels.

    Raises UnknownSeries (listing the known names) for a name the dataset does not have, DatasetMissing when
    the label files are absent, and DatasetFormatError naming file and line for a malformed row.
    """
    root = data_dir(base)
    category, _, _ = name.partition("/")
    path = root / "data" / name
    if ".." in Path(name).parts or not name.endswith(".csv") or not path.is_file():
        try:
            known = [s for c in list_categories(base=base) for s in list_series(c, base=base)]
        except UnknownSeries:
            known = []
        raise UnknownSeries(
            f"unknown NAB series {name!r} (looked for {path}); known series: {', '.join(known) or 'none'}"
        )
    ts, values = _read_csv(path)
    windows_by_name = _read_json(root / WINDOWS_FILE)
    labels_by_name = _read_json(root / LABELS_FILE)
    if name not in windows_by_name:
        raise DatasetFormatError(f"{root / WINDOWS_FILE} has no windows for {name!r}")
    windows: list[tuple[float, float]] = []
    for i, pair in enumerate(windows_by_name[name]):
        if not isinstance(pair, list) or len(pair) != 2:
            raise DatasetFormatError(
                f"{root / WINDOWS_FILE}: window {i} of {name!r} is not a [start, end] pair"
            )
        start = _epoch(pair[0], f"{root / WINDOWS_FILE}: window {i} of {name!r}")
        end = _epoch(pair[1], f"{root / WINDOWS_FILE}: window {i} of {name!r}")
        if end < start:
            raise DatasetFormatError(f"{root / WINDOWS_FILE}: window {i} of {name!r} ends before it starts")
        windows.append((start, end))
    windows.sort()
    anomalies = sorted(
        _epoch(stamp, f"{root / LABELS_FILE}: label of {name!r}") for stamp in labels_by_name.get(name, [])
    )
    return NabSeries(name=name, ts=ts, values=values, windows=windows, anomalies=anomalies)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ts: list[float] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not part of the header
        reader = csv.reader(text_lines(handle, path))
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["timestamp", "value"]:
            raise DatasetFormatError(f"{path} line 1: expected the header 'timestamp,value', got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 2:
                raise DatasetFormatError(f"{path} line {line}: expected 2 columns, got {len(row)}")
            stamp = _epoch(row[0], f"{path} line {line}")
            try:
                value = float(row[1])
            except ValueError:
                raise DatasetFormatError(f"{path} line {line}: value {row[1]!r} is not a number") from None
            if not np.isfinite(value):
                raise DatasetFormatError(f"{path} line {line}: value {row[1]!r} is not finite")
            ts.append(stamp)
            values.append(value)
    if not ts:
        raise DatasetFormatError(f"{path}: no rows after the header")
    return np.asarray(ts, dtype=float), np.asarray(values, dtype=float)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetMissing(f"NAB label file not found at {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path}: not UTF-8 text") from None
    if not isinstance(document, dict):
        raise DatasetFormatError(f"{path}: expected an object of series name -> list")
    return document


def _epoch(stamp: Any, where: str) -> float:
    try:
        moment = datetime.fromisoformat(str(stamp).strip())
    except ValueError:
        raise DatasetFormatError(f"{where}: timestamp {stamp!r} is not a date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_timezone.utc)
    return moment.timestamp()
