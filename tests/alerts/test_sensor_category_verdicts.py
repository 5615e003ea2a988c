"""A model's alert the quality gate filed "Check the sensor": the technician can say the sensor was at fault
(the window is left out of training, the alert stays out of the model's precision) or that the machine was
after all (the alert moves to "Machine fault" and its window is labelled that fault)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.choices import AlertCategory, AlertEventKind
from alerts.models import Feedback
from alerts.services.feedback import record_feedback, undo_verdict
from models_registry.retrain import feedback_events
from tests.alerts.builders import make_alert
from tests.alerts.test_false_alarm_reasons import card
from tests.alerts.test_feedback import login, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(asset, champion, trained):
    return card(asset, champion, trained, AlertCategory.SENSOR_FAULT)


def test_the_card_offers_the_sensors_verdicts_and_the_machines(client, technician, alert):
    page = login(client, technician).get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "Sensor was faulty:" in page and 'value="confirm:sensor_replaced"' in page
    assert "Machine at fault:" in page and 'value="confirm:repaired"' in page


def test_sensor_replaced_leaves_the_window_out_of_training_and_the_alert_checks_the_sensor(
    client, technician, alert
):
    post(login(client, technician), alert, "confirm:sensor_replaced")
    alert.refresh_from_db()
    label = Feedback.objects.get(alert=alert).label
    assert (label.kind, label.fault_type) == ("excluded", "sensor:vibration")
    assert alert.category == AlertCategory.SENSOR_FAULT
    assert not alert.events.filter(kind=AlertEventKind.CATEGORY).exists()


def test_a_machine_repair_moves_the_alert_to_machine_fault_and_a_correction_moves_it_back(
    client, technician, alert
):
    post(login(client, technician), alert, "confirm:repaired", "bearing replaced")
    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT
    change = alert.events.get(kind=AlertEventKind.CATEGORY)
    assert (
        change.category_change.startswith("Check the sensor → Machine fault") and "repaired" in change.reason
    )
    label = Feedback.objects.get(alert=alert).label
    assert (label.kind, label.fault_type) == ("fault", f"{alert.kind}:vibration")

    post(client, alert, "confirm:recalibrated")  # the same technician corrects it: the sensor after all
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    label = Feedback.objects.filter(alert=alert).latest("id").label
    assert (label.kind, label.fault_type) == ("excluded", "sensor:vibration")


def test_a_false_alarm_keeps_the_category_and_labels_the_window_normal(client, technician, alert):
    post(login(client, technician), alert, "false_alarm:sensor_reads_true")
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    feedback = Feedback.objects.get(alert=alert)
    assert (feedback.label.kind, feedback.label.reason) == ("normal", "sensor_reads_true")
    assert feedback.summary == "False alarm — Sensor checked, reads true"
    # Retraining reads the window as normal running, as it did with the old "Sensor glitch".
    (event,) = feedback_events([alert.asset_id], excluded=True)
    assert (event.positive, event.excluded, event.source, event.reason) == (
        False,
        False,
        "false_alarm",
        "sensor_reads_true",
    )


def test_the_false_alarm_reasons_say_the_sensor_read_true_on_a_sensor_card_and_glitched_on_a_machine_card(
    client, technician, alert, asset, champion
):
    machine = make_alert(asset, champion, kind="failure_classifier", dominant_role="vibration")
    login(client, technician)
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert ">Sensor checked, reads true</button>" in page and "Sensor glitch" not in page
    page = client.get(reverse("alerts:detail", args=[machine.pk])).content.decode()
    assert (
        '<button type="submit" class="button button-ok" name="action" value="false_alarm:sensor_glitch"'
        in page
    )
    assert ">Sensor glitch</button>" in page and "Sensor checked, reads true" not in page


# A stale "Sensor glitch" on this card: tests/alerts/test_false_alarm_reasons.py (with the data-link card).


def test_the_sensor_reason_is_refused_on_a_machine_fault_naming_the_reasons_it_offers(
    client, technician, asset, champion
):
    machine = make_alert(asset, champion, dominant_role="vibration")
    response = post(login(client, technician), machine, "false_alarm:sensor_reads_true", htmx=True)
    assert response.status_code == 400
    assert "choose one of: Sensor glitch, Normal operating change" in response.content.decode()
    assert not Feedback.objects.filter(alert=machine).exists()


def test_undoing_the_verdict_puts_the_alert_back_where_the_verdict_in_force_files_it(technician, alert):
    first = record_feedback(alert, technician, "confirm:repaired")
    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT
    undo_verdict(alert, technician, first.pk)  # no verdict left: the gate's category again
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT and alert.state == "open"
    first = record_feedback(alert, technician, "confirm:sensor_replaced")
    second = record_feedback(alert, technician, "confirm:scheduled")  # a correction: the machine after all
    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT
    undo_verdict(alert, technician, second.pk)  # the first verdict is in force again: the sensor
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    assert Feedback.objects.get(pk=first.pk).label.kind == "excluded"


def test_a_work_order_done_from_the_cmms_keeps_the_category_it_was_filed_under(alert):
    # "Done" from the CMMS says the job filed under "Check the sensor" was done, not what was at fault.
    record_feedback(alert, None, "confirm:repaired", authorised=True)
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    label = Feedback.objects.get(alert=alert).label
    assert (label.kind, label.fault_type) == ("excluded", "sensor:vibration")


def test_a_sensor_replaced_or_recalibrated_counts_as_acted_on(client, engineer, technician, asset, champion):
    for action in ("confirm:sensor_replaced", "confirm:recalibrated", "confirm:inspected_no_action"):
        made = make_alert(asset, champion, category=AlertCategory.SENSOR_FAULT, dominant_role="vibration")
        record_feedback(made, technician, action)
    client.force_login(engineer)
    (row,) = client.get("/api/v1/metrics", {"group_by": "asset"}).json()["rows"]
    assert (row["verdicts"], row["actionable"]) == (3, 2)


def test_sensor_checked_reads_true_counts_as_a_false_alarm_routed_out_of_precision(
    client, engineer, technician, asset, champion
):
    # The sensor rules' own alert and a model's alert the gate filed "Check the sensor", both found fine.
    rules = make_alert(
        asset, champion, kind="sensor_fault", category=AlertCategory.SENSOR_FAULT, dominant_role="vibration"
    )
    model = make_alert(asset, champion, category=AlertCategory.SENSOR_FAULT, dominant_role="vibration")
    for alert in (rules, model):
        record_feedback(alert, technician, "false_alarm:sensor_reads_true")
    client.force_login(engineer)
    (row,) = client.get("/api/v1/metrics", {"group_by": "asset"}).json()["rows"]
    assert (row["verdicts"], row["false_alarms"], row["routed_judged"]) == (2, 2, 2)
    assert row["precision"] is None and row["false_alarms_by_reason"] == {"sensor_reads_true": 2}
    csv = client.get("/api/v1/metrics.csv", {"group_by": "asset"}).content.decode().splitlines()
    assert dict(zip(csv[0].split(","), csv[1].split(",")))["false_alarms_sensor_reads_true"] == "2"
