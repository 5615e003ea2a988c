"""The false-alarm reasons each card offers (alerts.choices.false_alarm_reasons) and how an older verdict
whose reason its card no longer offers reads (alerts.choices.verdict_summary).

A "Check the data link" alert (readings of a driving sensor went missing) offers "Link checked, working"
where a machine card offers "Sensor glitch": no reading of the gap arrived to glitch, and a data-link
verdict relabels nothing. A stale form's "Sensor glitch" there is a 400 form error. Verdicts recorded before
the cards changed keep the technician's words and say what they count as."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.choices import AlertCategory
from alerts.models import Feedback
from alerts.services import feedback as feedback_service
from alerts.services.feedback import FeedbackError, record_feedback, undo_verdict
from plant.models import Label
from tests.alerts.builders import explanation_for, make_alert
from tests.alerts.test_feedback import login, post

pytestmark = pytest.mark.django_db

OLD_SENSOR_GLITCH = (
    "False alarm — Sensor glitch (an older button; recorded as a false alarm: the sensor read true)"
)


def card(asset, champion, trained, category: str):
    """A model's open alert driven by vibration, filed under ``category``."""
    explanation = explanation_for(champion, trained, "vibration")
    return make_alert(asset, champion, explanation=explanation, category=category, dominant_role="vibration")


@pytest.fixture
def link(asset, champion, trained):
    return card(asset, champion, trained, AlertCategory.DATA_LINK)


def buttons(page: str) -> list[str]:
    return [chunk.split('"', 1)[0] for chunk in page.split('data-action="false_alarm:')[1:]]


def test_a_data_link_card_offers_link_checked_working_and_not_sensor_glitch(client, technician, link):
    page = login(client, technician).get(reverse("alerts:detail", args=[link.pk])).content.decode()
    assert buttons(page) == ["link_working", "normal_operating_change", "maintenance_activity", "unknown"]
    assert ">Link checked, working</button>" in page and "Sensor glitch" not in page


def test_a_link_checked_working_false_alarm_writes_no_label_and_counts_as_a_false_alarm_by_its_reason(
    client, engineer, technician, link
):
    feedback = record_feedback(link, technician, "false_alarm:link_working")
    assert feedback.summary == "False alarm — Link checked, working"
    assert feedback.label is None and not Label.objects.exists()
    link.refresh_from_db()
    assert link.state == "resolved" and link.category == AlertCategory.DATA_LINK
    client.force_login(engineer)
    (row,) = client.get("/api/v1/metrics", {"group_by": "asset"}).json()["rows"]
    assert (row["verdicts"], row["false_alarms"], row["routed_judged"]) == (1, 1, 1)
    assert row["precision"] is None and row["false_alarms_by_reason"] == {"link_working": 1}
    csv = client.get("/api/v1/metrics.csv", {"group_by": "asset"}).content.decode().splitlines()
    header = csv[0].split(",")
    assert header[-2:] == ["false_alarms_sensor_reads_true", "false_alarms_link_working"]
    assert dict(zip(header, csv[1].split(",")))["false_alarms_link_working"] == "1"


def test_a_sensor_glitch_on_a_data_link_alert_is_refused_saying_why(technician, link):
    with pytest.raises(FeedbackError, match="readings of the sensor went missing") as refused:
        record_feedback(link, technician, "false_alarm:sensor_glitch")
    assert "confirm it (Data link was down)" in str(refused.value)
    assert "choose “Link checked, working”" in str(refused.value)
    link.refresh_from_db()
    assert link.state == "open" and not Feedback.objects.exists()


# The category a stale "Sensor glitch" is refused on, words of the message, and the reason that fits instead.
STALE_GLITCH = {
    AlertCategory.SENSOR_FAULT: ("a false alarm there means the sensor read true", "sensor_reads_true"),
    AlertCategory.DATA_LINK: ("speaks of readings that arrived wrong", "link_working"),
}


@pytest.mark.parametrize("htmx", [True, False])
@pytest.mark.parametrize("category", list(STALE_GLITCH))
def test_a_stale_sensor_glitch_on_a_sensor_or_data_link_card_is_a_form_error_and_records_nothing(
    client, technician, asset, champion, trained, category, htmx
):
    alert = card(asset, champion, trained, category)
    words, fits = STALE_GLITCH[category]
    response = post(login(client, technician), alert, "false_alarm:sensor_glitch", htmx=htmx)
    assert response.status_code == 400
    page = response.content.decode()
    assert words in page
    if htmx:  # the form comes back with the message and the buttons that fit
        assert 'role="alert"' in page and f'value="false_alarm:{fits}"' in page
    alert.refresh_from_db()
    assert alert.state == "open" and not Feedback.objects.filter(alert=alert).exists()


@pytest.mark.parametrize("category", [AlertCategory.MACHINE_FAULT, AlertCategory.SENSOR_FAULT])
def test_the_links_reason_is_refused_on_other_cards_naming_the_reasons_they_offer(
    client, technician, asset, champion, category
):
    other = make_alert(asset, champion, dominant_role="vibration", category=category)
    response = post(login(client, technician), other, "false_alarm:link_working", htmx=True)
    assert response.status_code == 400
    first = "Sensor checked, reads true" if category == AlertCategory.SENSOR_FAULT else "Sensor glitch"
    assert f"choose one of: {first}, Normal operating change" in response.content.decode()
    assert not Feedback.objects.filter(alert=other).exists()


# --- verdicts given before the cards changed ---------------------------------------------------------------


@pytest.fixture
def old_cards(monkeypatch):
    """record_feedback as it was before each card offered only its own reasons (any reason accepted): what
    such a verdict stored is what the old code stored."""
    monkeypatch.setattr(feedback_service, "_check_reason", lambda alert, parsed: None)


def test_an_old_sensor_glitch_on_a_sensor_card_keeps_its_words_and_says_what_it_counts_as(
    client, engineer, technician, asset, champion, old_cards
):
    rules = make_alert(
        asset, champion, kind="sensor_fault", category=AlertCategory.SENSOR_FAULT, dominant_role="vibration"
    )
    model = make_alert(asset, champion, category=AlertCategory.SENSOR_FAULT, dominant_role="vibration")
    for alert in (rules, model):
        record_feedback(alert, technician, "false_alarm:sensor_glitch")
    # What the technician chose is kept as they chose it.
    assert set(Feedback.objects.values_list("verdict", "reason")) == {("false_alarm", "sensor_glitch")}
    for alert in (rules, model):
        feedback = Feedback.objects.select_related("alert").get(alert=alert)
        assert feedback.summary == OLD_SENSOR_GLITCH
    # The alert page (its badge and heading), the health page's drill-down and the metrics agree.
    login(client, technician)
    page = client.get(reverse("alerts:detail", args=[model.pk])).content.decode()
    assert page.count(OLD_SENSOR_GLITCH) >= 2 and "False alarm — Sensor glitch<" not in page
    client.force_login(engineer)
    drill = client.get(
        reverse("alerts:health_alerts"),
        {"period": timezone.localtime().strftime("%Y-%m"), "key": "all", "metric": "alerts"},
    )
    assert [a.verdict_text for a in drill.context["alerts"]] == [OLD_SENSOR_GLITCH] * 2
    (row,) = client.get("/api/v1/metrics", {"group_by": "asset"}).json()["rows"]
    assert (row["false_alarms"], row["false_alarms_by_reason"]) == (2, {"sensor_glitch": 2})


def test_an_old_sensor_glitch_on_a_data_link_card_says_the_link_was_working(technician, link, old_cards):
    feedback = record_feedback(link, technician, "false_alarm:sensor_glitch")
    assert feedback.summary == (
        "False alarm — Sensor glitch (an older button; recorded as a false alarm: the link was working)"
    )


def test_a_reason_the_card_offers_reads_as_given(technician, asset, champion, link):
    machine = make_alert(asset, champion, kind="failure_classifier", dominant_role="vibration")
    assert record_feedback(machine, technician, "false_alarm:sensor_glitch").summary == (
        "False alarm — Sensor glitch"
    )
    assert record_feedback(link, technician, "false_alarm:unknown").summary == "False alarm — Unknown"


def test_an_old_verdict_is_corrected_with_its_words_in_the_timeline(technician, asset, champion, old_cards):
    alert = make_alert(
        asset, champion, kind="sensor_fault", category=AlertCategory.SENSOR_FAULT, dominant_role="vibration"
    )
    record_feedback(alert, technician, "false_alarm:sensor_glitch")
    corrected = record_feedback(alert, technician, "confirm:recalibrated")
    assert corrected.summary == "Confirmed fault — Recalibrated"
    assert alert.events.filter(reason__startswith=f"verdict corrected: {OLD_SENSOR_GLITCH} → ").exists()


def test_a_superseded_false_alarm_reads_as_given_after_its_correction_moved_the_alert(
    client, technician, asset, champion, trained
):
    machine = card(asset, champion, trained, AlertCategory.MACHINE_FAULT)
    record_feedback(machine, technician, "false_alarm:sensor_glitch")
    record_feedback(machine, technician, "confirm:recalibrated")  # the sensor after all: "Check the sensor"
    machine.refresh_from_db()
    assert machine.category == AlertCategory.SENSOR_FAULT
    page = login(client, technician).get(reverse("alerts:detail", args=[machine.pk])).content.decode()
    rows = page.split("<h3>Feedback</h3>", 1)[1].split("</ul>", 1)[0]
    assert "<strong>False alarm — Sensor glitch</strong>" in rows and "older button" not in rows
    assert "<strong>Confirmed fault — Recalibrated</strong>" in rows


def test_undoing_a_correction_puts_the_false_alarm_back_on_the_card_it_was_given_on(
    technician, asset, champion, trained
):
    alert = card(asset, champion, trained, AlertCategory.SENSOR_FAULT)
    first = record_feedback(alert, technician, "false_alarm:sensor_reads_true")
    second = record_feedback(alert, technician, "confirm:repaired")  # moves it to "Machine fault"
    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT
    undo_verdict(alert, technician, second.pk)
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    first = Feedback.objects.select_related("alert", "label").get(pk=first.pk)
    assert first.summary == "False alarm — Sensor checked, reads true"
    assert (first.label.kind, first.label.reason) == ("normal", "sensor_reads_true")
