"""Raw-reading retention (plant.retention): expired readings go, alert evidence and longer-kept sites stay.

The batched-delete tests run on every database (SQLite's only path); those marked `postgres` check the
partition drops and fail (never skip) elsewhere."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from alerts.charts import chart_range, evidence_windows
from plant import retention, storage
from plant.builders import make_asset, make_site
from plant.models import Reading, ReadingRollupMinute, RollupWatermark
from plant.tasks import apply_reading_retention_task
from tests.alerts.builders import bare_champion, make_alert
from tests.conftest import make_readings

pytestmark = pytest.mark.django_db

DAYS = 90
HOUR = timedelta(hours=1)


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def _fill(asset, now) -> None:
    """One reading an hour for DAYS days on each sensor of the asset (on PostgreSQL into range partitions,
    as the beat task would have made them)."""
    start = now - timedelta(days=DAYS)
    if storage.is_partitioned():
        storage.ensure_partitions(start, now)
    for sensor in asset.sensors.all():
        make_readings(sensor, start, range(DAYS * 24), period_s=3600)


def _filled_asset_kept_30_days(now):
    """An asset of a site keeping raw readings 30 days, with DAYS days of hourly readings."""
    site = make_site("north")
    site.reading_retention_days = 30
    site.save()
    asset = make_asset(site)
    _fill(asset, now)
    return asset


def _oldest(asset):
    return Reading.objects.filter(sensor__asset=asset).order_by("ts").values_list("ts", flat=True).first()


def _bound(cutoff):
    """Where removal stops: the cutoff, or on PostgreSQL the start of the partition holding it (a partition's
    rows go together)."""
    if connection.vendor == "postgresql":
        return storage.period_start(cutoff, storage.partition_period())
    return cutoff


def _evidence(monkeypatch, windows) -> None:
    monkeypatch.setattr(retention, "_provider", lambda before: windows)


def test_expired_readings_are_deleted_in_batches_and_a_site_keeping_longer_keeps_them(monkeypatch, now):
    short, long_kept = make_site("short"), make_site("long")
    short.reading_retention_days, long_kept.reading_retention_days = 30, 60
    short.save(), long_kept.save()
    a, b = make_asset(short), make_asset(long_kept)
    _fill(a, now), _fill(b, now)
    _evidence(monkeypatch, [])

    report = retention.apply_retention(now=now, batch=500)

    assert _bound(now - timedelta(days=30)) <= _oldest(a) < _bound(now - timedelta(days=30)) + HOUR
    assert _bound(now - timedelta(days=60)) <= _oldest(b) < _bound(now - timedelta(days=60)) + HOUR
    sensors = a.sensors.count()
    kept_hours = (now - _bound(now - timedelta(days=30))) // HOUR
    assert Reading.objects.filter(sensor__asset=a).count() == sensors * kept_hours
    assert report.deleted_rows > 0


def test_the_readings_inside_an_alert_evidence_window_are_kept(monkeypatch, now):
    asset = _filled_asset_kept_30_days(now)
    kept_from, kept_to = now - timedelta(days=80, hours=3), now - timedelta(days=80)
    _evidence(monkeypatch, [(asset.pk, kept_from, kept_to)])

    retention.apply_retention(now=now, batch=1000)

    old = Reading.objects.filter(sensor__asset=asset, ts__lt=_bound(now - timedelta(days=30)))
    assert old.count() == asset.sensors.count() * 4  # hourly readings in a 3-hour closed window
    assert not old.exclude(ts__gte=kept_from, ts__lte=kept_to).exists()


def test_sites_without_a_retention_keep_everything_and_the_default_setting_applies(
    monkeypatch, now, settings
):
    site = make_site("north")
    asset = make_asset(site)
    _fill(asset, now)
    _evidence(monkeypatch, [])
    count = Reading.objects.count()
    assert retention.apply_retention(now=now).deleted_rows == 0
    assert Reading.objects.count() == count
    settings.VIGIL_READING_RETENTION_DAYS = 45
    apply_reading_retention_task()
    assert _oldest(asset) >= _bound(timezone.now() - timedelta(days=45, minutes=5))
    assert _oldest(asset) < now - timedelta(days=45) + storage.partition_period()


def test_a_real_alert_keeps_the_readings_its_chart_shows(now):
    """The alerts app's provider: each alert's chart span at its widest (alerts.charts.chart_range)."""
    asset = _filled_asset_kept_30_days(now)
    version = bare_champion(asset.asset_type)
    alert = make_alert(asset, version, opened=now - timedelta(days=70), state="resolved")
    span = chart_range(alert)
    assert evidence_windows(now - timedelta(days=30)) == [(asset.pk, span.start, span.end)]

    retention.apply_retention(now=now)

    old = Reading.objects.filter(sensor__asset=asset, ts__lt=_bound(now - timedelta(days=30)))
    assert old.exists()
    assert not old.exclude(ts__gte=span.start, ts__lte=span.end).exists()
    alert.refresh_from_db()  # the alert and its events are untouched
    assert alert.events.exists()


def test_the_site_page_shows_the_retention_in_force(client, technician, site, settings):
    client.force_login(technician)
    settings.VIGIL_READING_RETENTION_DAYS = None

    def text() -> str:
        return " ".join(client.get(reverse("plant:site", args=[site.slug])).content.decode().split())

    assert "Raw readings kept forever (the installation's default)" in text()
    settings.VIGIL_READING_RETENTION_DAYS = 90
    assert "Raw readings kept 90 days (the installation's default)" in text()
    site.reading_retention_days = 30
    site.save()
    assert "Raw readings kept 30 days (this site's setting)" in text()


# --- PostgreSQL: whole partitions dropped -------------------------------------------------------------------


def _partition_rows() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM plant_reading GROUP BY 1")
        return dict(cursor.fetchall())


@pytest.mark.postgres
def test_partitions_older_than_every_site_retention_are_dropped_keeping_alert_evidence(monkeypatch, now):
    assert connection.vendor == "postgresql", "this test needs PostgreSQL"
    asset = _filled_asset_kept_30_days(now)
    kept_from, kept_to = now - timedelta(days=80, hours=3), now - timedelta(days=80)
    _evidence(monkeypatch, [(asset.pk, kept_from, kept_to)])
    cutoff = now - timedelta(days=30)
    droppable = {p.name for p in storage.partitions() if p.end <= cutoff}
    evidence_partition = next(p.name for p in storage.partitions() if p.start <= kept_from < p.end)
    assert len(droppable) >= 8

    report = retention.apply_retention(now=now)

    assert set(report.dropped_partitions) == droppable
    assert report.kept_evidence_rows == asset.sensors.count() * 4
    rows = _partition_rows()
    assert not (droppable - {evidence_partition}) & set(rows)
    assert rows[evidence_partition] == asset.sensors.count() * 4  # the kept partition holds only evidence
    assert evidence_partition in {p.name for p in storage.partitions()}  # and is attached again
    with connection.cursor() as cursor:  # the detached partitions are gone, not left beside the table
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'plant_reading_p%%_expired'")
        assert cursor.fetchone()[0] == 0
    old = Reading.objects.filter(sensor__asset=asset, ts__lt=_bound(cutoff))
    assert not old.exclude(ts__gte=kept_from, ts__lte=kept_to).exists()
    assert Reading.objects.filter(sensor__asset=asset, ts__gte=now - timedelta(days=29)).count() > 0
    # A later run leaves the evidence-only partition alone.
    again = retention.apply_retention(now=now + timedelta(hours=1))
    assert again.dropped_partitions == [] and again.kept_evidence_rows == 0
    assert _partition_rows()[evidence_partition] == asset.sensors.count() * 4


@pytest.mark.postgres
def test_a_site_keeping_readings_forever_prevents_drops_and_the_other_site_is_deleted_in_batches(
    monkeypatch, now
):
    assert connection.vendor == "postgresql", "this test needs PostgreSQL"
    short, forever = make_site("short"), make_site("forever")
    short.reading_retention_days = 30
    short.save()
    a, b = make_asset(short), make_asset(forever)
    _fill(a, now), _fill(b, now)
    _evidence(monkeypatch, [])
    partitions = storage.partitions()

    report = retention.apply_retention(now=now)

    assert report.dropped_partitions == []
    assert storage.partitions() == partitions
    assert _bound(now - timedelta(days=30)) <= _oldest(a) < _bound(now - timedelta(days=30)) + HOUR
    assert _oldest(b) == now - timedelta(days=DAYS)


def _minute_buckets(asset, before) -> set:
    return set(
        ReadingRollupMinute.objects.filter(sensor__asset=asset, start__lt=before).values_list(
            "sensor_id", "start"
        )
    )


def test_the_readings_retention_removes_are_rolled_up_first_and_only_those(monkeypatch, now):
    asset = _filled_asset_kept_30_days(now)
    _evidence(monkeypatch, [])
    bound = _bound(now - timedelta(days=30))
    # Hourly readings: one minute bucket each, none rolled up yet (the beat task never ran).
    expired = {
        (sensor_id, ts.replace(second=0))
        for sensor_id, ts in Reading.objects.filter(ts__lt=bound).values_list("sensor_id", "ts")
    }
    assert expired and not ReadingRollupMinute.objects.exists()

    retention.apply_retention(now=now)

    assert not Reading.objects.filter(sensor__asset=asset, ts__lt=bound).exists()
    assert _minute_buckets(asset, bound) == expired  # every removed reading is in the rollups
    assert not ReadingRollupMinute.objects.filter(start__gte=bound).exists()  # no whole-table catch-up
    assert RollupWatermark.objects.filter(done_id__gt=0).count() == 0  # the beat task's watermark untouched


@pytest.mark.postgres
def test_a_partition_drop_rolls_up_its_readings_while_another_transaction_is_writing(monkeypatch, now):
    # A busy plant always has an ingest transaction in flight: the whole-table catch-up retention ran before
    # stopped at it, and the partitions went without their rollups.
    assert connection.vendor == "postgresql", "this test needs PostgreSQL"
    asset = _filled_asset_kept_30_days(now)
    _evidence(monkeypatch, [])
    cutoff = now - timedelta(days=30)
    dropped_before = max(p.end for p in storage.partitions() if p.end <= cutoff)
    expired = {
        (sensor_id, ts.replace(second=0))
        for sensor_id, ts in Reading.objects.filter(ts__lt=dropped_before).values_list("sensor_id", "ts")
    }
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or None,
        password=settings["PASSWORD"] or None,
    )
    try:
        other.execute("SELECT txid_current()")  # a transaction id, as a writer's
        report = retention.apply_retention(now=now)
    finally:
        other.rollback()
        other.close()

    assert report.dropped_partitions
    assert not Reading.objects.filter(ts__lt=dropped_before).exists()
    assert _minute_buckets(asset, dropped_before) == expired
