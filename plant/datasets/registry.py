"""The loadable datasets by name, and the one function ``manage.py load_dataset`` calls."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from plant.datasets.common import LoadResult, Progress, store_units


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: the module whose ``read_units`` reads it, what ``--subset`` takes, and how time is mapped."""

    name: str
    module: str
    subsets: str
    time_note: str = ""


DATASETS = {
    "skab": DatasetEntry(
        "skab", "plant.datasets.skab", "anomaly-free, valve1, valve2, or one run like valve1/3"
    ),
    "cmapss": DatasetEntry(
        "cmapss",
        "plant.datasets.cmapss_loader",
        "any FDnnn the folder holds (FD001 ...), FD001/train, FD001/test, or one engine like FD001/train/17",
        "C-MAPSS cycles are stamped 1 cycle = 1 hour, cycle 1 at 2000-01-01 00:00 UTC",
    ),
    "nab": DatasetEntry(
        "nab",
        "plant.datasets.nab_loader",
        "any category the folder holds (realKnownCause, realTweets, ...), one series like "
        "realTweets/Twitter_volume_AAPL, or a stem alone like machine_temperature_system_failure",
    ),
    "ai4i": DatasetEntry(
        "ai4i",
        "plant.datasets.ai4i",
        "mill (the only one)",
        "AI4I rows are stamped one a minute: UDI n at 2020-01-01 00:00 UTC + (n - 1) min",
    ),
    "ims": DatasetEntry(
        "ims",
        "plant.datasets.ims",
        "any test the folder holds (test1, test2, ...), or one bearing like test2/1",
    ),
}


def site_of(name: str) -> tuple[str, str]:
    """(slug, name) of the site a dataset loads into."""
    return importlib.import_module(DATASETS[name].module).SITE


def load_dataset(
    name: str,
    subsets: Sequence[str] | None = None,
    *,
    limit_rows: int | None = None,
    base: Path | str | None = None,
    stream: TextIO | None = None,
) -> list[LoadResult]:
    """Read the selected part of a dataset, then store it with a progress bar on ``stream`` (stderr).

    Raises DatasetMissing (naming the path) when the files are absent, UnknownSubset (listing the valid
    ones) for a bad selector, DatasetFormatError for a malformed file and ValueError for a bad limit.
    """
    entry = DATASETS[name]
    module = importlib.import_module(entry.module)
    units = module.read_units(list(subsets) if subsets else None, limit_rows=limit_rows, base=base)
    progress = Progress(sum(unit.readings for unit in units), stream, label=f"{name}: ingesting")
    try:
        return store_units(module.SITE, units, progress=progress)
    finally:
        progress.close()
