"""Sensor-fault alerts (issue 14, item 3): sustained spikes, stuck and drift open one "check sensor X" alert
per sensor through the rule engine; the sensor verdicts; no machine label; board and detail pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
import pytest
from django.db import transaction
from django.db.models import Sum
from django.urls import reverse

from alerts.choices import AlertCategory, AlertKind, AlertState, EpisodeState
from alerts.models import Alert, Feedback
from alerts.services import parse_action, record_feedback
from alerts.services.feedback import FeedbackError, undo_verdict
from alerts.services.sensor_faults import PERSISTENT_FLAGS, apply_sensor_faults, flagged_shares, readings_from
from models_registry.choices import WindowLabel
from models_registry.retrain import feedback_events
from models_registry.training_data import LabelEvent, label_windows
from plant.choices import LabelKind, QualityFlag
from plant import rollups
from plant.models import Label, Reading, ReadingRollupHour
from plant.series import read_readings
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


def _series(asset, ends) -> dict[str, tuple]:
    """The asset's readings as the scorer reads them for windows ending at ``ends`` (from the sensor-fault
    step's ``readings_from`` on)."""
    sensors = _sensors(asset)
    step = float(asset.asset_type.step_s)
    start = readings_from(ends[0].timestamp() - step, ends[-1].timestamp(), step)
    sid, ts, values, quality = read_readings(
        sorted(sensors), datetime.fromtimestamp(start, tz=dt_timezone.utc), ends[-1], include_start=False
    )
    out = {}
    for sensor_id, role in sensors.items():
        lo, hi = np.searchsorted(sid, [sensor_id, sensor_id + 1])
        out[role] = (ts[lo:hi], values[lo:hi], quality[lo:hi])
    return out


def _apply(asset, version, ends) -> list[int]:
    with transaction.atomic():
        return apply_sensor_faults(version, [(asset, ends, _sensors(asset), _series(asset, ends))]).changed


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


def test_drift_flags_set_after_the_roll_up_reach_the_rollups(
    asset, champion, django_capture_on_commit_callbacks
):
    _healthy(asset, HOUR, drift_on="temperature", drift=6.0)
    rollups.roll_up_readings()  # the readings are rolled up before the scorer flags them
    for k in range(24):
        with django_capture_on_commit_callbacks(execute=True):
            _apply(asset, champion, _ends(HOUR - 240 + 10 * k, 1))
    drifted = Reading.objects.filter(quality=int(QualityFlag.DRIFT))
    flagged = ReadingRollupHour.objects.filter(flag_bits=int(QualityFlag.DRIFT)).aggregate(n=Sum("flagged"))
    assert drifted.count() > 0 and flagged["n"] == drifted.count()


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


@pytest.mark.parametrize("action", ["confirm:sensor_replaced", "confirm:recalibrated", "not_actionable"])
def test_a_confirmed_sensor_fault_labels_its_window_left_out_of_training_not_a_machine_fault(
    sensor_alert, technician, action
):
    feedback = record_feedback(sensor_alert, technician, action, "swapped the transmitter")
    sensor_alert.refresh_from_db()
    assert sensor_alert.state == AlertState.RESOLVED
    label = Label.objects.get()
    assert feedback.label == label and label.kind == LabelKind.EXCLUDED
    assert label.fault_type == "sensor:pressure" and label.verdict == feedback.verdict
    assert (label.start, label.end) == (sensor_alert.first_window_start, sensor_alert.last_seen_at)
    assert "left out of training" in label.note


def test_a_false_alarm_on_a_sensor_fault_writes_no_label_the_readings_were_true(sensor_alert, technician):
    feedback = record_feedback(sensor_alert, technician, "false_alarm:sensor_reads_true")
    assert feedback.label is None and not Label.objects.exists()
    # Its words say what is recorded: the sensor was fine (not "Sensor glitch", the opposite).
    assert Feedback.objects.get().summary == "False alarm — Sensor checked, reads true"


def test_a_sensor_glitch_false_alarm_on_a_sensor_fault_is_refused_naming_what_fits(sensor_alert, technician):
    # A page from before the sensor cards offered "Sensor checked, reads true" still posts "Sensor glitch":
    # recorded, it would keep the readings as true while its words blame the sensor.
    with pytest.raises(FeedbackError, match="Sensor checked, reads true") as refused:
        record_feedback(sensor_alert, technician, "false_alarm:sensor_glitch")
    assert "Sensor replaced or Recalibrated" in str(refused.value)
    sensor_alert.refresh_from_db()
    assert sensor_alert.state == AlertState.OPEN and not Feedback.objects.exists()


def test_correcting_and_undoing_sensor_verdicts_keeps_one_label_in_step_with_the_verdict_in_force(
    sensor_alert, technician
):
    first = record_feedback(sensor_alert, technician, "confirm:recalibrated")
    second = record_feedback(sensor_alert, technician, "false_alarm:sensor_reads_true")  # a correction
    assert second.label is None and not Label.objects.exists()
    undo_verdict(sensor_alert, technician, second.pk)
    label = Label.objects.get()
    first.refresh_from_db()
    assert label.kind == LabelKind.EXCLUDED and first.label == label
    record_feedback(sensor_alert, technician, "confirm:sensor_replaced")  # corrects, reusing the label
    assert list(Label.objects.values_list("pk", "kind")) == [(label.pk, LabelKind.EXCLUDED)]


def test_training_leaves_the_windows_of_an_excluded_label_out():
    ends = np.arange(60.0, 610.0, 10.0)
    assets = np.ones(len(ends), dtype=np.int64)
    fault = LabelEvent(1, 1, 100.0, 200.0, True, "confirmed_fault")
    sensor = LabelEvent(2, 1, 150.0, 400.0, False, "excluded", excluded=True)
    classes, event_of = label_windows(ends, assets, 60.0, [fault, sensor])
    overlaps_sensor = (ends - 60.0 < 400.0) & (ends > 150.0)
    assert (classes[overlaps_sensor] == WindowLabel.GUARD).all() and (event_of[overlaps_sensor] == -1).all()
    assert (classes[(ends > 100.0) & (ends <= 150.0)] == WindowLabel.FAULT).all()
    assert (classes[ends - 60.0 >= 400.0] == WindowLabel.UNLABELLED).all()


def test_retraining_reads_the_excluded_ranges_and_comparisons_do_not(sensor_alert, technician):
    record_feedback(sensor_alert, technician, "confirm:recalibrated")
    asset_ids = [sensor_alert.asset_id]
    assert feedback_events(asset_ids) == []  # no verdict on the machine for the comparisons to count
    (event,) = feedback_events(asset_ids, excluded=True)
    assert event.excluded and not event.positive


def test_a_judged_sensor_fault_absorbs_its_ongoing_condition_and_reopens_only_after_it_cleared(
    asset, champion, technician
):
    _healthy(asset, 2700)
    _stick(asset, "pressure", 600, 900)  # stuck 600-1500 s
    _apply(asset, champion, [T0 + timedelta(seconds=900)])
    alert = Alert.objects.get()
    record_feedback(alert, technician, "confirm:recalibrated")

    _apply(asset, champion, _ends(900, 30))  # still stuck up to 1200 s: the judged episode absorbs it
    alert.refresh_from_db()
    assert Alert.objects.count() == 1
    assert alert.state == AlertState.RESOLVED and alert.episode == EpisodeState.JUDGED
    assert alert.last_seen_at == T0 + timedelta(seconds=1200)

    _apply(asset, champion, _ends(1200, 70))  # clean from 1500 s: the episode ends once clean
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.episode == EpisodeState.OVER
    assert "clean again" in alert.events.last().reason

    _stick(asset, "pressure", 2000, 700)  # the condition comes back
    _apply(asset, champion, _ends(1800, 90))
    assert Alert.objects.count() == 2
    assert Alert.objects.exclude(pk=alert.pk).get().state == AlertState.OPEN


def test_a_judged_sensor_fault_that_gets_worse_reopens_saying_when_and_by_whom(asset, champion, technician):
    _healthy(asset, 1800)
    vibration = _sensor(asset, "vibration")

    def glitch(seconds: range) -> None:
        stamps = [T0 + timedelta(seconds=t) for t in seconds]
        Reading.objects.filter(sensor=vibration, ts__in=stamps).update(
            value=99.0, quality=int(QualityFlag.SPIKE)
        )

    glitch(range(620, 900, 40))  # 7 spikes in 5 min: just past the 2 % share
    _apply(asset, champion, [T0 + timedelta(seconds=900)])
    alert = Alert.objects.get()
    record_feedback(alert, technician, "false_alarm:sensor_reads_true")
    glitch(range(905, 1200, 5))  # then one in five readings: far worse than when judged
    _apply(asset, champion, _ends(900, 30))
    alert.refresh_from_db()
    reopened = Alert.objects.exclude(pk=alert.pk).get()
    assert alert.episode == EpisodeState.OVER and reopened.reopened_from == alert
    assert reopened.state == AlertState.OPEN and reopened.kind == AlertKind.SENSOR_FAULT
    assert (
        reopened.reopen_note.startswith("re-opened: worse than when judged on")
        and "tess" in reopened.reopen_note
    )


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
    # A false alarm on it says the sensor was fine, in the words of what it records.
    assert 'value="false_alarm:sensor_reads_true"' in page and ">Sensor checked, reads true</button>" in page
    assert "false_alarm:sensor_glitch" not in page and "Sensor glitch" not in page


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
