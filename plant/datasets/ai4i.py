"""AI4I 2020 predictive-maintenance table (UCI 601, synthetic): one milling machine, 10,000 rows.

Reads ``settings.VIGIL_DATA_DIR / "ai4i2020" / "ai4i2020.csv"`` in place (see DATASET_CARD.md there). The
table has no time axis, so its rows become the history of one asset, ``mill`` on site ``ai4i``: row UDI
``n`` is stamped ``EPOCH + (n - 1) * INTERVAL_S`` (one row a minute from 2020-01-01 00:00 UTC). Order of UDI
is not a machine's real history (the card says so); the mapping only gives the rows a place on the plant's
time axis so that the dashboard, labels and trainer can use them.

Labels: every failure-mode flag (TWF, HDF, PWF, OSF, RNF) set on a row is a fault Label on that row's
minute with the mode as ``reason``; a row with Machine failure = 1 and no mode flag (9 rows, a known quirk)
gets one with reason ``unspecified``. The product type (L/M/H) is stored as a sensor (0/1/2), since it
shifts the failure thresholds.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
from django.conf import settings

from plant.choices import LabelKind
from plant.datasets import DatasetFormatError, DatasetMissing, UnknownSubset, text_lines
from plant.datasets.common import AssetTypeSpec, LabelSpec, RoleSpec, Unit, check_limit

SITE = ("ai4i", "AI4I 2020 milling line (synthetic)")
SUBSETS = ("mill",)
EPOCH = datetime(2020, 1, 1, tzinfo=dt_timezone.utc).timestamp()
INTERVAL_S = 60.0
TIME_MAPPING = "row UDI n at 2020-01-01 00:00 UTC + (n - 1) min (the table has no time axis)"
PRODUCT_TYPES = {"L": 0.0, "M": 1.0, "H": 2.0}
# Mode flag → fault type, as the card names them.
MODES = {
    "TWF": "tool_wear_failure",
    "HDF": "heat_dissipation_failure",
    "PWF": "power_failure",
    "OSF": "overstrain_failure",
    "RNF": "random_failure",
}

# Ranges: the table's own range with margin (the values are synthetic, so physics gives no tighter bound).
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("air_temperature", "Air temperature", "K", 280.0, 320.0, "Air temperature [K]"),
    RoleSpec("process_temperature", "Process temperature", "K", 290.0, 330.0, "Process temperature [K]"),
    RoleSpec("speed", "Rotational speed", "rpm", 0.0, 4000.0, "Rotational speed [rpm]"),
    RoleSpec("torque", "Torque", "Nm", 0.0, 120.0, "Torque [Nm]"),
    RoleSpec("tool_wear", "Tool wear", "min", 0.0, 300.0, "Tool wear [min]"),
    RoleSpec("product_type", "Product quality variant (L=0, M=1, H=2)", "", 0.0, 2.0, "Type"),
)
MILL = AssetTypeSpec(
    slug="ai4i-mill",
    name="AI4I milling machine",
    description=f"AI4I 2020 synthetic milling-machine table (UCI 601); {TIME_MAPPING}.",
    roles=ROLES,
    window_s=int(10 * INTERVAL_S),
    step_s=int(INTERVAL_S),
)


def data_file(base: Path | str | None = None) -> Path:
    root = Path(base) if base is not None else Path(settings.VIGIL_DATA_DIR)
    path = root / "ai4i2020" / "ai4i2020.csv"
    if not path.is_file():
        raise DatasetMissing(
            f"AI4I 2020 data not found at {path}: set VIGIL_DATA_DIR to the folder holding ai4i2020/ "
            "(see ../shared/data/ai4i2020/DATASET_CARD.md)"
        )
    return path


def read_table(
    path: Path, *, limit_rows: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
    """(UDI, values per role key, [(UDI, modes set, machine failure)]) of the first ``limit_rows`` rows."""
    udi: list[int] = []
    columns: dict[str, list[float]] = {role.key: [] for role in ROLES}
    failures: list[tuple[int, list[str], bool]] = []
    # utf-8-sig: the file starts with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(text_lines(handle, path))
        needed = ["UDI", "Machine failure", *MODES, *(role.column for role in ROLES)]
        missing = [name for name in needed if name not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            if limit_rows is not None and len(udi) >= limit_rows:
                break
            if None in row.values():  # DictReader's filler for the cells a short row lacks
                width = sum(value is not None for value in row.values())
                raise DatasetFormatError(
                    f"{path}, line {reader.line_num}: {width} columns, expected {len(reader.fieldnames)}"
                )
            try:
                number = int(row["UDI"])
                for role in ROLES:
                    raw = row[role.column].strip()
                    columns[role.key].append(PRODUCT_TYPES[raw] if role.key == "product_type" else float(raw))
                modes = [mode for mode in MODES if row[mode].strip() == "1"]
                failed = row["Machine failure"].strip() == "1"
            except (KeyError, ValueError) as exc:
                raise DatasetFormatError(f"{path}, line {reader.line_num}: bad value ({exc})") from None
            udi.append(number)
            if modes or failed:
                failures.append((number, modes, failed))
    if not udi:
        raise DatasetFormatError(f"{path}: no rows after the header")
    values = {key: np.asarray(column, dtype=np.float64) for key, column in columns.items()}
    return np.asarray(udi, dtype=np.int64), values, failures


def stamp(udi: int | np.ndarray) -> float | np.ndarray:
    return EPOCH + (np.asarray(udi, dtype=np.float64) - 1) * INTERVAL_S


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """The mill as one unit (pure: no database)."""
    check_limit(limit_rows)
    for selector in selectors or ():
        if selector.strip().lower() not in SUBSETS:
            raise UnknownSubset(f"unknown AI4I subset {selector!r}; valid subsets: {', '.join(SUBSETS)}")
    path = data_file(base)
    udi, values, failures = read_table(path, limit_rows=limit_rows)
    labels = []
    for number, modes, failed in failures:
        at = float(stamp(number))
        for mode in modes or ["unspecified"]:
            quirk = " (Machine failure = 0: a known quirk of the table)" if not failed else ""
            labels.append(
                LabelSpec(
                    at,
                    at,
                    LabelKind.FAULT,
                    MODES.get(mode, "machine_failure"),
                    reason=mode,
                    note=f"AI4I UDI {number}: {mode}{quirk}",
                )
            )
    return [
        Unit(
            ref="mill",
            tag="mill",
            name="AI4I milling machine",
            location=f"AI4I 2020 table; {TIME_MAPPING}",
            asset_type=MILL,
            ts=np.asarray(stamp(udi), dtype=np.float64),
            values=values,
            labels=labels,
            sample_period_s=INTERVAL_S,
            # The failures of the rows read only: a full load's later ones are left as they are.
            labels_until=float(stamp(udi[-1])) if limit_rows is not None else None,
        )
    ]
