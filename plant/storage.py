"""How raw readings are stored on PostgreSQL: `plant_reading` range-partitioned by `ts`.

* Partitions are VIGIL_READING_PARTITION_DAYS long, aligned on Monday 1970-01-05 UTC, named
  `<table>_pYYYYMMDD` after their first day. `ensure_partitions` (beat task, and the migration) creates those
  covering a time range; it creates only the gaps, so changing the setting never makes partitions overlap.
* Ingest (`ensure_covered`, called by plant.ingest.store before it writes) creates the partition of any
  reading outside the existing ones — a gateway's backlog from last year, a clock far ahead — and a DEFAULT
  partition catches whatever another writer (a bulk tool's COPY, a test's bulk_create) puts outside them:
  no reading is ever rejected or lost for want of a partition. Creating a range partition moves the DEFAULT
  partition's rows of its range into it, under a lock on the DEFAULT partition, so those rows never block it.
  Ingest keeps the DEFAULT partition empty, and its time-bounded queries let the planner prune it (a live
  DEFAULT partition stops PostgreSQL from scanning partitions in ts order; see plant.ingest.store).
* The primary key is (id, ts) — a partitioned table's unique keys must contain the partition key — so
  Django's `id` stays filled by the identity column and every ORM look-up, update and cascade by id works;
  the unique (sensor_id, ts) constraint already contains `ts` and is kept as is (ON CONFLICT and the COPY
  fast path of plant.ingest.store unchanged).
* `partition_table` / `unpartition_table` convert an existing plain table and back (the 0013 migration).

SQLite keeps a plain table: nothing here runs there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from plant.models import Reading

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday: weekly partitions run Monday to Monday
DEFAULT_SUFFIX = "_default"
# One advisory lock for every partition change of the readings table (creation, drops), across processes.
_LOCK_KEY = 0x76_69_67_69_6C_72  # "vigilr"
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    """A range partition: readings with start <= ts < end."""

    name: str
    start: datetime
    end: datetime


def table_name() -> str:
    return Reading._meta.db_table


def partition_period() -> timedelta:
    return timedelta(days=settings.VIGIL_READING_PARTITION_DAYS)


def is_partitioned(table: str | None = None) -> bool:
    """Whether the readings table (or `table`) is a partitioned table on this database."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table or table_name()])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def period_start(moment: datetime, period: timedelta) -> datetime:
    """The start of the aligned period containing `moment`."""
    return ORIGIN + ((moment - ORIGIN) // period) * period


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def partitions(table: str | None = None) -> list[Partition]:
    """The range partitions of the table, oldest first (the DEFAULT partition is not one)."""
    table = table or table_name()
    with connection.cursor() as cursor:
        # Bounds print in the session time zone, which Django sets to UTC (USE_TZ); fromisoformat keeps the
        # offset either way.
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            start, end = (datetime.fromisoformat(text).astimezone(UTC) for text in match.groups())
            found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: p.start)


def _gaps(start: datetime, end: datetime, taken: list[Partition]) -> list[tuple[datetime, datetime]]:
    """Sub-ranges of [start, end) not covered by any existing partition."""
    gaps, cursor_at = [], start
    for part in taken:
        if part.end <= cursor_at or part.start >= end:
            continue
        if part.start > cursor_at:
            gaps.append((cursor_at, part.start))
        cursor_at = max(cursor_at, part.end)
    if cursor_at < end:
        gaps.append((cursor_at, end))
    return gaps


def ensure_partitions(
    start: datetime, end: datetime, table: str | None = None, period: timedelta | None = None
) -> list[str]:
    """Create the partitions covering [start, end) that do not exist yet; return their names."""
    period = period or partition_period()
    first, starts = period_start(start, period), []
    while first < end:
        starts.append(first)
        first += period
    return _ensure_periods(starts, table or table_name(), period)


def _ensure_periods(starts: list[datetime], table: str, period: timedelta) -> list[str]:
    """Create the partitions of the periods beginning at `starts` (each in its own transaction or savepoint:
    no lock-table overflow however many), serialised across processes by an advisory lock, so concurrent
    ingests needing the same partition create it once. Rows of the DEFAULT partition inside a new
    partition's range move into it in that transaction, the DEFAULT partition locked meanwhile."""
    created = []
    for first in starts:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            for gap_start, gap_end in _gaps(first, first + period, partitions(table)):
                created.append(_create_partition(cursor, table, gap_start, gap_end))
    return created


def _periods_with_rows(cursor, relation: str, period: timedelta) -> list[datetime]:
    """The starts of the periods in which `relation` holds rows (not every period between its extremes:
    one reading stamped 1999 must not create thirty years of partitions)."""
    cursor.execute(f"SELECT DISTINCT date_bin(%s, ts, %s) FROM {_qn(relation)} ORDER BY 1", [period, ORIGIN])
    return [row[0] for row in cursor.fetchall()]


def _create_partition(cursor, table: str, start: datetime, end: datetime) -> str:
    name = f"{table}_p{start:%Y%m%d}" + ("" if start.time() == datetime.min.time() else f"{start:%H%M%S}")
    default = table + DEFAULT_SUFFIX
    # CREATE + ATTACH rather than CREATE ... PARTITION OF: attaching takes only a SHARE UPDATE EXCLUSIVE
    # lock on the parent, which inserts into the other partitions do not wait for.
    cursor.execute(f"CREATE TABLE {_qn(name)} (LIKE {_qn(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    if _exists(cursor, default):
        # Inserts routed to DEFAULT wait from here to commit, so none can slip in between move and attach.
        cursor.execute(f"LOCK TABLE {_qn(default)} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_qn(default)} WHERE ts >= %s AND ts < %s RETURNING *)"
            f" INSERT INTO {_qn(name)} SELECT * FROM moved",
            [start, end],
        )
    cursor.execute(
        f"ALTER TABLE {_qn(table)} ATTACH PARTITION {_qn(name)} FOR VALUES FROM (%s) TO (%s)", [start, end]
    )
    return name


def _exists(cursor, relation: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [relation])
    return cursor.fetchone()[0]


def ensure_ahead(now: datetime, table: str | None = None) -> list[str]:
    """The beat task's work: partitions from the current period to VIGIL_READING_PARTITIONS_AHEAD periods
    ahead (so live ingest almost never creates one), plus one for each period whose readings another writer
    left in the DEFAULT partition."""
    table = table or table_name()
    period = partition_period()
    created = ensure_partitions(now, now + period * (1 + settings.VIGIL_READING_PARTITIONS_AHEAD), table)
    with connection.cursor() as cursor:
        waiting = _periods_with_rows(cursor, table + DEFAULT_SUFFIX, period)
    return created + _ensure_periods(waiting, table, period)


# Partitions known to this process, as sorted (start, end) epoch-microsecond arrays: a batch whose rows all
# fall inside them needs no catalog query. Refreshed on a miss; rows of a partition dropped since
# (retention) land in the DEFAULT partition until the next creation of their range moves them.
_known: tuple[np.ndarray, np.ndarray] | None = None
_partitioned: bool | None = None


def forget_partitions() -> None:
    """Drop this process's knowledge of the partitions (and of whether the table is partitioned)."""
    global _known, _partitioned
    _known = _partitioned = None


def _uncovered(ts_us: np.ndarray, known: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    starts, ends = known
    index = np.searchsorted(starts, ts_us, side="right") - 1
    inside = (index >= 0) & (ts_us < ends[np.maximum(index, 0)])
    return ts_us[~inside]


def _load_known(table: str) -> tuple[np.ndarray, np.ndarray]:
    parts = partitions(table)
    return (
        np.array([_us(p.start) for p in parts], np.int64),
        np.array([_us(p.end) for p in parts], np.int64),
    )


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def ensure_covered(ts_us: np.ndarray) -> list[str]:
    """Make sure a partition exists for every timestamp (UTC epoch microseconds) about to be written;
    create those missing. Returns the partitions created (usually none: one vectorised look-up)."""
    global _known, _partitioned
    if _partitioned is None:
        _partitioned = is_partitioned()
    if not _partitioned:
        return []
    table = table_name()
    if _known is None or len(_uncovered(ts_us, _known)):
        _known = _load_known(table)
    missing = _uncovered(ts_us, _known)
    if not len(missing):
        return []
    period = partition_period()
    period_us = period // timedelta(microseconds=1)
    origin_us = _us(ORIGIN)
    firsts = np.unique((missing - origin_us) // period_us) * period_us + origin_us
    starts = [_EPOCH + timedelta(microseconds=int(first)) for first in firsts]
    created = _ensure_periods(starts, table, period)
    _known = _load_known(table)
    return created


# --- conversion of an existing table (the migration) -------------------------------------------------------


def _constraints(cursor, table: str, kind: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = to_regclass(%s) AND contype = %s ORDER BY conname",
        [table, kind],
    )
    return cursor.fetchall()


def _columns(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        [table],
    )
    return [row[0] for row in cursor.fetchall()]


def _swap(cursor, table: str, partitioned: bool, key: str) -> str:
    """Rename `table` (and its constraints and id sequence) out of the way and create its replacement with
    the same columns, primary key and unique constraints; return the old table's new name."""
    old = f"{table}_old"
    primary = _constraints(cursor, table, "p")
    uniques = _constraints(cursor, table, "u")
    cursor.execute(f"ALTER TABLE {_qn(table)} RENAME TO {_qn(old)}")
    for name, _ in primary + uniques:
        cursor.execute(f"ALTER TABLE {_qn(old)} RENAME CONSTRAINT {_qn(name)} TO {_qn(name[:55] + '_old')}")
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [old])
    sequence = cursor.fetchone()[0]
    if sequence:
        cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {_qn(old + '_id_seq')}")
    suffix = f" PARTITION BY RANGE ({_qn(key)})" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {_qn(table)} (LIKE {_qn(old)} INCLUDING CONSTRAINTS INCLUDING IDENTITY){suffix}"
    )
    pk_columns = f"id, {_qn(key)}" if partitioned else "id"
    cursor.execute(
        f"ALTER TABLE {_qn(table)} ADD CONSTRAINT {_qn(table + '_pkey')} PRIMARY KEY ({pk_columns})"
    )
    for name, definition in uniques:
        if partitioned and not re.search(rf"\b{key}\b", definition):
            raise ValueError(f"unique constraint {name} ({definition}) lacks the partition key {key}")
        cursor.execute(f"ALTER TABLE {_qn(table)} ADD CONSTRAINT {_qn(name)} {definition}")
    return old


def _copy_rows(cursor, old: str, table: str) -> None:
    columns = ", ".join(_qn(c) for c in _columns(cursor, old))
    cursor.execute(
        f"INSERT INTO {_qn(table)} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {_qn(old)}"
    )
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM {_qn(table)}",
        [table],
    )
    cursor.execute(f"DROP TABLE {_qn(old)}")


def partition_table(table: str, now: datetime, key: str = "ts", period: timedelta | None = None) -> None:
    """Turn the plain table `table` into one range-partitioned by `key`, keeping every row, its id, the
    unique constraints (which must contain `key`) and the id sequence: rename, create, create the
    partitions covering the stored rows and the coming periods and a DEFAULT one, copy, drop the old."""
    period = period or partition_period()
    with transaction.atomic(), connection.cursor() as cursor:
        stored = _periods_with_rows(cursor, table, period)
        old = _swap(cursor, table, partitioned=True, key=key)
        cursor.execute(f"CREATE TABLE {_qn(table + DEFAULT_SUFFIX)} PARTITION OF {_qn(table)} DEFAULT")
        ensure_partitions(now, now + period * (1 + settings.VIGIL_READING_PARTITIONS_AHEAD), table, period)
        _ensure_periods(stored, table, period)
        _copy_rows(cursor, old, table)


def unpartition_table(table: str, key: str = "ts") -> None:
    """The reverse of `partition_table`: one plain table with primary key (id) and every row."""
    with transaction.atomic(), connection.cursor() as cursor:
        old = _swap(cursor, table, partitioned=False, key=key)
        _copy_rows(cursor, old, table)
