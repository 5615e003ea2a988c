"""The sensor-fault step inside the scorer (issue 14): it costs the fleet sweep next to nothing (one read of
the readings shared with the windows, the drift fit once per drift bin, no computation for clean sensors),
and a faulty sensor raises one alert, not a machine-fault alert too."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.choices import AlertCategory, AlertEventKind, AlertKind, AlertState
from alerts.models import Alert
from alerts.scoring import score_assets
from alerts.services import sensor_faults
from plant.choices import QualityFlag
from plant.ingest import ParsedBatch, ingest_readings
from tests.conftest import make_asset
from tests.scoring.conftest import START_S, fault, ingest, vibration_model

pytestmark = pytest.mark.django_db


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


BASE = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}


def _reads_of_readings(captured) -> int:
    """Range reads of the readings table (not the sensors' latest-reading look-up); on PostgreSQL the read
    is a COPY of a SELECT."""
    return sum(
        1
        for query in captured.captured_queries
        if query["sql"].lstrip().upper().startswith(("SELECT", "COPY (SELECT"))
        and '"plant_reading"' in query["sql"]
        and '"plant_sensor"' not in query["sql"]
    )


def _count_calls(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(sensor_faults, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sensor_faults, name, spy)
    return calls


def test_one_scoring_run_reads_the_readings_once_for_the_windows_and_the_sensor_faults(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(3)]
    vibration_model(assets[0].asset_type)
    for asset in assets:
        ingest(asset, START_S, 1200)
    with CaptureQueriesContext(connection) as captured:
        score_assets([a.pk for a in assets])
    assert _reads_of_readings(captured) == 1


def test_the_drift_fit_runs_once_per_drift_bin_not_once_per_run(site, monkeypatch):
    asset = make_asset(site)
    vibration_model(asset.asset_type)
    ingest(asset, START_S, 1200)  # 20 min: enough history for the drift rule
    score_assets([asset.pk])
    fits = _count_calls(monkeypatch, "find_drift")
    for k in range(3):  # three runs of one new window each: 1200 s (a drift-bin boundary), 1210, 1220
        ingest(asset, START_S + 1200 + 10 * k, 10)
        score_assets([asset.pk])
    assert len(fits) == 1


def test_a_chunk_of_clean_sensors_computes_no_sensor_fault_score(site, monkeypatch):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(4)]
    vibration_model(assets[0].asset_type)
    for asset in assets:
        ingest(asset, START_S, 300)
    scores = _count_calls(monkeypatch, "fault_scores")
    score_assets([a.pk for a in assets])
    assert scores == [] and not Alert.objects.exists()


def _stuck_vibration(asset, start_s: float, seconds: int, value: float = 20.0) -> None:
    """1 Hz readings with the vibration sensor stuck at ``value`` (the others normal), through ingest."""
    rng = np.random.default_rng(7)
    t = start_s + np.arange(seconds, dtype=np.float64)
    keys, ts, values = [], [], []
    for sensor in asset.sensors.select_related("role"):
        role = sensor.role.key
        keys += [sensor.key] * seconds
        ts.append(t)
        values.append(
            np.full(seconds, value) if role == "vibration" else BASE[role] + rng.normal(0, 0.05, seconds)
        )
    batch = ParsedBatch.from_arrays(keys, np.concatenate(ts), np.concatenate(values))
    ingest_readings(None, batch, now_s=start_s + seconds)


def _run(asset, start_s: float, seconds: int, chunk: int = 30, feed=None) -> None:
    """Readings ``chunk`` seconds at a time (``feed(asset, start, seconds)``), each batch scored."""
    for t in range(0, seconds, chunk):
        feed(asset, start_s + t, chunk)
        score_assets([asset.pk])


def test_a_stuck_sensor_raises_its_sensor_fault_alert_and_holds_the_machine_alert_it_causes(site):
    asset = make_asset(site)
    vibration_model(asset.asset_type)  # its score is the vibration mean: a sensor stuck high drives it
    ingest(asset, START_S, 900)
    score_assets([asset.pk])
    _run(asset, START_S + 900, 300, feed=_stuck_vibration)

    sensor = Alert.objects.get(kind=AlertKind.SENSOR_FAULT)
    model = Alert.objects.exclude(kind=AlertKind.SENSOR_FAULT).get()
    assert sensor.state == AlertState.OPEN and sensor.sensor.role.key == "vibration"
    # The machine-fault alert the stuck readings caused is held: out of the board and the alarm metrics.
    assert model.state == AlertState.SUPPRESSED and model.category == AlertCategory.SENSOR_FAULT
    held = model.events.get()
    assert held.kind == AlertEventKind.HELD
    assert held.reason.startswith("held: the readings of a faulty sensor explain it (vibration)")
    assert f"alert #{model.pk}, held" in sensor.events.get().reason
    assert Alert.objects.filter(state__in=[AlertState.OPEN, AlertState.ACKNOWLEDGED]).count() == 1


def test_a_held_machine_alert_becomes_visible_when_the_sensor_reads_clean_and_the_condition_persists(site):
    asset = make_asset(site)
    vibration_model(asset.asset_type)
    ingest(asset, START_S, 900)
    score_assets([asset.pk])
    _run(asset, START_S + 900, 120, feed=_stuck_vibration)
    # The sensor reads true again, and it reads a machine fault: high, moving vibration.
    high = fault(START_S, START_S + 10_000, level=20.0, ramp_s=1.0)
    _run(asset, START_S + 1020, 120, feed=lambda a, s, n: ingest(a, s, n, vibration=high))

    model = Alert.objects.exclude(kind=AlertKind.SENSOR_FAULT).get()
    assert model.state == AlertState.OPEN
    events = list(model.events.order_by("pk").values_list("kind", "reason"))
    assert events[0][0] == AlertEventKind.HELD
    shown = next(
        i for i, (_, reason) in enumerate(events) if reason.startswith("the faulty sensor reads clean again")
    )
    # The clean windows that show it also take it out of "Check the sensor" (the category follows the evidence).
    assert events[shown + 1 :] == [
        (
            AlertEventKind.CATEGORY,
            "category Check the sensor → Machine fault: the condition persists over the last 3 windows and "
            "their readings no longer point at the sensor",
        )
    ]
    assert model.category == AlertCategory.MACHINE_FAULT


def test_a_machine_fault_seen_through_a_clean_sensor_opens_while_another_sensor_is_stuck(site):
    asset = make_asset(site)
    vibration_model(asset.asset_type)
    ingest(asset, START_S, 900)
    score_assets([asset.pk])
    high = fault(START_S + 900, START_S + 10_000, level=20.0)

    def stuck_pressure_and_wear(a, start_s: float, seconds: int) -> None:
        ingest(a, start_s, seconds, vibration=high)
        a.sensors.get(role__key="pressure").readings.filter(
            ts__gte=_utc(start_s), ts__lt=_utc(start_s + seconds)
        ).update(value=6.0, quality=int(QualityFlag.STUCK))

    _run(asset, START_S + 900, 300, feed=stuck_pressure_and_wear)
    model = Alert.objects.exclude(kind=AlertKind.SENSOR_FAULT).get()
    assert model.state == AlertState.OPEN and model.dominant_role == "vibration"
    assert not model.events.filter(kind=AlertEventKind.HELD).exists()
