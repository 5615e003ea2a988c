from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from plant.choices import HealthStatus, QualityFlag
from plant.health import asset_health, sensor_health
from tests.conftest import T0, make_asset, make_readings

NOW = T0 + timedelta(hours=25)
HOUR_AGO = NOW - timedelta(hours=1)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sensor(asset):
    return asset.sensors.get(role__key="vibration")


def health_of(sensor, **kwargs):
    return sensor_health([sensor], now=NOW, **kwargs)[sensor.pk]


def test_a_sensor_reporting_every_sample_cleanly_is_ok(sensor):
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0))
    health = health_of(sensor)
    assert health.status == HealthStatus.OK
    assert (health.readings, health.expected) == (3600, 3600)
    assert health.last_value == 4.0 and health.last_ts == NOW - timedelta(seconds=1)
    assert health.problems == []
    assert set(health.flag_counts.values()) == {0}


def test_a_sensor_that_never_reported_is_silent(sensor):
    health = health_of(sensor)
    assert health.status == HealthStatus.SILENT
    assert health.last_ts is None
    assert health.problems == ["has never reported a reading"]


def test_a_sensor_quiet_for_ten_minutes_is_silent(sensor):
    make_readings(sensor, HOUR_AGO, np.full(3000, 4.0))
    health = health_of(sensor)
    assert health.status == HealthStatus.SILENT
    assert "no reading for 10 min" in health.problems


def test_a_short_batching_pause_is_not_silence(sensor):
    make_readings(sensor, HOUR_AGO, np.full(3590, 4.0))
    assert health_of(sensor).status == HealthStatus.OK


def test_more_than_a_fifth_of_readings_flagged_is_bad(sensor):
    quality = [QualityFlag.SPIKE if i % 4 == 0 else 0 for i in range(3600)]
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0), quality=quality)
    health = health_of(sensor)
    assert health.status == HealthStatus.BAD
    assert health.flag_counts["spike"] == 900 and health.flagged == 900
    assert "900 of 3,600 readings flagged (25%): spike 900" in health.problems


def test_a_sensor_stuck_right_now_is_bad_even_with_few_flags(sensor):
    quality = [0] * 3590 + [QualityFlag.STUCK] * 10
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.25), quality=quality)
    health = health_of(sensor)
    assert health.status == HealthStatus.BAD
    assert "stuck at 4.25 mm/s" in health.problems


def test_a_few_flags_make_a_warning(sensor):
    quality = [
        QualityFlag.OUT_OF_RANGE if i in (10, 20) else QualityFlag.GAP if i == 30 else 0 for i in range(3600)
    ]
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0), quality=quality)
    health = health_of(sensor)
    assert health.status == HealthStatus.WARN
    assert health.flag_counts["out of range"] == 2
    assert health.gap_count == 1
    assert "3 of 3,600 readings flagged (<1%): out of range 2, after gap 1" in health.problems


def test_missing_readings_make_a_warning(sensor):
    make_readings(sensor, HOUR_AGO, np.full(1800, 4.0), period_s=2.0)
    health = health_of(sensor)
    assert health.status == HealthStatus.WARN
    assert "only 50% of expected readings (1,800 of 3,600)" in health.problems


def test_a_level_shift_against_yesterday_is_reported_as_drift(sensor):
    sensor.sample_period_s = 10.0
    sensor.save()
    rng = np.random.default_rng(1)
    baseline = 4.0 + rng.normal(0, 0.05, 24 * 360)
    make_readings(sensor, NOW - timedelta(hours=25), baseline, period_s=10.0)
    make_readings(sensor, HOUR_AGO, 5.5 + rng.normal(0, 0.05, 360), period_s=10.0)
    health = health_of(sensor)
    assert health.status == HealthStatus.WARN
    assert any(p.startswith("drifting: +1.5 mm/s vs yesterday") for p in health.problems)
    assert health_of(sensor, drift=False).status == HealthStatus.OK


def test_an_unchanged_level_is_not_drift(sensor):
    sensor.sample_period_s = 10.0
    sensor.save()
    rng = np.random.default_rng(2)
    make_readings(sensor, NOW - timedelta(hours=25), 4.0 + rng.normal(0, 0.05, 25 * 360), period_s=10.0)
    assert health_of(sensor).status == HealthStatus.OK


def test_health_of_many_sensors_costs_two_queries(site, django_assert_num_queries):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(5)]
    sensors = [s for a in assets for s in a.sensors.all()]
    make_readings(sensors[0], HOUR_AGO, np.full(100, 1.0))
    with django_assert_num_queries(2):
        health = sensor_health(sensors, now=NOW)
    assert len(health) == 20


def test_asset_health_is_the_worst_sensor_status(asset):
    sensors = list(asset.sensors.all())
    make_readings(sensors[0], HOUR_AGO, np.full(3600, 1.0))
    make_readings(sensors[1], HOUR_AGO, np.full(3600, 1.0), quality=QualityFlag.SPIKE)
    health = sensor_health(sensors[:2], now=NOW)
    assert asset_health(health.values()) == HealthStatus.BAD
    assert asset_health([]) == HealthStatus.OK
