"""PostgreSQL binary COPY streams built with NumPy (no Django, so benchmarks and tools can use it too)."""

from __future__ import annotations

import numpy as np

# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01.
PG_EPOCH_OFFSET_US = 946_684_800_000_000
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PG_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("len_sensor", ">i4"),
        ("sensor", ">i8"),
        ("len_ts", ">i4"),
        ("ts", ">i8"),
        ("len_value", ">i4"),
        ("value", ">f8"),
        ("len_quality", ">i4"),
        ("quality", ">i2"),
    ]
)


def pg_copy_buffer(
    sensor_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, quality: np.ndarray
) -> bytes:
    """The whole batch as one PostgreSQL binary COPY stream, built in a handful of NumPy operations."""
    rows = np.empty(len(sensor_ids), dtype=_PG_ROW)
    rows["nfields"] = 4
    rows["len_sensor"] = 8
    rows["sensor"] = sensor_ids
    rows["len_ts"] = 8
    rows["ts"] = ts_us - PG_EPOCH_OFFSET_US
    rows["len_value"] = 8
    rows["value"] = values
    rows["len_quality"] = 2
    rows["quality"] = quality
    return _PG_COPY_HEADER + rows.tobytes() + _PG_COPY_TRAILER
