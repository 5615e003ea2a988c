"""IMS bearing run-to-failure (NASA PCoE / Rexnord), as per-snapshot features: one asset per bearing.

Reads ``settings.VIGIL_DATA_DIR / "ims_bearing_features"`` in place (see DATASET_CARD.md there): one CSV per
test, a row per 1-s vibration snapshot (every 10 min; the first 43 files of test 1 every 5 min) with the
mean absolute acceleration (g) of each channel, stamped by the snapshot's file name (read as UTC).

* Test 1 (``test1``): 4 bearings with 2 channels each (x → role ``vibration``, y → ``vibration_y``).
* Test 2 (``test2``): 4 bearings with 1 channel each (``vibration``).
* Test 3 is kept back for acceptance evaluation; it loads too when its file is present, and so does any
  other ``<n>th_test_mean_abs_per_snapshot.csv`` (``test<n>``: channels split over the 4 bearings, no
  failure known).

Assets ``test1-bearing3`` etc. on site ``ims``. The trailing rows where the rig had stopped (every channel
≈ 0.001 g; the card says to trim them) are dropped. Labels (the card): the end of each test is a failure
of the bearings the IMS readme names — a fault Label on that bearing's last snapshot with the failure mode;
for test 2 bearing 1 the card also gives an onset (6-sigma rule on a 1-h rolling mean, 2004-02-16 04:12),
so its fault Label runs from there to the end.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
from django.conf import settings

from plant.choices import LabelKind
from plant.datasets import DatasetFormatError, DatasetMissing, UnknownSubset, text_lines
from plant.datasets.common import AssetTypeSpec, LabelSpec, RoleSpec, Unit, check_limit

SITE = ("ims", "IMS bearing test rig (Univ. Cincinnati)")
FOLDER = "ims_bearing_features"
SNAPSHOT_S = 600.0
STOPPED_G = 0.01  # every channel below this: the rig is stopped (the card: last rows ≈ 0.001 g)


@dataclass(frozen=True)
class ImsTest:
    """One run-to-failure test: its file, channels per bearing, and the failures the IMS readme reports."""

    name: str
    file: str
    channels_per_bearing: (
        int  # 0: not known up front (a test the IMS readme does not describe), see _bearings
    )
    failures: dict[int, str]  # bearing → fault type
    onsets: dict[int, tuple[str, str]]  # bearing → (onset UTC "YYYY-MM-DD HH:MM", how it was picked)


TESTS = {
    "test1": ImsTest(
        "test1",
        "1st_test_mean_abs_per_snapshot.csv",
        2,
        {3: "inner_race_defect", 4: "roller_element_defect"},
        {},
    ),
    "test2": ImsTest(
        "test2",
        "2nd_test_mean_abs_per_snapshot.csv",
        1,
        {1: "outer_race_failure"},
        {1: ("2004-02-16 04:12", "6-sigma rule on a 1-h rolling mean, baseline the first 200 snapshots")},
    ),
    # The IMS readme: "outer race failure occurred in bearing 3". Its stated recording period ends on
    # 2004-04-04, before the last snapshot files' names (2004-04-18, the card's span); the file names are
    # the stamps read here, so the end of the test is the last running snapshot's.
    "test3": ImsTest("test3", "3rd_test_mean_abs_per_snapshot.csv", 1, {3: "outer_race_failure"}, {}),
}
SUBSETS = tuple(TESTS)
# The staged file names: "<n>st|nd|rd|th_test_mean_abs_per_snapshot.csv" -> test<n>.
FILE_PATTERN = re.compile(r"^(\d+)(?:st|nd|rd|th)_test_mean_abs_per_snapshot\.csv$")
BEARINGS = 4  # the rig holds four bearings on one shaft

# Mean |acceleration| of a healthy bearing is ~0.05-0.1 g and reaches ~0.5 g at failure; 5 g is far
# beyond anything this rig's accelerometers read over a snapshot.
ROLES = (
    RoleSpec("vibration", "Mean |acceleration|, x (or only) channel", "g", 0.0, 5.0),
    RoleSpec("vibration_y", "Mean |acceleration|, y channel", "g", 0.0, 5.0, required=False),
)
BEARING = AssetTypeSpec(
    slug="ims-bearing",
    name="IMS test-rig bearing",
    description="Rexnord ZA-2115 bearing on the IMS run-to-failure rig; mean |acceleration| per 10-min snapshot.",
    roles=ROLES,
    window_s=int(6 * SNAPSHOT_S),  # an hour of snapshots
    step_s=int(SNAPSHOT_S),
)


def data_dir(base: Path | str | None = None) -> Path:
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / FOLDER
    if not path.is_dir():
        raise DatasetMissing(
            f"IMS bearing data not found at {path}: set VIGIL_DATA_DIR to the folder holding {FOLDER}/ "
            f"(see ../shared/data/{FOLDER}/DATASET_CARD.md)"
        )
    return path


def available(base: Path | str | None = None) -> list[ImsTest]:
    """Every test whose file the folder holds, in test order: the known tests (``TESTS``) with the IMS
    readme's failures, and any other ``<n>th_test_...`` file as ``test<n>`` with no failure known."""
    root = data_dir(base)
    found: dict[int, ImsTest] = {}
    for path in root.iterdir():
        match = FILE_PATTERN.match(path.name)
        if not match or not path.is_file():
            continue
        number = int(match.group(1))
        name = f"test{number}"
        known = TESTS.get(name)
        found[number] = (
            known if known is not None and known.file == path.name else ImsTest(name, path.name, 0, {}, {})
        )
    return [found[number] for number in sorted(found)]


def bearing_channels(test: ImsTest, channels: Sequence[str]) -> int:
    """Channels per bearing: the readme's, or (unknown test) the file's channels shared by the 4 bearings."""
    if test.channels_per_bearing:
        # A known test whose file has another layout would silently lose (or mix up) bearings.
        if len(channels) != test.channels_per_bearing * BEARINGS:
            raise DatasetFormatError(
                f"{test.file}: {len(channels)} channels, but {test.name} has {test.channels_per_bearing} "
                f"per bearing on the rig's {BEARINGS} bearings ({test.channels_per_bearing * BEARINGS})"
            )
        return test.channels_per_bearing
    if not channels or len(channels) % BEARINGS or len(channels) // BEARINGS > len(ROLES):
        raise DatasetFormatError(
            f"{test.file}: {len(channels)} channels cannot be split over the rig's {BEARINGS} bearings"
        )
    return len(channels) // BEARINGS


def read_test(path: Path, *, limit_rows: int | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(epoch seconds, channel names, rows × channels) of one test file in time order, stopped-rig tail
    removed. A cell reading ``nan`` is a missing value (the windows leave it out); a cell that is not a
    number, a row of the wrong width or a file without a running snapshot is a DatasetFormatError naming
    the file (and line)."""
    stamps: list[float] = []
    rows: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(text_lines(handle, path))
        header = next(reader, [])
        if len(header) < 3 or header[1].strip() != "Datetime":
            raise DatasetFormatError(f"{path}, line 1: expected ',Datetime,<channels...>', got {header!r}")
        channels = [name.strip() for name in header[2:]]
        for record in reader:
            if not record:
                continue
            try:
                moment = datetime.strptime(record[1].strip(), "%Y.%m.%d.%H.%M.%S")
                values = [float(cell) for cell in record[2:]]
            except (ValueError, IndexError) as exc:
                raise DatasetFormatError(f"{path}, line {reader.line_num}: {exc}") from None
            if len(values) != len(channels):
                raise DatasetFormatError(
                    f"{path}, line {reader.line_num}: {len(values)} values for {len(channels)} channels"
                )
            stamps.append(moment.replace(tzinfo=dt_timezone.utc).timestamp())
            rows.append(values)
    ts = np.asarray(stamps, dtype=np.float64)
    matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(channels))
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        # Rows out of time order (a file assembled from the snapshot files in another order): the stamps
        # are the snapshot file names, so their order is the test's; the end of the test is the latest.
        order = np.argsort(ts, kind="stable")
        ts, matrix = ts[order], matrix[order]
    # A row runs when any channel reads above the stopped level; a missing (NaN) value neither runs nor
    # stops it, so one channel's gap in the last row does not move the end of the test.
    running = np.flatnonzero((matrix >= STOPPED_G).any(axis=1)) if len(matrix) else np.zeros(0, np.int64)
    if not len(running):
        raise DatasetFormatError(
            f"{path}: no snapshot with the rig running ({len(matrix)} rows, none with a channel at or above "
            f"{STOPPED_G:g} g)"
        )
    keep = int(running[-1]) + 1
    ts, matrix = ts[:keep], matrix[:keep]
    if limit_rows is not None:
        ts, matrix = ts[:limit_rows], matrix[:limit_rows]
    return ts, channels, matrix


def _selected(selectors: Sequence[str] | None, base: Path | str | None) -> list[tuple[ImsTest, int | None]]:
    """(test, bearing or None for all) per selector: ``test2`` or ``test2/1``."""
    present = available(base)
    if not present:
        raise DatasetMissing(
            f"{data_dir(base)} holds no IMS test file (<n>th_test_mean_abs_per_snapshot.csv)"
        )
    if not selectors:
        return [(test, None) for test in present]
    names = {test.name: test for test in present}
    valid = ", ".join(f"{name} ({name}/1..4)" for name in names) or "none"
    chosen = []
    for selector in selectors:
        name, _, bearing = selector.strip().strip("/").lower().partition("/")
        if name not in names or (bearing and bearing not in {"1", "2", "3", "4"}):
            raise UnknownSubset(f"unknown IMS subset {selector!r}; valid subsets: {valid}")
        chosen.append((names[name], int(bearing) if bearing else None))
    return chosen


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """One unit per bearing of the selected tests (pure: no database)."""
    check_limit(limit_rows)
    root = data_dir(base)
    units: list[Unit] = []
    for test, only in _selected(selectors, base):
        path = root / test.file
        ts, channels, matrix = read_test(path, limit_rows=limit_rows)
        # Full-length end of test: the failure time does not move with --limit-rows.
        end_ts = read_test(path)[0][-1] if limit_rows is not None else ts[-1]
        per_bearing = bearing_channels(test, channels)
        bearings = len(channels) // per_bearing
        for bearing in range(1, bearings + 1):
            if only is not None and bearing != only:
                continue
            first = (bearing - 1) * per_bearing
            values = {role.key: matrix[:, first + k] for k, role in enumerate(ROLES[:per_bearing])}
            units.append(
                Unit(
                    ref=f"{test.name}/{bearing}",
                    tag=f"{test.name}-bearing{bearing}",
                    name=f"IMS {test.name} bearing {bearing}",
                    location=f"IMS rig, {test.name}, position {bearing} ({', '.join(channels[first : first + per_bearing])})",
                    asset_type=BEARING,
                    ts=ts,
                    values=values,
                    labels=_labels(test, bearing, float(end_ts)),
                    sample_period_s=SNAPSHOT_S,
                )
            )
    return units


def _labels(test: ImsTest, bearing: int, end_ts: float) -> list[LabelSpec]:
    if bearing not in test.failures:
        return []
    fault = test.failures[bearing]
    start, note = (
        end_ts,
        f"IMS {test.name}: {fault.replace('_', ' ')} of bearing {bearing} at the end of the test",
    )
    if bearing in test.onsets:
        onset, how = test.onsets[bearing]
        start = datetime.strptime(onset, "%Y-%m-%d %H:%M").replace(tzinfo=dt_timezone.utc).timestamp()
        note += f"; onset {onset} UTC from the dataset card ({how})"
    return [LabelSpec(start, end_ts, LabelKind.FAULT, fault, reason="end-of-test failure", note=note)]
