"""plant_reading range-partitioned on PostgreSQL (plant.storage): partitions ahead, readings far outside
them, the unique (sensor, ts) guarantee, ORM deletes, and the conversion of an existing plain table.

Marked `postgres`: they fail (never skip) on another database; the SQLite run leaves them out with
`-m "not postgres"` (Makefile), CI's PostgreSQL run includes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from plant import storage
from plant.ingest.store import datetime_to_us, load_context, write_readings
from plant.models import Reading
from plant.tasks import ensure_reading_partitions_task
from tests.conftest import make_readings

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    assert connection.vendor == "postgresql", "these tests need PostgreSQL (DATABASE_URL=postgres://...)"
    # Partitions created by an earlier test were rolled back with it: forget them.
    storage.forget_partitions()


def _write(sensor_id: int, stamps: list[datetime], value: float = 1.0) -> int:
    n = len(stamps)
    return write_readings(
        np.full(n, sensor_id, np.int64),
        np.array([datetime_to_us(ts) for ts in stamps], np.int64),
        np.full(n, value),
        np.zeros(n, np.int16),
    )


def _partition_of(sensor_id: int, ts: datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM plant_reading WHERE sensor_id = %s AND ts = %s",
            [sensor_id, ts],
        )
        return cursor.fetchone()[0]


def test_the_readings_table_is_partitioned_with_partitions_ahead_of_now(settings):
    assert storage.is_partitioned()
    parts = storage.partitions()
    now = timezone.now()
    ahead = now + storage.partition_period() * settings.VIGIL_READING_PARTITIONS_AHEAD
    assert any(p.start <= now < p.end for p in parts)
    assert any(p.start <= ahead < p.end for p in parts)
    assert all(p.end - p.start == timedelta(days=settings.VIGIL_READING_PARTITION_DAYS) for p in parts)


def test_the_beat_task_creates_the_coming_partitions_once(settings):
    settings.VIGIL_READING_PARTITIONS_AHEAD = 6
    far = timezone.now() + storage.partition_period() * 6
    assert not any(p.start <= far < p.end for p in storage.partitions())
    created = ensure_reading_partitions_task()
    assert created
    assert any(p.start <= far < p.end for p in storage.partitions())
    assert ensure_reading_partitions_task() == []  # idempotent


def test_ingest_creates_the_partition_of_a_reading_far_outside_every_partition(asset):
    sensor = asset.sensors.first()
    old, future = datetime(2001, 3, 4, 5, 6, tzinfo=UTC), datetime(2080, 1, 1, tzinfo=UTC)
    assert _write(sensor.pk, [old, future]) == 2
    for moment in (old, future):
        first_day = storage.period_start(moment, storage.partition_period())
        assert _partition_of(sensor.pk, moment) == f"plant_reading_p{first_day:%Y%m%d}"
    # Only the periods holding readings got a partition, not the eighty years between them.
    assert len([p for p in storage.partitions() if p.start.year < 2020]) == 1
    # Both stay unique: writing them again stores nothing (the ON CONFLICT path).
    assert _write(sensor.pk, [old, future]) == 0
    assert Reading.objects.filter(sensor=sensor).count() == 2


def test_a_row_another_writer_puts_outside_every_partition_waits_in_default_then_moves(asset):
    """A bulk_create or a tool's COPY (not plant.ingest) is caught by the DEFAULT partition; those rows do
    not block creating their range partition, which takes them over (the beat task, or ingest)."""
    sensor = asset.sensors.first()
    moment = datetime(2010, 6, 1, tzinfo=UTC)
    make_readings(sensor, moment, range(3), period_s=3600)
    assert _partition_of(sensor.pk, moment) == "plant_reading_default"
    created = ensure_reading_partitions_task()
    first_day = storage.period_start(moment, storage.partition_period())
    assert f"plant_reading_p{first_day:%Y%m%d}" in created
    assert _partition_of(sensor.pk, moment) == f"plant_reading_p{first_day:%Y%m%d}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM plant_reading_default")
        assert cursor.fetchone()[0] == 0
    assert Reading.objects.filter(sensor=sensor).count() == 3
    # Ingest into a period whose rows wait in DEFAULT moves them as well.
    later = datetime(2012, 6, 1, tzinfo=UTC)
    make_readings(sensor, later, range(2))
    assert _write(sensor.pk, [later + timedelta(hours=1)]) == 1
    assert _partition_of(sensor.pk, later).startswith("plant_reading_p2012")
    assert Reading.objects.filter(sensor=sensor).count() == 6


def test_the_copy_fast_path_and_the_unique_sensor_ts_guarantee_are_kept(asset):
    sensor = asset.sensors.first()
    now = timezone.now().replace(microsecond=0)
    stamps = [now - timedelta(seconds=s) for s in range(10)]
    assert _write(sensor.pk, stamps) == 10
    assert _write(sensor.pk, stamps[:5] + [now + timedelta(seconds=1)]) == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Reading.objects.create(sensor=sensor, ts=stamps[0], value=2.0)
    assert Reading.objects.filter(sensor=sensor).count() == 11


def test_orm_saves_deletes_and_the_sensor_cascade_work_by_id(asset):
    sensor, other = list(asset.sensors.all()[:2])
    start = timezone.now() - timedelta(hours=1)
    make_readings(sensor, start, range(5))
    make_readings(other, start, range(5))
    reading = Reading.objects.filter(sensor=sensor).order_by("ts").first()
    reading.value = 42.0
    reading.save()
    assert Reading.objects.get(pk=reading.pk).value == 42.0
    reading.delete()
    assert Reading.objects.filter(sensor=sensor).count() == 4
    sensor.delete()
    assert not Reading.objects.filter(sensor_id=sensor.pk).exists()
    assert Reading.objects.filter(sensor=other).count() == 5


SCRATCH = "scratch_reading"


def _relkind(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        return cursor.fetchone()[0]


def test_converting_an_existing_plain_table_keeps_every_row_id_and_the_unique_constraint():
    """The 0013 migration's function on a scratch copy of the table as Django created it before."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {SCRATCH} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " ts timestamptz NOT NULL, value double precision NOT NULL,"
            " quality smallint NOT NULL CHECK (quality >= 0), sensor_id bigint NOT NULL,"
            " CONSTRAINT scratch_unique_sensor_ts UNIQUE (sensor_id, ts))"
        )
        cursor.execute(
            f"INSERT INTO {SCRATCH} (sensor_id, ts, value, quality)"
            " SELECT s, %s - g * interval '1 hour', g, 0 FROM generate_series(1, 3) s,"
            " generate_series(0, 24 * 40) g",
            [now],
        )
        cursor.execute(
            f"INSERT INTO {SCRATCH} (sensor_id, ts, value, quality) VALUES (1, '1999-01-01', 0, 0)"
        )
        cursor.execute(f"SELECT count(*), sum(id), max(id), sum(value) FROM {SCRATCH}")
        before = cursor.fetchone()

        storage.partition_table(SCRATCH, now)

        assert _relkind(SCRATCH) == "p"
        cursor.execute(f"SELECT count(*), sum(id), max(id), sum(value) FROM {SCRATCH}")
        assert cursor.fetchone() == before
        cursor.execute(f"SELECT count(*) FROM {SCRATCH}{storage.DEFAULT_SUFFIX}")
        assert cursor.fetchone()[0] == 0  # every stored row found its range partition
        assert len(storage.partitions(SCRATCH)) >= 7  # 40 days, 1999's week, the weeks ahead
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(
                f"INSERT INTO {SCRATCH} (sensor_id, ts, value, quality) VALUES (1, %s, 0, 0)", [now]
            )
        cursor.execute(
            f"INSERT INTO {SCRATCH} (sensor_id, ts, value, quality) VALUES (9, %s, 0, 0) RETURNING id", [now]
        )
        assert cursor.fetchone()[0] > before[2]  # the id sequence continues

        storage.unpartition_table(SCRATCH)

        assert _relkind(SCRATCH) == "r"
        cursor.execute(f"SELECT count(*) FROM {SCRATCH}")
        assert cursor.fetchone()[0] == before[0] + 1
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(
                f"INSERT INTO {SCRATCH} (sensor_id, ts, value, quality) VALUES (1, %s, 0, 0)", [now]
            )


def test_a_unique_constraint_without_the_partition_key_is_refused():
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {SCRATCH} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " ts timestamptz NOT NULL, sensor_id bigint NOT NULL, CONSTRAINT scratch_u UNIQUE (sensor_id))"
        )
    with pytest.raises(ValueError, match="lacks the partition key"):
        storage.partition_table(SCRATCH, timezone.now())


def test_the_ingest_context_finds_earlier_readings_beyond_its_look_back(asset):
    """load_context searches a day back first (so the planner prunes partitions); a sensor with fewer earlier
    readings there gets them from an unbounded search, without duplicates."""
    slow, fast = list(asset.sensors.all()[:2])
    batch_at = timezone.now().replace(microsecond=0)
    make_readings(slow, batch_at - timedelta(days=20), range(3), period_s=3600)
    make_readings(slow, batch_at - timedelta(hours=2), range(2), period_s=60)
    make_readings(fast, batch_at - timedelta(minutes=10), range(10), period_s=1)
    first = np.array([datetime_to_us(batch_at)] * 2, np.int64)
    sid, ts, _ = load_context(np.array([slow.pk, fast.pk]), first, first + 10**6, before=4, span_limit=100)
    assert sorted(ts[sid == slow.pk]) == [
        datetime_to_us(batch_at - timedelta(days=20) + timedelta(hours=h)) for h in (1, 2)
    ] + [datetime_to_us(batch_at - timedelta(hours=2) + timedelta(minutes=m)) for m in (0, 1)]
    assert len(ts[sid == fast.pk]) == 4
