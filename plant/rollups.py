"""Reading rollups: 1-minute and 1-hour aggregates per sensor, kept by a beat task with a watermark.

How readings reach the rollups exactly once, late ones included
----------------------------------------------------------------
The watermark is the reading **id** (insertion order), not the timestamp: a reading that arrives hours
late still gets a new, higher id, so it is found by the next pass whatever its ``ts``. A pass takes the
readings with ids in (done_id, pending_id], finds the (sensor, minute) buckets they fall in and
**recomputes those buckets from the raw readings** (INSERT ... SELECT ... ON CONFLICT DO UPDATE), then the
(sensor, hour) buckets from the minute rollups. A recomputed bucket is the aggregate of the rows in it, so
a pass that runs twice, or a bucket touched by two passes, never counts a reading twice; nothing is
added to a stored counter.

Ids are allocated before commit, so on PostgreSQL a transaction still writing may hold ids below the
highest committed one. Each pass therefore records the highest id it sees (``pending_id``) together with
the transactions of the database then writing readings (``pending_xids``: pid and transaction id from
``pg_stat_activity``), and readings up to
``pending_id`` are rolled up only once all of those transactions have ended: their rows are then visible
(or were rolled back). Rollups thus trail ingest by about one beat period. SQLite has one writer at a
time, so there is never anything to wait for. A transaction holds ids for a moment before it has a
transaction id to be listed by (nextval assigns none), so every id range is rolled up a second time by
the next run (``checked_id``), when such a transaction has long committed.

After an outage the task simply finds many ids past the watermark and works through them in passes of
``VIGIL_ROLLUP_PASS_IDS`` ids; every reading written meanwhile is in one of them, so there is no gap.

Raw retention (plant.retention) must not drop readings before they are rolled up: ``rolled_up_through()``
says up to which reading id the rollups are complete, and the retention task runs ``roll_up_before(bound)``
first: the buckets of the readings it may remove (older than ``bound``) that the watermark's rechecked
part does not cover yet are recomputed, whatever the state of the beat task (an outage, a backlog
ingested late into old partitions), without rolling up the whole table's new readings. Rollups are never deleted with raw data: a recomputed bucket whose raw
readings are gone produces no row and the stored one is kept.

The same recomputation serves in-place changes of readings (the DRIFT bit set after the fact):
``refresh_rollups(sensor_ids, start, end)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from plant.choices import QualityFlag
from plant.models import Reading, ReadingRollupHour, ReadingRollupMinute, RollupWatermark, Sensor
from plant.series import BucketSeries, TimeBucket, load_buckets

# The stored sum adds values clamped to this magnitude: PostgreSQL raises on a float8 sum overflow, and a
# mean of values beyond it is meaningless for a chart (plant.series.MEAN_CLAMP is the same bound).
SUM_CLAMP = 1e100
WATERMARK = "readings"
_COLUMNS = ("count", "total", "low", "high", "flagged", "flagged_low", "flagged_high", "flag_bits")


@dataclass(frozen=True)
class Level:
    """One rollup level: its bucket width and its model."""

    name: str
    seconds: int
    model: type[ReadingRollupMinute] | type[ReadingRollupHour]


MINUTE = Level("1 min", 60, ReadingRollupMinute)
HOUR = Level("1 h", 3600, ReadingRollupHour)
LEVELS = (MINUTE, HOUR)  # finest first
# A chart reads at most this many times its point budget of rollup rows per trace (plant.rollups.level_for).
READ_FACTOR = 10


@dataclass(frozen=True)
class RollupReport:
    passes: int
    done_id: int
    pending_id: int
    waiting_for: int  # transactions still writing ids at or below pending_id


def roll_up_readings(pass_ids: int | None = None, max_passes: int = 1000) -> RollupReport:
    """Roll up every reading the watermark has not covered yet, in passes of ``pass_ids`` ids, until
    caught up or until a transaction that may still add ids below the pending mark is running."""
    pass_ids = pass_ids or settings.VIGIL_ROLLUP_PASS_IDS
    passes = waiting = 0
    wm = _watermark()
    _recheck(wm.done_id, pass_ids)
    for _ in range(max_passes):
        with transaction.atomic():
            # The row lock makes concurrent runs of the task take turns instead of racing.
            wm = RollupWatermark.objects.select_for_update().get(pk=wm.pk)
            if wm.done_id < wm.pending_id:
                waiting = _still_running(wm.pending_xids)
                if waiting:
                    break
                lo = _skip_empty(wm.done_id, wm.pending_id)
                hi = min(wm.pending_id, lo + pass_ids)
                _pass(lo, hi)
                wm.done_id = hi
                passes += 1
            else:
                top, xids = _snapshot()
                if top <= wm.done_id:
                    break
                wm.pending_id, wm.pending_xids = top, xids
            wm.updated_at = timezone.now()
            wm.save(update_fields=["done_id", "pending_id", "pending_xids", "updated_at"])
    return RollupReport(passes, wm.done_id, wm.pending_id, waiting)


def _recheck(through: int, pass_ids: int) -> None:
    """Roll up again the readings up to ``through`` (rolled up by an earlier run) not yet rechecked.

    A transaction can take ids from the sequence a moment before it gets a transaction id (nextval
    assigns none; COPY buffers rows before it writes), so for that moment it is in no snapshot's list.
    Its readings are committed well before the next run, which recomputes their buckets once more. The
    second pass costs as much as the first: together ~2 % of a core at 100 M readings a day (bench/chart.py).
    """
    wm = _watermark()
    while wm.checked_id < through:
        with transaction.atomic():
            wm = RollupWatermark.objects.select_for_update().get(pk=wm.pk)
            if wm.checked_id >= through:
                break
            lo = _skip_empty(wm.checked_id, through)
            hi = min(through, lo + pass_ids)
            _pass(lo, hi)
            wm.checked_id = hi
            wm.save(update_fields=["checked_id"])


def _skip_empty(lo: int, hi: int) -> int:
    """Where a pass over ids (lo, hi] should start: just before the first reading id above ``lo`` (``hi``
    when there is none), so that gaps in the ids (deleted readings, retention, other tables' use of a
    shared sequence) cost one index look-up instead of empty passes."""
    first = Reading.objects.filter(id__gt=lo, id__lte=hi).order_by("id").values_list("id", flat=True).first()
    return hi if first is None else first - 1


def _pass(lo: int, hi: int, before: datetime | None = None) -> None:
    """Recompute the buckets of the readings with ids in (lo, hi] (and, given ``before``, older than it)."""
    if connection.vendor == "postgresql":
        # The planner's guess of a bucket's rows is far too high; compiling for it costs more than the pass.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
    where, params = f"{_q('id')} > %s AND {_q('id')} <= %s", [lo, hi]
    if before is not None:
        where += f" AND {_q('ts')} < %s"
        params.append(connection.ops.adapt_datetimefield_value(before))  # SQLite compares its stored text
    _recompute(where, params)


def roll_up_before(bound: datetime, pass_ids: int | None = None) -> int:
    """Recompute the buckets of every reading older than ``bound`` with an id above the watermark's
    ``checked_id`` (up to which every reading is rolled up for good), in passes of ``pass_ids`` ids; return
    the passes. When the rollups are current this is one index look-up. The watermark is not moved: its
    own task rolls these readings up again, which changes nothing (a bucket is recomputed, never added to).
    The partition swap calls it under a lock that stops every writer, so nothing a running transaction
    writes is missed; the batched deletes call it just before deleting, without one (a reading older than
    ``bound`` committed in between — late data older than the retention — is deleted unrolled)."""
    pass_ids = pass_ids or settings.VIGIL_ROLLUP_PASS_IDS
    since, passes = _watermark().checked_id, 0
    older = Reading.objects.filter(ts__lt=bound).order_by("id").values_list("id", flat=True)
    while True:
        # Ordered by id with the partitions past ``bound`` pruned: one index look-up per pass.
        first = older.filter(id__gt=since).first()
        if first is None:
            return passes
        since = first - 1 + pass_ids
        with transaction.atomic():
            _pass(first - 1, since, before=bound)
        passes += 1


def refresh_rollups(sensor_ids: Sequence[int], start: datetime, end: datetime) -> None:
    """Recompute the rollup buckets of the sensors' readings in [start, end] (readings changed in place)."""
    if not sensor_ids:
        return
    marks = ", ".join(["%s"] * len(sensor_ids))
    where = f"{_q('sensor_id')} IN ({marks}) AND {_q('ts')} >= %s AND {_q('ts')} <= %s"
    adapt = connection.ops.adapt_datetimefield_value  # SQLite compares the text it stores
    _recompute(where, [*sensor_ids, adapt(start), adapt(end)])


def rolled_up_through() -> int:
    """The highest reading id every reading up to which is in the rollups (0: none yet)."""
    return RollupWatermark.objects.filter(name=WATERMARK).values_list("done_id", flat=True).first() or 0


def _watermark() -> RollupWatermark:
    return RollupWatermark.objects.get_or_create(name=WATERMARK)[0]


def _snapshot() -> tuple[int, list[str]]:
    """The highest reading id now and (PostgreSQL) the other transactions of this database then writing
    readings, as "pid:xid", in one statement so both describe the same moment.

    A transaction that inserts readings holds ROW EXCLUSIVE on the readings table (or, written directly,
    on one of its partitions) from its first insert until it ends, so only those are listed: a long
    transaction writing anything else (a retrain storing scores, an autovacuum ANALYZE writing
    statistics, which has a transaction id too) cannot hold reading ids and must not hold up the rollups.
    Transactions of other databases on the server cannot write readings and are left out."""
    table = _q(Reading._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(f"SELECT MAX({_q('id')}) FROM {table}")
            return int(cursor.fetchone()[0] or 0), []
        cursor.execute(
            f"SELECT (SELECT MAX({_q('id')}) FROM {table}),"
            " ARRAY(SELECT a.pid || ':' || a.backend_xid FROM pg_stat_activity a"
            " WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()"
            " AND a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'relation'"
            " AND l.mode = 'RowExclusiveLock' AND l.granted AND l.database = ("
            "SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND (l.relation = %s::regclass OR l.relation IN (SELECT inhrelid FROM pg_inherits"
            " WHERE inhparent = %s::regclass))))",
            [Reading._meta.db_table, Reading._meta.db_table],
        )
        top, xids = cursor.fetchone()
    return int(top or 0), list(xids)


def _still_running(xids: list[str]) -> int:
    if not xids or connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid || ':' || backend_xid = ANY(%s::text[])", [xids]
        )
        return int(cursor.fetchone()[0])


def _recompute(reading_where: str, params: list) -> None:
    """Recompute the minute buckets holding the readings matching ``reading_where``, then their hours."""
    reading = _q(Reading._meta.db_table)
    minute, hour = _q(MINUTE.model._meta.db_table), _q(HOUR.model._meta.db_table)
    value, quality = "r." + _q("value"), "r." + _q("quality")
    flagged = f"{quality} <> 0"
    dirty = (
        f"SELECT DISTINCT {_q('sensor_id')}, {{floor}} AS {_q('start')} FROM {reading} WHERE {reading_where}"
    )
    m = {c: f"r.{_q(c)}" for c in _COLUMNS}
    with connection.cursor() as cursor:
        cursor.execute(
            _upsert(
                minute,
                dirty.format(floor=_floor(_q("ts"), MINUTE)),
                f"{reading} r",
                "ts",
                MINUTE,
                f"COUNT(*), SUM({_clamp(value)}), MIN({value}), MAX({value}),"
                f" SUM(CASE WHEN {flagged} THEN 1 ELSE 0 END), MIN(CASE WHEN {flagged} THEN {value} END),"
                f" MAX(CASE WHEN {flagged} THEN {value} END), {_bit_or(quality)}",
            ),
            params,
        )
        cursor.execute(
            _upsert(
                hour,
                dirty.format(floor=_floor(_q("ts"), HOUR)),
                f"{minute} r",
                "start",
                HOUR,
                f"SUM({m['count']}), SUM({m['total']}), MIN({m['low']}), MAX({m['high']}), SUM({m['flagged']}),"
                f" MIN({m['flagged_low']}), MAX({m['flagged_high']}), {_bit_or(m['flag_bits'])}",
            ),
            params,
        )


def _upsert(target: str, dirty: str, source: str, time_column: str, level: Level, aggregates: str) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of ``target``'s buckets listed by ``dirty`` (sensor_id, start),
    each aggregated from the rows of ``source`` (aliased r) in it."""
    sensor, start, ts = _q("sensor_id"), _q("start"), f"r.{_q(time_column)}"
    inserted = ", ".join(_q(c) for c in ("sensor_id", "start", *_COLUMNS))
    update = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in _COLUMNS)
    in_bucket = f"r.{sensor} = d.{sensor} AND {ts} >= d.{start} AND {ts} < {_plus('d.' + start, level)}"
    if connection.vendor == "postgresql":
        # LATERAL: one index range scan per bucket. A plain join gets a merge join on sensor_id alone,
        # which compares every reading of the sensor with every dirty bucket.
        select = (
            f"SELECT d.{sensor}, d.{start}, a.* FROM ({dirty}) d CROSS JOIN LATERAL"
            f" (SELECT {aggregates} FROM {source} WHERE {in_bucket}) a(n, {', '.join(_COLUMNS[1:])})"
            " WHERE a.n > 0"
        )
    else:
        # SQLite only nests loops, so the join is an index range scan per bucket already. WHERE true: an
        # upsert's SELECT needs one (SQLite's parser would take ON CONFLICT for a join constraint).
        select = (
            f"SELECT d.{sensor}, d.{start}, {aggregates} FROM ({dirty}) d JOIN {source} ON {in_bucket}"
            f" WHERE true GROUP BY d.{sensor}, d.{start}"
        )
    return (
        f"INSERT INTO {target} ({inserted}) {select} ON CONFLICT ({sensor}, {start}) DO UPDATE SET {update}"
    )


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _floor(ts_sql: str, level: Level) -> str:
    unit = {60: "minute", 3600: "hour"}[level.seconds]
    if connection.vendor == "postgresql":
        return f"date_trunc('{unit}', {ts_sql})"  # the connection's time zone is UTC (USE_TZ)
    # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]', which sorts as time.
    return f"strftime('{'%Y-%m-%d %H:%M:00' if unit == 'minute' else '%Y-%m-%d %H:00:00'}', {ts_sql})"


def _plus(ts_sql: str, level: Level) -> str:
    if connection.vendor == "postgresql":
        return f"{ts_sql} + interval '{level.seconds} seconds'"
    return f"strftime('%Y-%m-%d %H:%M:%S', {ts_sql}, '+{level.seconds} seconds')"


def _clamp(sql: str) -> str:
    lo, hi = ("GREATEST", "LEAST") if connection.vendor == "postgresql" else ("MAX", "MIN")
    return f"{lo}({hi}({sql}, {SUM_CLAMP!r}), {-SUM_CLAMP!r})"


def _bit_or(sql: str) -> str:
    # SQLite has no BIT_OR aggregate; the sum of each flag's MAX(bits & flag) is the same OR on both.
    return " + ".join(f"MAX({sql} & {int(flag)})" for flag in QualityFlag)


# --- reading rollups for charts ---------------------------------------------------------------------


def load_level_buckets(
    level: Level, sensor_ids: list[int], start: datetime, end: datetime, width_s: float
) -> dict[int, BucketSeries]:
    """Per-bucket aggregates of the sensors in [start, end) in buckets of ``width_s`` (a multiple of the
    level's width is best), read from the level's rollups and, for each sensor's newest bucket of the level
    on (which the task may not have rolled up yet), from the raw readings. Same result as
    plant.series.load_buckets up to the level's granularity at the range's edges, at a fraction of the
    rows; ``flag_counts`` are 1 where a bucket holds the flag (the rollups keep which bits occur)."""
    model = level.model
    origin = start.timestamp()
    # Each sensor's newest bucket: one backward index step per sensor (a GROUP BY MAX reads them all).
    newest = model.objects.filter(sensor_id=OuterRef("pk"), start__gte=start, start__lt=end)
    tails = {
        pk: last
        for pk, last in Sensor.objects.filter(pk__in=sensor_ids)
        .annotate(last=Subquery(newest.order_by("-start").values("start")[:1]))
        .values_list("pk", "last")
        if last is not None
    }
    rolled = Q(pk__in=[])
    for sensor_id, last in tails.items():
        rolled |= Q(sensor_id=sensor_id, start__lt=last)
    flag_max = {f"f{int(flag)}": Max(F("flag_bits").bitand(int(flag))) for flag in QualityFlag}
    rows = (
        model.objects.filter(rolled, start__gte=start)
        .annotate(bucket=TimeBucket("start", origin_s=origin, width_s=width_s))
        .values("sensor_id", "bucket")
        .annotate(
            n=Sum("count"),
            lo=Min("low"),
            hi=Max("high"),
            total=Sum("total"),
            n_flagged=Sum("flagged"),
            flagged_lo=Min("flagged_low"),
            flagged_hi=Max("flagged_high"),
            **flag_max,
        )
        .order_by("sensor_id", "bucket")
    )
    columns = ["bucket", "n", "lo", "hi", "total", "n_flagged", "flagged_lo", "flagged_hi", *flag_max]
    grouped: dict[int, list[list[float]]] = {pk: [] for pk in sensor_ids}
    # Thousands of rows: read as the database sends them, without Django's per-row converters (~40 ms).
    if tails:  # else nothing is rolled up in the range yet
        sql, params = rows.values_list("sensor_id", *columns).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for sensor_id, *values in cursor.fetchall():
                grouped[sensor_id].append([np.nan if v is None else float(v) for v in values])
    out = {}
    # The raw tail of each sensor: from its newest rollup bucket (or the range start when it has none).
    by_tail: dict[datetime, list[int]] = {}
    for pk in sensor_ids:
        by_tail.setdefault(tails.get(pk, start), []).append(pk)
    raw: dict[int, BucketSeries] = {}
    for tail, ids in by_tail.items():
        raw.update(load_buckets(ids, tail, end, width_s, origin=start))
    for pk in sensor_ids:
        arr = np.array(grouped[pk], dtype=float).reshape(-1, len(columns))
        col = dict(zip(columns, arr.T, strict=True))
        n = col["n"]
        rolled_up = BucketSeries(
            start_s=origin,
            width_s=float(width_s),
            index=col["bucket"].astype(np.int64),
            count=n.astype(np.int64),
            lo=col["lo"],
            hi=col["hi"],
            mean=col["total"] / np.where(n > 0, n, 1),
            flagged=col["n_flagged"].astype(np.int64),
            flagged_lo=col["flagged_lo"],
            flagged_hi=col["flagged_hi"],
            flag_counts={flag: (col[f"f{int(flag)}"] > 0).astype(np.int64) for flag in QualityFlag},
        )
        out[pk] = merge_buckets(rolled_up, raw[pk])
    return out


def merge_buckets(a: BucketSeries, b: BucketSeries) -> BucketSeries:
    """The buckets of two series on the same grid combined (a bucket in both: min of mins, max of maxes,
    counts added, means weighted by count)."""
    index = np.union1d(a.index, b.index)
    pos_a, pos_b = np.searchsorted(index, a.index), np.searchsorted(index, b.index)

    def combine(name: str, how: str, dtype: type = float) -> np.ndarray:
        fill = {"min": np.inf, "max": -np.inf, "sum": 0}[how]
        out = np.full(len(index), fill, dtype=dtype)
        for pos, values in ((pos_a, getattr(a, name)), (pos_b, getattr(b, name))):
            values = np.where(np.isnan(values), fill, values) if dtype is float else values
            {"min": np.minimum.at, "max": np.maximum.at, "sum": np.add.at}[how](out, pos, values)
        return out

    count = combine("count", "sum", np.int64)
    weighted = np.zeros(len(index))
    np.add.at(weighted, pos_a, np.nan_to_num(a.mean) * a.count)
    np.add.at(weighted, pos_b, np.nan_to_num(b.mean) * b.count)
    flagged_lo, flagged_hi = combine("flagged_lo", "min"), combine("flagged_hi", "max")
    flag_counts = {}
    for flag in QualityFlag:
        counts = np.zeros(len(index), dtype=np.int64)
        np.add.at(counts, pos_a, a.flag_counts[flag])
        np.add.at(counts, pos_b, b.flag_counts[flag])
        flag_counts[flag] = counts
    return BucketSeries(
        start_s=a.start_s,
        width_s=a.width_s,
        index=index,
        count=count,
        lo=combine("lo", "min"),
        hi=combine("hi", "max"),
        mean=weighted / np.where(count > 0, count, 1),
        flagged=combine("flagged", "sum", np.int64),
        flagged_lo=np.where(np.isinf(flagged_lo), np.nan, flagged_lo),
        flagged_hi=np.where(np.isinf(flagged_hi), np.nan, flagged_hi),
        flag_counts=flag_counts,
    )


def level_for(seconds: float, budget: int) -> Level | None:
    """The level a chart of ``seconds`` with ``budget`` points per trace reads: the coarsest whose buckets
    are still no wider than the chart's (budget/2 buckets of a min and a max each), so the chart keeps its
    full resolution from the fewest rows; but one level coarser while that would read more than
    READ_FACTOR x budget rows per trace (30 days of minutes: 43,200 rows, ~0.6 s on PostgreSQL; of hours:
    720, ~2 % of it, drawn as 720 instead of 1,000 buckets). None when even 1-minute buckets are too coarse
    (short ranges read raw readings)."""
    width = seconds / max(1, budget // 2)
    fitting = [i for i, level in enumerate(LEVELS) if level.seconds <= width]
    if not fitting:
        return None
    i = fitting[-1]
    while i + 1 < len(LEVELS) and seconds / LEVELS[i].seconds > READ_FACTOR * budget:
        i += 1
    return LEVELS[i]
