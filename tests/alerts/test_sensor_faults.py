"""Sensor-fault alerts (issue 14, item 3): sustained spikes, stuck and drift open one "check sensor X" alert
per sensor through the rule engine; the sensor verdicts; no machine label; board and detail pages."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction
from django.urls import reverse

from alerts.choices import AlertCategory, AlertKind, AlertState
from alerts.models import Alert, Feedback
from alerts.services import parse_action, record_feedback
from alerts.services.sensor_faults import PERSISTENT_FLAGS, apply_sensor_faults, flagged_shares
from plant.choices import QualityFlag
from plant.models import Label, Reading
from tests.conftest import T0, make_readings

pytestmark = pytest.mark.django_db

HOUR = 3600
STUCK = int(QualityFlag.STUCK)


def _sensors(asset) -> dict[int, str]:
    return dict(asset.sensors.values_list("pk", "role__key"))


def _sensor(asset, role: str):
    return asset.sensors.get(role__key=role)


def _healthy(asset, seconds: int, *, start=T0, drift_on: str | None = None, drift: float = 0.0) -> None:
    """1 Hz readings of every sensor, driven by one load, the optional drift ramping on one sensor over the
    last 4 minutes."""
    rng = np.random.default_rng(0)
    t = np.arange(seconds, dtype=np.float64)
    load = 0.7 + 0.2 * np.sign(np.sin(t / 270.0)) + 0.05 * np.sin(t / 700.0)
    gains = {"vibration": 4.0, "current": 50.0, "pressure": 8.0, "temperature": 30.0}
    ramp = np.clip((t - (seconds - 240)) / 240.0, 0.0, 1.0)
    for role, gain in gains.items():
        values = 5.0 + gain * load + rng.normal(scale=0.01 * gain, size=seconds)
        if role == drift_on:
            values = values + drift * ramp
        make_readings(_sensor(asset, role), start, values)


def _ends(start_s: int, count: int, step: int = 10) -> list:
    return [T0 + timedelta(seconds=start_s + step * (k + 1)) for k in range(count)]


def _apply(asset, version, ends) -> list[int]:
    with transaction.atomic():
        return apply_sensor_faults(version, [(asset, ends, _sensors(asset))])


def _stick(asset, role: str, start_s: int, seconds: int, value: float = 20.0) -> None:
    sensor = _sensor(asset, role)
    Reading.objects.filter(
        sensor=sensor,
        ts__gte=T0 + timedelta(seconds=start_s),
        ts__lt=T0 + timedelta(seconds=start_s + seconds),
    ).update(value=value, quality=STUCK)


def test_the_persistent_share_counts_stuck_and_drift_but_not_spikes_or_gaps():
    ts = np.arange(1.0, 11.0)
    quality = np.array([0, 2, 4, 16, 8, 1, 0, 0, 0, 0], dtype=np.uint16)
    assert flagged_shares(ts, quality, np.array([10.0, 5.0]), 10.0, PERSISTENT_FLAGS).tolist() == [0.2, 0.4]


def test_a_stuck_sensor_opens_one_sensor_fault_alert_that_updates_and_closes_when_clean(asset, champion):
    _healthy(asset, HOUR)
    assert _apply(asset, champion, _ends(HOUR - 300, 6)) == []  # clean: nothing, not even a query storm
    _stick(asset, "pressure", HOUR - 1500, 400)  # stuck for 400 s, 25 min before the end
    changed = _apply(asset, champion, _ends(HOUR - 1500, 18))
    alert = Alert.objects.get()
    assert changed == [alert.pk]
    assert alert.kind == AlertKind.SENSOR_FAULT and alert.category == AlertCategory.SENSOR_FAULT
    assert alert.sensor == _sensor(asset, "pressure") and alert.dominant_role == "pressure"
    assert alert.state == AlertState.OPEN and alert.model_version == champion
    assert "pressure sensor" in alert.events.get().reason and alert.peak_score >= 1.0
    _apply(asset, champion, _ends(HOUR - 1320, 6))  # still stuck: the same episode, updated
    assert Alert.objects.count() == 1
    _apply(asset, champion, _ends(HOUR - 1260, 60))  # the last stuck reading leaves the 5 min span
    alert.refresh_from_db()
    assert alert.state == AlertState.AUTO_CLOSED
    assert "clean again" in alert.events.last().reason


def test_one_glitch_does_not_alert(asset, champion):
    _healthy(asset, HOUR)
    Reading.objects.filter(sensor=_sensor(asset, "vibration"), ts=T0 + timedelta(seconds=HOUR - 30)).update(
        value=99.0, quality=int(QualityFlag.SPIKE)
    )
    assert _apply(asset, champion, _ends(HOUR - 120, 12)) == []
    assert not Alert.objects.exists()


def test_two_faulty_sensors_of_one_asset_get_one_alert_each(asset, champion):
    _healthy(asset, HOUR)
    _stick(asset, "pressure", HOUR - 300, 300)
    _stick(asset, "current", HOUR - 300, 300, value=40.0)
    _apply(asset, champion, _ends(HOUR - 60, 6))
    assert sorted(Alert.objects.values_list("sensor__role__key", flat=True)) == ["current", "pressure"]


def test_a_drifting_sensor_gets_drift_flags_and_a_sensor_fault_alert(asset, champion):
    _healthy(asset, HOUR, drift_on="temperature", drift=6.0)  # over the last 4 minutes
    for k in range(24):  # evaluated as the scorer does, every 10 s over the drift
        _apply(asset, champion, _ends(HOUR - 240 + 10 * k, 1))
    drifted = Reading.objects.filter(quality=int(QualityFlag.DRIFT))
    assert set(drifted.values_list("sensor__role__key", flat=True)) == {"temperature"}
    alert = Alert.objects.get()
    assert alert.sensor.role.key == "temperature" and alert.kind == AlertKind.SENSOR_FAULT


def test_readings_moving_together_get_no_drift_flag(asset, champion):
    _healthy(asset, HOUR)
    _apply(asset, champion, _ends(HOUR - 10, 1))
    assert not Reading.objects.filter(quality=int(QualityFlag.DRIFT)).exists()
    assert not Alert.objects.exists()


@pytest.fixture
def sensor_alert(asset, champion) -> Alert:
    _healthy(asset, 900)
    Reading.objects.filter(sensor=_sensor(asset, "pressure"), ts__gte=T0 + timedelta(seconds=600)).update(
        value=20.0, quality=STUCK
    )
    _apply(asset, champion, [T0 + timedelta(seconds=900)])
    return Alert.objects.get()


@pytest.mark.parametrize(
    "action", ["confirm:sensor_replaced", "confirm:recalibrated", "false_alarm:sensor_glitch"]
)
def test_sensor_verdicts_resolve_the_alert_and_label_nothing_about_the_machine(
    sensor_alert, technician, action
):
    feedback = record_feedback(sensor_alert, technician, action, "swapped the transmitter")
    sensor_alert.refresh_from_db()
    assert sensor_alert.state == AlertState.RESOLVED
    assert feedback.label is None and not Label.objects.exists()
    assert Feedback.objects.get().summary.split(" — ")[-1] in {
        "Sensor replaced",
        "Recalibrated",
        "Sensor glitch",
    }


def test_the_sensor_verdicts_parse():
    assert parse_action("confirm:sensor_replaced").action == "sensor_replaced"
    assert parse_action("confirm:recalibrated").action == "recalibrated"


def test_the_board_says_check_the_sensor_and_offers_the_sensor_verdicts(client, technician, sensor_alert):
    client.force_login(technician)
    page = client.get(reverse("alerts:board")).content.decode()
    assert f'id="alert-{sensor_alert.pk}"' in page
    assert "Check the pressure sensor" in page and sensor_alert.sensor.key in page
    assert 'value="confirm:sensor_replaced"' in page and 'value="confirm:recalibrated"' in page
    assert 'value="confirm:scheduled"' not in page


def test_the_detail_page_charts_the_faulty_sensor_with_its_flags(client, technician, sensor_alert):
    client.force_login(technician)
    response = client.get(reverse("alerts:detail", args=[sensor_alert.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Check the pressure sensor" in page
    figure = response.context["sensor_figure"]
    names = " ".join(str(trace.get("name", "")) for trace in figure["data"])
    assert sensor_alert.sensor.key in names and "vibration" not in names
    assert "stuck" in names.lower()


def test_an_outsider_cannot_see_a_sensor_fault_alert(client, outsider, sensor_alert):
    client.force_login(outsider)
    assert client.get(reverse("alerts:detail", args=[sensor_alert.pk])).status_code == 404
