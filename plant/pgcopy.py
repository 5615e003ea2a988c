"""PostgreSQL binary COPY streams of readings, built and parsed with NumPy (no Django, so benchmarks and
tools can use it too): ingest writes them, the scorer's reading query (plant.series.read_readings) reads
them. Every column is NOT NULL and fixed-width, so a stream is a header, fixed-size rows and a trailer."""

from __future__ import annotations

import struct

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
    return pg_copy_stream([rows.tobytes()])


def pg_copy_stream(blocks: list[bytes]) -> bytes:
    """A binary COPY stream of rows already encoded (``blocks``, in order): header, rows, trailer."""
    return b"".join([_PG_COPY_HEADER, *blocks, _PG_COPY_TRAILER])


def pg_copy_series(
    buffer: bytes | bytearray | memoryview,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The readings of a binary COPY stream with one row per sensor, (sensor bigint, ts timestamptz[],
    value float8[], quality smallint[]) with arrays of equal length, as flat columns in row order:
    (sensor ids int64, ts µs since the Unix epoch int64, values float64, quality uint16).

    One row per sensor instead of one per reading because psycopg hands a COPY over one message per row:
    at 70 readings a sensor that is 70 times fewer Python steps, and PostgreSQL builds the arrays more
    cheaply than it formats rows. Each row costs one step here to find where the next begins; the values
    are then gathered for every row at once. ValueError when the stream is not made of such rows (another
    column list, a NULL, arrays of different lengths, a truncated stream), never silently misread."""
    data = bytes(buffer)
    head, tail = len(_PG_COPY_HEADER), len(_PG_COPY_TRAILER)
    if len(data) < head + tail or not data.startswith(_PG_COPY_HEADER) or not data.endswith(_PG_COPY_TRAILER):
        raise ValueError("not a binary COPY stream")
    starts, counts = [], []
    at, stop = head, len(data) - tail
    while at < stop:
        if at + _SERIES_HEAD > stop:
            raise ValueError("a truncated COPY row")
        (n,) = _INT4.unpack_from(data, at + _TS_COUNT)
        starts.append(at)
        counts.append(n)
        at += _SERIES_HEAD + _SERIES_TAIL + _SERIES_PER_READING * n
    if at != stop:
        raise ValueError("a truncated COPY row")
    start, n = np.array(starts, dtype=np.int64), np.array(counts, dtype=np.int64)
    header = _at(data, start, _SERIES_ROW)
    # The value array's header follows the last timestamp, the quality array's the last value.
    value_at = start + _SERIES_HEAD + 12 * n
    quality_at = value_at + _ARRAY_HEAD + 12 * n
    values_head = _at(data, value_at, _ARRAY_HEAD_ROW)
    quality_head = _at(data, quality_at, _ARRAY_HEAD_ROW)
    expected = (
        (header["nfields"] == 4)
        & (header["len_sensor"] == 8)
        & (header["len_ts"] == _ARRAY_BODY + 12 * n)
        & (header["ts_ndim"] == 1)
        & (header["ts_nulls"] == 0)
        & (values_head["len"] == _ARRAY_BODY + 12 * n)
        & (values_head["ndim"] == 1)
        & (values_head["nulls"] == 0)
        & (values_head["count"] == n)
        & (quality_head["len"] == _ARRAY_BODY + 6 * n)
        & (quality_head["ndim"] == 1)
        & (quality_head["nulls"] == 0)
        & (quality_head["count"] == n)
        & (n > 0)
    )
    if not expected.all():
        raise ValueError(
            "a COPY row is not (sensor bigint, ts timestamptz[], value float8[], quality smallint[])"
        )
    owner = np.repeat(np.arange(len(n)), n)
    within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    ts_at = (start + _SERIES_HEAD)[owner] + 12 * within
    value_at = (value_at + _ARRAY_HEAD)[owner] + 12 * within
    quality_at = (quality_at + _ARRAY_HEAD)[owner] + 6 * within
    element = _at(data, ts_at, _ELEMENT8_I)
    values = _at(data, value_at, _ELEMENT8_F)
    quality = _at(data, quality_at, _ELEMENT2)
    if not ((element["len"] == 8).all() and (values["len"] == 8).all() and (quality["len"] == 2).all()):
        raise ValueError("a COPY array holds a NULL or a value of another width")
    return (
        np.repeat(header["sensor"].astype(np.int64), n),
        element["value"].astype(np.int64) + PG_EPOCH_OFFSET_US,
        values["value"].astype(np.float64),
        quality["value"].astype(np.uint16),
    )


def _at(data: bytes, at: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The records of `dtype` starting at byte offsets `at` of `data` (each inside it): one fancy index
    into a view with a record starting at every byte, so no index matrix per byte is built."""
    if not len(at):
        return np.zeros(0, dtype=dtype)
    every_byte = np.ndarray((len(data) - dtype.itemsize + 1,), dtype=dtype, buffer=data, strides=(1,))
    return every_byte[at]


_INT4 = struct.Struct(">i")
# A row of pg_copy_series up to its first timestamp: field count, the sensor, the ts array's length and its
# header (dimensions, null flag, element type, element count, lower bound).
_SERIES_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("len_sensor", ">i4"),
        ("sensor", ">i8"),
        ("len_ts", ">i4"),
        ("ts_ndim", ">i4"),
        ("ts_nulls", ">i4"),
        ("ts_type", ">i4"),
        ("ts_count", ">i4"),
        ("ts_lbound", ">i4"),
    ]
)
_ARRAY_HEAD_ROW = np.dtype(
    [("len", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"), ("type", ">i4"), ("count", ">i4"), ("lbound", ">i4")]
)
_ARRAY_BODY = 20  # an array's header after its length: ndim, null flag, element type, count, lower bound
_ARRAY_HEAD = _ARRAY_HEAD_ROW.itemsize
_SERIES_HEAD = _SERIES_ROW.itemsize
_TS_COUNT = _SERIES_ROW.fields["ts_count"][1]
_SERIES_TAIL = 2 * _ARRAY_HEAD  # the value and quality arrays' headers
_SERIES_PER_READING = 12 + 12 + 6  # (length, value) of a timestamp, a float8 and a smallint
_ELEMENT8_I = np.dtype([("len", ">i4"), ("value", ">i8")])
_ELEMENT8_F = np.dtype([("len", ">i4"), ("value", ">f8")])
_ELEMENT2 = np.dtype([("len", ">i4"), ("value", ">i2")])
