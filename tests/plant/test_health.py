from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from plant.choices import HealthStatus, QualityFlag
from plant.health import asset_health, sensor_health
from plant.models import Reading, Sensor
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


def test_one_gap_in_an_hour_is_not_degraded(sensor):
    # The demo's OT pumps: the bridge connects a few seconds after the PLC, one reading after a gap.
    quality = [QualityFlag.GAP if i == 600 else 0 for i in range(3590)]
    make_readings(sensor, HOUR_AGO + timedelta(seconds=10), np.full(3590, 4.0), quality=quality)
    health = health_of(sensor, drift=False)
    assert health.status == HealthStatus.OK
    assert health.gap_count == 1 and health.faulty == 0
    assert "1 gap in the data (missing readings: the link, not the sensor)" in health.problems


def test_isolated_flags_within_the_tolerance_are_listed_but_not_degraded(sensor):
    quality = [
        QualityFlag.OUT_OF_RANGE if i in (10, 20) else QualityFlag.GAP if i == 30 else 0 for i in range(3600)
    ]
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0), quality=quality)
    health = health_of(sensor)
    assert health.status == HealthStatus.OK
    assert health.flag_counts["out of range"] == 2
    assert health.gap_count == 1
    assert (
        "2 of 3,600 readings flagged (<1%, isolated: within the tolerance): out of range 2" in health.problems
    )


def test_flags_beyond_the_tolerance_over_the_hour_are_degraded(sensor):
    quality = [QualityFlag.SPIKE if i % 50 == 0 and i < 3000 else 0 for i in range(3600)]  # 60 = 1.7 %
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0), quality=quality)
    health = health_of(sensor, drift=False)
    assert health.status == HealthStatus.WARN
    assert "60 of 3,600 readings flagged (2%): spike 60" in health.problems


def test_three_spikes_in_the_last_five_minutes_are_degraded_and_single_ones_are_not(sensor):
    # The demo's spikes fault as ingest flags it: ~1.5 a minute (p-104 vibration: 3 in its first 2 min).
    spikes = {1000, 2000, 3000, 3400, 3500, 3580}
    make_readings(
        sensor,
        HOUR_AGO,
        np.full(3600, 4.0),
        quality=[QualityFlag.SPIKE if i in spikes else 0 for i in range(3600)],
    )
    health = health_of(sensor, drift=False)
    assert health.status == HealthStatus.WARN
    assert "3 of the last 5 min's 300 readings flagged" in health.problems
    Reading.objects.filter(sensor=sensor, ts=HOUR_AGO + timedelta(seconds=3500)).update(quality=0)
    assert health_of(sensor, drift=False).status == HealthStatus.OK


@pytest.mark.parametrize(("ago_s", "status"), [(180, HealthStatus.WARN), (600, HealthStatus.OK)])
def test_a_drift_finding_shows_for_five_minutes(sensor, ago_s, status):
    # The drift rule flags one 30-s bin per finding: a real drift's first one, or a rare false one.
    first = 3600 - ago_s
    quality = [QualityFlag.DRIFT if first <= i < first + 30 else 0 for i in range(3600)]
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0) + np.arange(3600) % 7 * 0.01, quality=quality)
    health = health_of(sensor, drift=False)
    assert health.status == status
    if status == HealthStatus.OK:
        assert (
            "30 of 3,600 readings flagged (<1%, isolated: within the tolerance): drift 30" in health.problems
        )


def test_many_gaps_are_judged_by_completeness_not_as_a_sensor_fault(sensor):
    # A flaky link: 400 gaps of 2 s each; 78 % of the readings arrived.
    ts = [t for t in range(3600) if t % 9 not in (3, 4)]
    quality = [QualityFlag.GAP if t % 9 == 5 else 0 for t in ts]
    Reading.objects.bulk_create(
        Reading(sensor=sensor, ts=HOUR_AGO + timedelta(seconds=t), value=4.0, quality=int(q))
        for t, q in zip(ts, quality, strict=True)
    )
    health = health_of(sensor, drift=False)
    assert health.status == HealthStatus.WARN
    assert health.faulty == 0
    assert any(p.startswith("only 78% of expected readings") for p in health.problems)


def test_missing_readings_make_a_warning(sensor):
    make_readings(sensor, HOUR_AGO, np.full(1800, 4.0), period_s=2.0)
    health = health_of(sensor)
    assert health.status == HealthStatus.WARN
    assert "only 50% of expected readings (1,800 of 3,600)" in health.problems


def test_more_readings_than_the_sample_period_allows_never_read_over_100_percent(sensor):
    # Two writers of one sensor: the grid samples and another source's off-grid stamps.
    make_readings(sensor, HOUR_AGO, np.full(3600, 4.0))
    make_readings(sensor, HOUR_AGO + timedelta(seconds=0.4), np.full(1800, 4.0), period_s=2.0)
    health = health_of(sensor, drift=False)
    assert (health.readings, health.expected, health.received) == (3600, 3600, 5400)
    assert health.status == HealthStatus.WARN
    assert (
        "5,400 readings where its 1 s sample period allows 3,600: a second source writes this sensor, "
        "or its sample period is set too long" in health.problems
    )


def test_a_few_extra_readings_from_a_pollers_jitter_are_fine(sensor):
    make_readings(sensor, HOUR_AGO, np.full(3630, 4.0), period_s=3600 / 3630)
    health = health_of(sensor, drift=False)
    assert (health.readings, health.received, health.status) == (3600, 3630, HealthStatus.OK)


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


def _simulated(sensor, kind: str | None) -> None:
    """An hour of the simulator's pump with one of its sensor faults (plant.simulator) in the last 4 min,
    stored and flagged by ingest as the demo's readings are."""
    from plant.ingest import ParsedBatch, ingest_readings
    from plant.simulator import Fault, FaultSchedule, PlantSimulator, SimAsset

    Sensor.objects.filter(pk=sensor.pk).update(valid_min=None, valid_max=None)  # the pump's own scale
    role = sensor.role.key
    origin = HOUR_AGO.timestamp()
    faults = FaultSchedule([Fault(kind, "p-1", role, 3360.0, 600.0)] if kind else [])
    simulator = PlantSimulator([SimAsset("p-1", {role: sensor.key})], faults=faults, origin=origin)
    for t in range(0, 3600, 600):
        keys, ts, values = simulator.step(origin + t, origin + t + 600)
        ingest_readings(None, ParsedBatch.from_arrays(keys.tolist(), ts, values), now_s=NOW.timestamp())
    if kind == "calibration_drift":  # set by alerts.services.sensor_faults once per drift bin, not at ingest
        Reading.objects.filter(sensor=sensor, ts__gte=HOUR_AGO + timedelta(seconds=3420)).update(
            quality=int(QualityFlag.DRIFT)
        )


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("stuck_sensor", HealthStatus.BAD),
        ("spikes", HealthStatus.WARN),
        ("calibration_drift", HealthStatus.WARN),
    ],
)
def test_a_simulated_sensor_fault_of_four_minutes_shows_at_once(sensor, kind, status):
    _simulated(sensor, kind)
    for drift in (True, False):  # the asset page and the site page
        health = health_of(sensor, drift=drift)
        assert health.status == status, (drift, health.problems)


def test_the_simulated_pump_without_a_fault_is_healthy(sensor):
    _simulated(sensor, None)
    assert health_of(sensor).status == HealthStatus.OK
    assert health_of(sensor, drift=False).status == HealthStatus.OK
