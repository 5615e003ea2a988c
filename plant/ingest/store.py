"""The database edge of ingestion: read the quality context of a batch and write its rows, both in bulk.

PostgreSQL: one LATERAL query reads the context of every sensor of the batch; rows are written with a
binary COPY of one pre-built NumPy buffer, straight into the table when none of them is stored yet (the
usual case), else into a temporary staging table followed by one
`INSERT ... SELECT ... ON CONFLICT (sensor_id, ts) DO NOTHING`. SQLite: indexed queries per sensor and one
`executemany` of `INSERT OR IGNORE`. Timestamps travel as UTC epoch microseconds (int64) throughout.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
import psycopg
from django.db import connection, transaction

from plant import storage
from plant.models import Reading
from plant.pgcopy import PG_EPOCH_OFFSET_US, pg_copy_buffer

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
STAGE_TABLE = "vigil_reading_stage"
# One context row as packed by load_context on PostgreSQL: sensor id, timestamptz (µs from 2000), value.
_CONTEXT_ROW = np.dtype([("sensor", ">i8"), ("ts", ">i8"), ("value", ">f8")])
# How far back load_context first looks for a sensor's earlier readings: a day holds the quality context
# (VIGIL_QUALITY_CONTEXT readings) of any sensor sampled every ~45 min or faster; the others look again.
_LOOKBACK = timedelta(days=1)


def _table() -> tuple[str, str, str, str, str]:
    meta = Reading._meta
    qn = connection.ops.quote_name
    return (
        qn(meta.db_table),
        qn(meta.get_field("sensor").column),
        qn(meta.get_field("ts").column),
        qn(meta.get_field("value").column),
        qn(meta.get_field("quality").column),
    )


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def datetime_to_us(moment: datetime) -> int:
    return (moment - EPOCH) // _ONE_US


# --- context ------------------------------------------------------------------------------------------


def load_context(
    sensor_ids: np.ndarray, first_us: np.ndarray, last_us: np.ndarray, before: int, span_limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored readings of each sensor: the last `before` ones before first_us, and those in [first, last].

    Returns (sensor_id, ts_us, value) columns, unsorted.
    """
    if len(sensor_ids) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    if is_postgres():
        sid, ts, value = _load_context_postgres(sensor_ids, first_us, last_us, before, span_limit, _LOOKBACK)
        # Sensors with fewer than `before` readings in the look-back (new, or sampled slowly) take their
        # earlier readings from a search without it: the bound changes how many partitions are searched,
        # never the context.
        order = np.argsort(sensor_ids, kind="stable")
        position = order[np.searchsorted(sensor_ids, sid, sorter=order)]
        earlier = ts < first_us[position]
        short = np.bincount(position[earlier], minlength=len(sensor_ids)) < before
        if short.any():
            keep = ~(earlier & short[position])
            ids = sensor_ids[short]
            more = _load_context_postgres(ids, first_us[short], first_us[short], before, 0, None)
            sid, ts, value = (
                np.concatenate([col[keep], extra]) for col, extra in zip((sid, ts, value), more)
            )
        return sid, ts, value
    rows = []
    for sid, first, last in zip(sensor_ids.tolist(), first_us.tolist(), last_us.tolist()):
        start, end = EPOCH + first * _ONE_US, EPOCH + last * _ONE_US
        readings = Reading.objects.filter(sensor_id=sid)
        earlier = readings.filter(ts__lt=start).order_by("-ts").values_list("ts", "value")[:before]
        inside = readings.filter(ts__gte=start, ts__lte=end).order_by("ts").values_list("ts", "value")
        rows.extend((sid, datetime_to_us(ts), value) for ts, value in (*earlier, *inside[:span_limit]))
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    sid_col, ts_col, value_col = zip(*rows)
    return np.array(sid_col, np.int64), np.array(ts_col, np.int64), np.array(value_col, np.float64)


def _load_context_postgres(
    sensor_ids: np.ndarray,
    first_us: np.ndarray,
    last_us: np.ndarray,
    before: int,
    span_limit: int,
    lookback: timedelta | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """load_context on PostgreSQL, the earlier readings searched back `lookback` from the batch's first
    timestamp at most (None: no bound). The bounds are constants of the query, so the planner prunes the
    partitions of plant_reading outside them (a lateral parameter alone would make it plan every one, and a
    DEFAULT partition would turn the ordered scan into a merge of all of them)."""
    table, c_sensor, c_ts, c_value, _ = _table()
    first = EPOCH + int(first_us.min()) * _ONE_US
    low = first - lookback if lookback is not None else None
    first_max, high = EPOCH + int(first_us.max()) * _ONE_US, EPOCH + int(last_us.max()) * _ONE_US
    earlier_bound = f" AND {c_ts} >= %s" if low is not None else ""
    # The rows come back as one bytea of fixed-width binary fields (int8send & co.) that NumPy reads in
    # one step: about half the cost of fetching a few thousand rows as Python tuples.
    sql = f"""
        SELECT string_agg(int8send(b.sid) || timestamptz_send(r.ts) || float8send(r.value), ''::bytea)
        FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS b(sid, t0, t1)
        CROSS JOIN LATERAL (
            (SELECT {c_ts} AS ts, {c_value} AS value FROM {table}
             WHERE {c_sensor} = b.sid AND {c_ts} < 'epoch'::timestamptz + b.t0 * interval '1 microsecond'
               AND {c_ts} < %s{earlier_bound}
             ORDER BY {c_ts} DESC LIMIT %s)
            UNION ALL
            (SELECT {c_ts}, {c_value} FROM {table}
             WHERE {c_sensor} = b.sid
               AND {c_ts} >= 'epoch'::timestamptz + b.t0 * interval '1 microsecond'
               AND {c_ts} <= 'epoch'::timestamptz + b.t1 * interval '1 microsecond'
               AND {c_ts} >= %s AND {c_ts} <= %s
             ORDER BY {c_ts} LIMIT %s)
        ) AS r
    """
    params = [sensor_ids.tolist(), first_us.tolist(), last_us.tolist(), first_max]
    params += [low] if low is not None else []
    params += [before, first, high, span_limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (packed,) = cursor.fetchone()
    rows = np.frombuffer(packed or b"", dtype=_CONTEXT_ROW)
    return (
        rows["sensor"].astype(np.int64),
        rows["ts"].astype(np.int64) + PG_EPOCH_OFFSET_US,
        rows["value"].astype(np.float64),
    )


# --- writing ------------------------------------------------------------------------------------------


def write_readings(sensor_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, quality: np.ndarray) -> int:
    """Insert the rows, skipping any (sensor, ts) already stored; return how many were inserted."""
    if len(sensor_ids) == 0:
        return 0
    if is_postgres():
        return _write_postgres(sensor_ids, ts_us, values, quality)
    return _write_sqlite(sensor_ids, ts_us, values, quality)


def _write_postgres(
    sensor_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, quality: np.ndarray
) -> int:
    buffer = pg_copy_buffer(sensor_ids, ts_us, values, quality)
    # No savepoint of its own (a round trip each way): the caller's transaction, if any, is the unit.
    with transaction.atomic(savepoint=False):
        # A reading outside every partition of plant_reading gets its partition now, never a rejection.
        storage.ensure_covered(ts_us)
        # Gateways almost always send new readings, and COPY straight into the table costs about half of
        # staging + INSERT ... ON CONFLICT. The batch has no in-batch duplicates (the caller removed them),
        # so only an already stored (sensor, ts) can make the COPY fail: then its savepoint is rolled back
        # and the batch takes the staging path, which skips the stored rows.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _copy(cursor, _table()[0], buffer)
            return len(sensor_ids)
        except psycopg.errors.UniqueViolation:
            pass
        return _write_postgres_staged(buffer)


def _copy(cursor, table: str, buffer: bytes) -> None:
    _, c_sensor, c_ts, c_value, c_quality = _table()
    with cursor.copy(
        f"COPY {table} ({c_sensor}, {c_ts}, {c_value}, {c_quality}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(buffer)


def _write_postgres_staged(buffer: bytes) -> int:
    table, c_sensor, c_ts, c_value, c_quality = _table()
    # Inside a caller's transaction ON COMMIT DELETE ROWS does not fire between our calls: empty it ourselves.
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (sensor_id bigint NOT NULL,"
            " ts timestamptz NOT NULL,"
            " value double precision NOT NULL, quality smallint NOT NULL) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {STAGE_TABLE}")
        _copy(cursor, STAGE_TABLE, buffer)
        cursor.execute(
            f"INSERT INTO {table} ({c_sensor}, {c_ts}, {c_value}, {c_quality})"
            f" SELECT sensor_id, ts, value, quality FROM {STAGE_TABLE}"
            f" ON CONFLICT ({c_sensor}, {c_ts}) DO NOTHING"
        )
        return cursor.rowcount


def _write_sqlite(sensor_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, quality: np.ndarray) -> int:
    table, c_sensor, c_ts, c_value, c_quality = _table()
    # Django stores SQLite datetimes as str(naive UTC datetime); the same text keeps the unique index exact.
    stamps = [str(_EPOCH_NAIVE + us * _ONE_US) for us in ts_us.tolist()]
    rows = list(zip(sensor_ids.tolist(), stamps, values.tolist(), quality.tolist()))
    with transaction.atomic(), connection.cursor() as cursor:
        before = connection.connection.total_changes
        cursor.executemany(
            f"INSERT OR IGNORE INTO {table} ({c_sensor}, {c_ts}, {c_value}, {c_quality})"
            " VALUES (%s, %s, %s, %s)",
            rows,
        )
        return connection.connection.total_changes - before
