from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from plant import rollups
from plant import charts
from plant.charts import asset_figure, trace_points
from plant.choices import QualityFlag
from plant.forms import TimeRange
from plant.models import Reading, ReadingRollupHour, ReadingRollupMinute, RollupWatermark
from plant.series import load_buckets
from plant.tasks import roll_up_readings_task
from tests.conftest import T0, make_readings


def raw_aggregates(seconds: int) -> dict[tuple[int, datetime], tuple]:
    """What a rollup level must hold, computed in Python from every raw reading."""
    groups: dict[tuple[int, datetime], list[tuple[float, int]]] = defaultdict(list)
    for sensor_id, ts, value, quality in Reading.objects.values_list("sensor_id", "ts", "value", "quality"):
        start = datetime.fromtimestamp(ts.timestamp() // seconds * seconds, dt_timezone.utc)
        groups[(sensor_id, start)].append((value, quality))
    out = {}
    for key, rows in groups.items():
        values = [v for v, _ in rows]
        flagged = [v for v, q in rows if q]
        bits = 0
        for _, q in rows:
            bits |= q
        out[key] = (
            len(rows),
            sum(values),
            min(values),
            max(values),
            len(flagged),
            min(flagged) if flagged else None,
            max(flagged) if flagged else None,
            bits,
        )
    return out


def stored(model) -> dict[tuple[int, datetime], tuple]:
    return {
        (r.sensor_id, r.start): (
            r.count,
            r.total,
            r.low,
            r.high,
            r.flagged,
            r.flagged_low,
            r.flagged_high,
            r.flag_bits,
        )
        for r in model.objects.all()
    }


def assert_rollups_match_raw() -> None:
    for model, seconds in ((ReadingRollupMinute, 60), (ReadingRollupHour, 3600)):
        want, got = raw_aggregates(seconds), stored(model)
        assert got.keys() == want.keys()
        for key, row in want.items():
            assert got[key][0] == row[0], key
            assert math.isclose(got[key][1], row[1], rel_tol=1e-9, abs_tol=1e-9), key
            assert got[key][2:] == row[2:], key


def add_readings(sensor, times_s, values, qualities) -> None:
    Reading.objects.bulk_create(
        Reading(sensor=sensor, ts=T0 + timedelta(seconds=float(t)), value=float(v), quality=int(q))
        for t, v, q in zip(times_s, values, qualities, strict=True)
    )


@pytest.mark.django_db
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    span_s=st.sampled_from([90, 3_000, 10_000]),
    batches=st.integers(1, 4),
)
def test_rollups_equal_the_raw_aggregates_of_random_readings(asset, seed, n, span_s, batches):
    Reading.objects.all().delete()
    ReadingRollupMinute.objects.all().delete()
    ReadingRollupHour.objects.all().delete()
    RollupWatermark.objects.all().delete()
    rng = np.random.default_rng(seed)
    sensors = list(asset.sensors.all()[:2])
    # Distinct millisecond times per sensor, written in random order across several roll-up runs.
    for sensor in sensors:
        times = rng.choice(span_s * 1000, size=min(n, span_s * 1000), replace=False) / 1000.0
        values = rng.normal(0, 100, len(times)).round(3)
        qualities = rng.choice([0, 0, 0, 1, 2, 4, 8, 16, 3], len(times))
        for part in np.array_split(np.arange(len(times)), batches):
            add_readings(sensor, times[part], values[part], qualities[part])
            rollups.roll_up_readings()
    assert_rollups_match_raw()


@pytest.mark.django_db
def test_late_readings_are_counted_exactly_once(asset):
    sensor = asset.sensors.first()
    make_readings(sensor, T0, np.arange(600.0))  # ten minutes
    report = rollups.roll_up_readings()
    assert report.done_id == Reading.objects.latest("id").id
    # Readings arriving now for minutes (and the hour) already rolled up, older than the watermark's time.
    add_readings(sensor, [30.5, 150.25, 599.5], [-7.0, 1000.0, 3.0], [0, 2, 0])
    rollups.roll_up_readings()
    rollups.roll_up_readings()  # a second run finds nothing new and changes nothing
    assert_rollups_match_raw()
    first = ReadingRollupMinute.objects.get(sensor=sensor, start=T0)
    assert (first.count, first.low) == (61, -7.0)
    hour = ReadingRollupHour.objects.get(sensor=sensor, start=T0)
    assert (hour.count, hour.high, hour.flagged, hour.flag_bits) == (603, 1000.0, 1, 2)


@pytest.mark.django_db
def test_an_outage_of_hours_is_caught_up_without_a_gap(asset, settings):
    settings.VIGIL_ROLLUP_PASS_IDS = 700  # many passes: the catch-up crosses pass boundaries mid-minute
    sensors = list(asset.sensors.all())
    make_readings(sensors[0], T0, np.zeros(120))
    rollups.roll_up_readings()
    # The task does not run for six hours while every sensor keeps sending (one reading every 10 s).
    for k, sensor in enumerate(sensors):
        make_readings(sensor, T0 + timedelta(minutes=2), np.sin(np.arange(2160.0)) + k, period_s=10.0)
    report = rollups.roll_up_readings()
    assert report.passes > 10 and report.done_id == Reading.objects.latest("id").id
    assert_rollups_match_raw()
    assert ReadingRollupHour.objects.filter(sensor=sensors[0]).count() == 7  # 08:00 .. 14:00, no gap


@pytest.mark.django_db
def test_a_gap_in_the_reading_ids_costs_no_empty_passes(asset, settings):
    # Ids far apart (readings deleted by retention, a sequence other tests or tools advanced): the run must
    # reach the newest reading in a few passes, not step through millions of empty id ranges (CI: 1,000
    # passes of 700 ids stopped 3.5 M ids short).
    settings.VIGIL_ROLLUP_PASS_IDS = 700
    sensor = asset.sensors.first()
    make_readings(sensor, T0, np.zeros(100))
    far = Reading.objects.latest("id").id + 50_000_000
    Reading.objects.create(id=far, sensor=sensor, ts=T0 + timedelta(hours=1), value=1.0)
    report = rollups.roll_up_readings()
    assert report.done_id == far and report.passes <= 3
    assert_rollups_match_raw()


@pytest.mark.django_db(transaction=True)
def test_ids_of_a_transaction_still_writing_are_waited_for(asset):
    sensor = asset.sensors.first()
    make_readings(sensor, T0, np.ones(60))
    if connection.vendor != "postgresql":
        # SQLite has one writer at a time: a reader never sees ids above a transaction still writing.
        assert rollups._snapshot()[1] == []
        return
    import psycopg

    params = connection.get_connection_params()
    with psycopg.connect(**params) as other:
        # The other transaction takes its id first and commits last.
        other.execute(
            "INSERT INTO plant_reading (sensor_id, ts, value, quality) VALUES (%s, %s, %s, 0)",
            [sensor.pk, T0 + timedelta(seconds=0.5), -50.0],
        )
        make_readings(sensor, T0 + timedelta(minutes=1), np.ones(60))
        report = rollups.roll_up_readings()
        assert report.waiting_for == 1 and report.done_id < Reading.objects.latest("id").id
        other.commit()
    report = rollups.roll_up_readings()
    assert report.waiting_for == 0 and report.done_id == Reading.objects.latest("id").id
    assert ReadingRollupMinute.objects.get(sensor=sensor, start=T0).low == -50.0
    assert_rollups_match_raw()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_transaction_writing_other_tables_is_not_waited_for(asset):
    # A long transaction that writes no reading (a retrain storing scores; autovacuum's ANALYZE, which
    # has a transaction id too) cannot hold reading ids: the rollups must not stall behind it. CI once
    # failed three rollup tests with waiting_for=1 while such a transaction of the test database ran.
    import psycopg

    sensor = asset.sensors.first()
    params = connection.get_connection_params()
    with psycopg.connect(**params) as other:
        other.execute("UPDATE plant_asset SET name = name WHERE id = %s", [asset.pk])
        assert other.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is not None
        make_readings(sensor, T0, np.ones(120))
        report = rollups.roll_up_readings()
        assert report.waiting_for == 0 and report.done_id == Reading.objects.latest("id").id
        other.rollback()
    assert_rollups_match_raw()


@pytest.mark.django_db
def test_readings_changed_in_place_are_recomputed(asset):
    sensor = asset.sensors.first()
    make_readings(sensor, T0, np.arange(120.0))
    rollups.roll_up_readings()
    Reading.objects.filter(sensor=sensor, ts__gte=T0 + timedelta(seconds=70)).update(
        quality=int(QualityFlag.DRIFT)
    )
    rollups.refresh_rollups([sensor.pk], T0 + timedelta(seconds=70), T0 + timedelta(minutes=2))
    assert_rollups_match_raw()
    assert ReadingRollupHour.objects.get(sensor=sensor).flagged == 50


@pytest.mark.django_db
def test_a_refresh_of_one_instant_finds_the_reading_at_it(asset):
    sensor = asset.sensors.first()
    make_readings(sensor, T0, np.arange(120.0))
    rollups.roll_up_readings()
    at = T0 + timedelta(seconds=60)
    Reading.objects.filter(sensor=sensor, ts=at).update(quality=int(QualityFlag.SPIKE))
    rollups.refresh_rollups([sensor.pk], at, at)
    assert ReadingRollupMinute.objects.get(sensor=sensor, start=at).flagged == 1


@pytest.mark.parametrize(
    ("span", "level"),
    [
        (timedelta(hours=2), None),
        (timedelta(hours=12), None),  # 1-minute buckets would be coarser than the chart's 43 s
        (timedelta(days=1), rollups.MINUTE),
        (timedelta(days=7), rollups.MINUTE),
        (timedelta(days=30), rollups.HOUR),  # 43,200 minutes would be more than 10 x 2,000 rows
        (timedelta(days=365), rollups.HOUR),
    ],
)
def test_the_chart_reads_the_coarsest_level_that_still_fills_its_budget(span, level):
    seconds = span.total_seconds()
    chosen = rollups.level_for(seconds, 2000)
    assert chosen == level
    if chosen is not None:
        finer = [lv for lv in rollups.LEVELS if lv.seconds < chosen.seconds]
        # Finer levels are passed over only when they would read too many rows.
        assert all(seconds / lv.seconds > rollups.READ_FACTOR * 2000 for lv in finer)
        coarser = [lv for lv in rollups.LEVELS if lv.seconds > chosen.seconds]
        assert all(lv.seconds > seconds / 1000 for lv in coarser) or chosen == rollups.LEVELS[-1]


@pytest.mark.django_db
@pytest.mark.parametrize("days", [3, 90])
def test_a_chart_from_rollups_draws_what_the_raw_readings_draw(asset, days, django_assert_max_num_queries):
    sensor = asset.sensors.select_related("role").first()
    n = days * 24 * 6  # one reading every 10 minutes: few rows, long ranges
    values = np.sin(np.arange(n) / 50.0) * 10
    values[n // 3] = 500.0
    quality = np.zeros(n, dtype=int)
    quality[n // 3] = QualityFlag.SPIKE
    sensor.sample_period_s = 1.0  # judged as a 1 Hz sensor: the chart must bucket
    make_readings(sensor, T0, values, period_s=600.0, quality=quality)
    rollups.roll_up_readings()
    # The newest readings are not rolled up yet: the chart takes them from the raw table.
    make_readings(sensor, T0 + timedelta(seconds=600 * n), [-40.0] * 3, period_s=600.0)
    span = TimeRange(T0, T0 + timedelta(days=days, hours=1), "custom")
    level = rollups.level_for(span.seconds, 2000)
    assert level is not None
    with django_assert_max_num_queries(3):
        figure = asset_figure([sensor], span)
    assert max(trace_points(figure)) <= 2000
    line, marker = figure["data"]
    # The sensor is said to read at 1 Hz, so its 10-minute spacing is a gap by the GAP rule: null points break the line.
    drawn = [v for v in line["y"] if v is not None]
    assert max(drawn) == 500.0 and min(drawn) == -40.0
    assert marker["name"].endswith("spike") and marker["y"] == [500.0]
    # Same buckets as the raw SQL path, where the level's buckets nest in the chart's.
    width = span.seconds / 1000
    raw = load_buckets([sensor.pk], span.start, span.end, width)[sensor.pk]
    got = rollups.load_level_buckets(level, [sensor.pk], span.start, span.end, width)[sensor.pk]
    assert got.count.sum() == raw.count.sum() == n + 3
    assert got.hi.max() == raw.hi.max() and got.lo.min() == raw.lo.min()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kathmandu", "America/St_Johns"])
def test_chart_times_vectorised_equal_the_one_by_one_formatting(zone):
    tz = charts._zone(zone)
    rng = np.random.default_rng(7)
    # Two years around DST changes, with sub-millisecond parts and times on whole milliseconds.
    t = np.sort(np.r_[rng.uniform(1.74e9, 1.80e9, 3000), np.arange(1.7430e9, 1.7431e9, 0.001)[:500]])
    assert charts.wall_clock(t, tz) == [charts._iso(v, tz) for v in t]


@pytest.mark.django_db
def test_the_beat_task_rolls_up_what_was_written(asset, settings):
    entry = settings.CELERY_BEAT_SCHEDULE["roll-up-readings"]
    assert entry["task"] == roll_up_readings_task.name and entry["options"]["expires"] > 0
    make_readings(asset.sensors.first(), T0, np.arange(90.0))
    result = roll_up_readings_task()
    assert result["done_id"] == Reading.objects.latest("id").id and result["waiting_for"] == 0
    assert_rollups_match_raw()


@pytest.mark.django_db
def test_a_reading_committed_below_the_watermark_is_counted_by_the_next_run(asset):
    # A writer took id 50 before the run but committed after it (in a moment no snapshot lists).
    sensor = asset.sensors.first()
    Reading.objects.bulk_create(
        Reading(id=i, sensor=sensor, ts=T0 + timedelta(seconds=i), value=float(i))
        for i in range(1, 101)
        if i != 50
    )
    assert rollups.roll_up_readings().done_id == 100
    Reading.objects.create(id=50, sensor=sensor, ts=T0 + timedelta(seconds=50), value=-1.0)
    rollups.roll_up_readings()
    assert ReadingRollupMinute.objects.get(sensor=sensor, start=T0).low == -1.0
    assert_rollups_match_raw()
    assert RollupWatermark.objects.get().checked_id == 100
