"""Reading time series out of the database: raw rows for short ranges, SQL time buckets for long ones.

This is the ORM edge of the chart and health code: it returns NumPy arrays and the numeric work happens
in plant.downsample and plant.health. Bucketing is done by the database (GROUP BY sensor, bucket) because
a month of 1 Hz data is 2.6 M rows per sensor, far too many to move into Python for every page view.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import NotSupportedError, connection
from django.db.models import Avg, Count, F, FloatField, Func, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Greatest, Least

from plant.choices import AVAILABILITY_FLAGS, SENSOR_FAULT_FLAGS, QualityFlag
from plant.models import Asset, Reading
from plant.pgcopy import pg_copy_series

# The bucket mean only places flag markers (plant.charts); PostgreSQL's AVG(float8) also sums squares and
# raises "value out of range: overflow" past ~1e154, so it averages values clamped to this magnitude.
MEAN_CLAMP = 1e100
# The quality values that carry no sensor-fault bit: flags of data availability only (GAP).
_AVAILABILITY_ONLY = [q for q in range(1, int(max(QualityFlag)) * 2) if not q & SENSOR_FAULT_FLAGS]


class TimeBucket(Func):
    """Index of the `width_s`-second bucket a timestamp falls in, counted from `origin_s` (Unix seconds).

    Only rows at or after the origin may be bucketed: SQLite's CAST truncates towards zero, which equals
    FLOOR for non-negative values only (SQLite's FLOOR is a slow Python function registered by Django).
    """

    output_field = FloatField()

    def __init__(self, expression: str, *, origin_s: float, width_s: float) -> None:
        super().__init__(F(expression))
        self.origin_s, self.width_s = float(origin_s), float(width_s)

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]
        ts_sql, ts_params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            # date_part returns float8; EXTRACT returns numeric, which makes a month of 1 Hz data 2x slower.
            sql = f"FLOOR((date_part('epoch', {ts_sql}) - %s) / %s)"
        elif connection.vendor == "sqlite":
            sql = f"CAST((((julianday({ts_sql}) - 2440587.5) * 86400.0) - %s) / %s AS INTEGER)"
        else:
            raise NotSupportedError(f"time buckets are not implemented for {connection.vendor}")
        return sql, (*ts_params, self.origin_s, self.width_s)


@dataclass(frozen=True)
class RawSeries:
    """Raw readings of one sensor in time order; `t` is Unix seconds."""

    t: np.ndarray
    value: np.ndarray
    quality: np.ndarray


@dataclass(frozen=True)
class BucketSeries:
    """Per-bucket aggregates of one sensor; only buckets that hold at least one reading are present.

    `flag_counts[flag]` counts the readings of each bucket carrying that QualityFlag bit; `flagged_lo` and
    `flagged_hi` are the extremes of the flagged readings (NaN where a bucket has none), which is where a
    chart puts its flag markers.
    """

    start_s: float
    width_s: float
    index: np.ndarray
    count: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    flagged: np.ndarray
    flagged_lo: np.ndarray
    flagged_hi: np.ndarray
    flag_counts: dict[QualityFlag, np.ndarray]
    # Readings with a sensor-fault flag (SENSOR_FAULT_FLAGS: any flag but GAP); load_buckets fills it.
    faulty: np.ndarray | None = None

    @property
    def t_start(self) -> np.ndarray:
        return self.start_s + self.index * self.width_s

    @property
    def t_mid(self) -> np.ndarray:
        return self.t_start + self.width_s / 2


def load_raw(sensor_ids: list[int], start: datetime, end: datetime) -> dict[int, RawSeries]:
    """All readings of the sensors in [start, end), in one query."""
    rows = (
        Reading.objects.filter(sensor_id__in=sensor_ids, ts__gte=start, ts__lt=end)
        .order_by("sensor_id", "ts")
        .values_list("sensor_id", "ts", "value", "quality")
    )
    grouped: dict[int, list[tuple[float, float, int]]] = {pk: [] for pk in sensor_ids}
    for sensor_id, ts, value, quality in rows:
        grouped[sensor_id].append((ts.timestamp(), value, quality))
    out = {}
    for pk, items in grouped.items():
        arr = np.array(items, dtype=float).reshape(-1, 3)
        out[pk] = RawSeries(t=arr[:, 0], value=arr[:, 1], quality=arr[:, 2].astype(np.int64))
    return out


def load_buckets(
    sensor_ids: list[int], start: datetime, end: datetime, width_s: float, *, origin: datetime | None = None
) -> dict[int, BucketSeries]:
    """Per-bucket aggregates of the sensors in [start, end), in one GROUP BY query for all of them, on a
    grid of buckets counted from ``origin`` (at or before ``start``; default ``start``)."""
    origin = (origin or start).timestamp()
    # SUM(quality & bit) / bit counts the readings carrying that bit, on SQLite (no bit_or) and PG alike.
    flag_sums = {f"f{int(flag)}": Sum(F("quality").bitand(int(flag))) for flag in QualityFlag}
    rows = (
        Reading.objects.filter(sensor_id__in=sensor_ids, ts__gte=start, ts__lt=end)
        .annotate(bucket=TimeBucket("ts", origin_s=origin, width_s=width_s))
        .values("sensor_id", "bucket")
        .annotate(
            n=Count("pk"),
            lo=Min("value"),
            hi=Max("value"),
            mean=Avg(Greatest(Least("value", Value(MEAN_CLAMP)), Value(-MEAN_CLAMP))),
            n_flagged=Count("pk", filter=Q(quality__gt=0)),
            n_faulty=Count("pk", filter=Q(quality__gt=0) & ~Q(quality__in=_AVAILABILITY_ONLY)),
            flagged_lo=Min("value", filter=Q(quality__gt=0)),
            flagged_hi=Max("value", filter=Q(quality__gt=0)),
            **flag_sums,
        )
        .order_by("sensor_id", "bucket")
    )
    columns = [
        "bucket",
        "n",
        "lo",
        "hi",
        "mean",
        "n_flagged",
        "n_faulty",
        "flagged_lo",
        "flagged_hi",
        *flag_sums,
    ]
    grouped: dict[int, list[list[float]]] = {pk: [] for pk in sensor_ids}
    for row in rows:
        grouped[row["sensor_id"]].append([_num(row[c]) for c in columns])
    out = {}
    for pk, items in grouped.items():
        arr = np.array(items, dtype=float).reshape(-1, len(columns))
        col = dict(zip(columns, arr.T, strict=True))
        out[pk] = BucketSeries(
            start_s=origin,
            width_s=float(width_s),
            index=col["bucket"].astype(np.int64),
            count=col["n"].astype(np.int64),
            lo=col["lo"],
            hi=col["hi"],
            mean=col["mean"],
            flagged=col["n_flagged"].astype(np.int64),
            flagged_lo=col["flagged_lo"],
            flagged_hi=col["flagged_hi"],
            flag_counts={flag: (col[f"f{int(flag)}"] // int(flag)).astype(np.int64) for flag in QualityFlag},
            faulty=col["n_faulty"].astype(np.int64),
        )
    return out


def _num(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def read_readings(
    sensor_ids: list[int], start: datetime, end: datetime, *, include_start: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Readings of many sensors in (or [, with include_start) start, end], as NumPy columns sorted by sensor
    then time: (sensor id int64, ts epoch seconds float64, value float64, quality uint16).

    One query for all sensors. On PostgreSQL it is a binary COPY with one row of arrays per sensor, parsed
    by NumPy (plant.pgcopy.pg_copy_series): no Python object per reading, and the database sends the stored
    timestamps and floats as they are instead of formatting them as text (the fleet sweep reads every
    reading of its windows this way). The timestamps arrive as integer microseconds and are divided here,
    which gives exactly the float ``datetime.timestamp()`` gives.
    """
    if not sensor_ids:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.uint16)
    if connection.vendor != "postgresql":
        readings = Reading.objects.filter(sensor_id__in=list(sensor_ids), ts__lte=end)
        readings = readings.filter(ts__gte=start) if include_start else readings.filter(ts__gt=start)
        rows = list(readings.order_by("sensor_id", "ts").values_list("sensor_id", "ts", "value", "quality"))
        return (
            np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
            np.fromiter((row[1].timestamp() for row in rows), dtype=np.float64, count=len(rows)),
            np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows)),
            np.fromiter((row[3] for row in rows), dtype=np.uint16, count=len(rows)),
        )
    meta = Reading._meta
    qn = connection.ops.quote_name
    c_sensor, c_ts, c_value, c_quality = (
        qn(meta.get_field(name).column) for name in ("sensor", "ts", "value", "quality")
    )
    # The arrays are filled in the order of the sorted sub-select (the index order, so no sort step);
    # the order is checked below all the same, as SQL does not promise it.
    sql = (
        f"COPY (SELECT s, array_agg(t), array_agg(v), array_agg(q) FROM (SELECT {c_sensor} AS s, {c_ts} AS t,"
        f" {c_value} AS v, {c_quality} AS q FROM {qn(meta.db_table)} WHERE {c_sensor} = ANY(%s::int8[])"
        f" AND {c_ts} {'>=' if include_start else '>'} %s AND {c_ts} <= %s ORDER BY {c_sensor}, {c_ts}) AS r"
        " GROUP BY s ORDER BY s) TO STDOUT (FORMAT BINARY)"
    )
    # The ids as one array literal: quoting a list parameter costs a Python call per element.
    ids = "{" + ",".join(str(int(sensor_id)) for sensor_id in sensor_ids) + "}"
    statement = connection.ops.compose_sql(sql, [ids, start, end])  # COPY takes no bound parameters
    buffer = bytearray()
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for block in copy:
            buffer += block
    sid, ts_us, values, quality = pg_copy_series(buffer)
    if len(sid) > 1 and ((sid[1:] == sid[:-1]) & (ts_us[1:] < ts_us[:-1])).any():
        order = np.lexsort((ts_us, sid))
        sid, ts_us, values, quality = sid[order], ts_us[order], values[order], quality[order]
    return sid, ts_us / 1e6, values, quality


def load_series(sensor_roles: dict[int, str], start: datetime, end: datetime) -> dict[str, tuple]:
    """{role: (ts_s float64, values float64, quality uint16)} for the given sensors over [start, end] (one
    ``read_readings`` query); roles whose sensor has no reading there are left out."""
    ids, ts, values, quality = read_readings(list(sensor_roles), start, end)
    series = {}
    for sensor_id, role in sensor_roles.items():
        mine = ids == sensor_id
        if mine.any():
            series[role] = (ts[mine], values[mine], quality[mine])
    return series


def role_sensors(asset: Asset, roles: Collection[str]) -> tuple[dict[int, str], dict[str, float]]:
    """One sensor per role (the lowest id, as the scorer and training pick) and each role's sample period."""
    sensor_roles: dict[int, str] = {}
    periods: dict[str, float] = {}
    for sensor_id, role, period in (
        asset.sensors.filter(role__key__in=list(roles))
        .order_by("pk")
        .values_list("pk", "role__key", "sample_period_s")
    ):
        if role not in periods:
            sensor_roles[sensor_id] = role
            periods[role] = float(period)
    return sensor_roles, periods


@dataclass(frozen=True)
class MissingSpan:
    """Readings of one sensor that did not arrive: from its last reading before a GAP-flagged one (``start``,
    None when no earlier reading is stored) to that reading (``end``)."""

    asset_id: int
    sensor_id: int
    sensor_key: str
    role: str  # the sensor's role key
    start: datetime | None
    end: datetime


def missing_spans(spans: Collection[tuple[int, datetime, datetime]]) -> list[MissingSpan]:
    """The gaps (readings flagged GAP, plant.choices.AVAILABILITY_FLAGS) that ended in each (asset, start,
    end] of ``spans``, oldest first, with the reading before each gap: one query for all the spans."""
    where = Q()
    for asset_id, start, end in spans:
        where |= Q(sensor__asset_id=asset_id, ts__gt=start, ts__lte=end)
    if not where:
        return []
    before = Reading.objects.filter(sensor_id=OuterRef("sensor_id"), ts__lt=OuterRef("ts")).order_by("-ts")
    rows = (
        Reading.objects.filter(where)
        .annotate(gap=F("quality").bitand(AVAILABILITY_FLAGS), since=Subquery(before.values("ts")[:1]))
        .filter(gap__gt=0)
        .order_by("ts", "sensor_id")
        .values_list("sensor__asset_id", "sensor_id", "sensor__key", "sensor__role__key", "since", "ts")
    )
    return [MissingSpan(*row) for row in rows]
