"""Feedback buttons: each writes AlertEvent + Feedback (+ Label for verdicts), corrections keep history."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts import broadcast
from alerts.models import Alert, AlertEvent, Feedback
from plant.models import Label
from tests.alerts.builders import explanation_for, make_alert
from tests.conftest import PASSWORD, make_user


def login(client, user):
    client.logout()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def post(client, alert, action, note="", *, htmx=False, next_page="board"):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        reverse("alerts:feedback", args=[alert.pk]),
        {"action": action, "note": note, "next": next_page},
        headers=headers,
    )


@pytest.fixture
def alert(asset, champion, trained):
    return make_alert(asset, champion, explanation=explanation_for(champion, trained, "vibration"))


def test_acknowledge_moves_the_alert_and_records_who_did_it(client, technician, alert):
    response = post(login(client, technician), alert, "acknowledge", "on my way")

    assert response.status_code == 302 and response["Location"] == reverse("alerts:board")
    alert.refresh_from_db()
    assert alert.state == "acknowledged"
    event = alert.events.latest("at", "id")
    assert (event.from_state, event.to_state, event.actor, event.reason) == (
        "open",
        "acknowledged",
        technician,
        "on my way",
    )
    feedback = Feedback.objects.get(alert=alert)
    assert (feedback.kind, feedback.verdict, feedback.user, feedback.event) == (
        "acknowledge",
        None,
        technician,
        event,
    )
    assert not Label.objects.exists()


@pytest.mark.parametrize("length, hours", [("1h", 1), ("8h", 8)])
def test_snooze_hides_the_alert_for_the_chosen_time(client, technician, alert, length, hours):
    before = timezone.now()
    post(login(client, technician), alert, f"snooze:{length}")
    alert.refresh_from_db()
    assert alert.state == "snoozed"
    assert before + timedelta(hours=hours) <= alert.snoozed_until <= timezone.now() + timedelta(hours=hours)
    assert Feedback.objects.get(alert=alert).snoozed_until == alert.snoozed_until
    assert alert.events.latest("at", "id").to_state == "snoozed"


def test_the_alert_page_of_a_snoozed_alert_says_until_when_in_the_sites_time(client, technician, alert):
    site = alert.asset.site
    site.timezone = "Europe/Berlin"
    site.save(update_fields=["timezone"])
    login(client, technician)
    post(client, alert, "snooze:8h", next_page="detail")
    alert.refresh_from_db()

    html = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    until = alert.snoozed_until.astimezone(ZoneInfo("Europe/Berlin"))  # the time the site's people read
    assert "<dt>Snoozed until</dt>" in html and f'datetime="{until.isoformat()}"' in html
    assert f"{until:%H:%M}</time>" in html
    assert "(snoozed for 8 h)" in html


def test_confirming_a_fault_resolves_the_alert_and_labels_the_window_as_that_fault(client, technician, alert):
    post(login(client, technician), alert, "confirm:repaired", "bearing replaced")

    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.closed_at is not None
    feedback = Feedback.objects.get(alert=alert)
    assert (feedback.kind, feedback.verdict, feedback.action, feedback.note) == (
        "verdict",
        "confirmed_fault",
        "repaired",
        "bearing replaced",
    )
    label = feedback.label
    assert (label.kind, label.fault_type, label.source, label.author) == (
        "fault",
        "anomaly:vibration",
        "feedback",
        technician,
    )
    assert (label.start, label.end) == (alert.first_window_start, alert.last_seen_at)
    assert "repaired" in label.note and "bearing replaced" in label.note
    assert alert.events.latest("at", "id").to_state == "resolved"


def test_a_false_alarm_labels_the_window_normal_with_the_reason(client, technician, alert):
    post(login(client, technician), alert, "false_alarm:sensor_glitch")

    feedback = Feedback.objects.get(alert=alert)
    assert (feedback.verdict, feedback.reason) == ("false_alarm", "sensor_glitch")
    assert (feedback.label.kind, feedback.label.reason, feedback.label.fault_type) == (
        "normal",
        "sensor_glitch",
        "",
    )
    assert Alert.objects.get(pk=alert.pk).state == "resolved"


def test_not_actionable_labels_the_window_a_fault_noted_not_actionable(client, technician, alert):
    post(login(client, technician), alert, "not_actionable")

    label = Feedback.objects.get(alert=alert).label
    assert (label.kind, label.note.endswith("not actionable")) == ("fault", True)


def test_a_verdict_after_acknowledging_keeps_both_events(client, technician, alert):
    login(client, technician)
    post(client, alert, "acknowledge")
    post(client, alert, "confirm:scheduled")
    assert list(alert.events.values_list("to_state", flat=True)) == ["open", "acknowledged", "resolved"]
    assert list(Feedback.objects.filter(alert=alert).values_list("kind", flat=True)) == [
        "acknowledge",
        "verdict",
    ]


def test_the_same_technician_can_correct_a_verdict_and_the_history_is_kept(client, technician, alert):
    login(client, technician)
    post(client, alert, "false_alarm:unknown")
    first = Feedback.objects.get(alert=alert)

    response = post(client, alert, "confirm:repaired", "it was the bearing after all", next_page="detail")

    assert response.status_code == 302 and response["Location"] == reverse("alerts:detail", args=[alert.pk])
    second = Feedback.objects.filter(alert=alert).latest("created_at", "id")
    assert second.supersedes == first and second.verdict == "confirmed_fault"
    assert Label.objects.count() == 1  # the same label, rewritten
    label = Label.objects.get()
    assert second.label == first.label == label and label.kind == "fault"
    event = alert.events.latest("at", "id")
    assert (event.from_state, event.to_state) == ("resolved", "resolved")
    assert "corrected" in event.reason and "False alarm" in event.reason


def test_an_engineer_can_correct_a_technicians_verdict(client, technician, engineer, alert):
    post(login(client, technician), alert, "confirm:repaired")
    response = post(login(client, engineer), alert, "false_alarm:normal_operating_change")
    assert response.status_code == 302
    current = Feedback.objects.filter(alert=alert).latest("created_at", "id")
    assert (current.user, current.verdict, current.supersedes.user) == (engineer, "false_alarm", technician)
    assert Label.objects.get().kind == "normal"


def test_another_technician_cannot_correct_someone_elses_verdict(client, technician, site, alert):
    colleague = make_user("carl", "technician", site)
    post(login(client, technician), alert, "confirm:repaired")

    response = post(login(client, colleague), alert, "false_alarm:unknown", htmx=True)

    assert response.status_code == 403
    assert "only they or an engineer can correct it" in response.content.decode()
    assert Feedback.objects.filter(alert=alert).count() == 1 and Label.objects.get().kind == "fault"


def test_a_verdict_refused_because_a_colleague_closed_the_alert_is_said_at_the_top_of_the_board(
    client, technician, site, alert
):
    # Two technicians tap at once: the card of the one who loses leaves the board (the live socket removes
    # it), so the refusal must not be shown inside that card, where nobody would ever read it.
    colleague = make_user("carl", "technician", site)
    post(login(client, technician), alert, "confirm:repaired")

    response = post(login(client, colleague), alert, "false_alarm:sensor_glitch", htmx=True)

    body = response.content.decode()
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#board-messages" and response["HX-Reswap"] == "afterbegin"
    assert f"Not saved for {alert.asset.name} (#{alert.pk})" in body and 'role="alert"' in body
    assert "tess already gave the verdict “Confirmed fault — Repaired”" in body
    assert f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>' in body
    assert Feedback.objects.filter(alert=alert).count() == 1


def test_a_tap_after_the_session_expired_sends_the_whole_page_to_the_login_and_back_to_the_board(
    client, technician, alert
):
    # The board stays open for hours; its session may expire under it. htmx must not swap the login page
    # into the card: the whole page goes to the login, which leads back to the board.
    login(client, technician)
    client.logout()  # what an expired session looks like to the server

    response = client.post(
        reverse("alerts:feedback", args=[alert.pk]),
        {"action": "acknowledge", "next": "board"},
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/alerts/?asset=7"},
    )

    assert response.status_code == 200 and response.content == b""
    assert response["HX-Redirect"] == "/accounts/login/?next=/alerts/%3Fasset%3D7"
    assert not Feedback.objects.exists()


def test_a_form_posted_after_the_session_expired_logs_in_back_to_its_page_not_to_the_post_url(
    client, technician, alert
):
    detail = reverse("alerts:detail", args=[alert.pk])
    url = reverse("alerts:feedback", args=[alert.pk])

    response = client.post(url, {"action": "acknowledge"}, headers={"Referer": f"http://testserver{detail}"})
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={detail}"

    # Another site's page is never a place to come back to; a GET keeps its own URL; a logout its redirect.
    response = client.post(url, {"action": "acknowledge"}, headers={"Referer": "https://evil.example/x"})
    assert response["Location"] == "/accounts/login/?next=/"
    assert client.get(detail)["Location"] == f"/accounts/login/?next={detail}"
    login(client, technician)
    assert client.post(reverse("logout"))["Location"] == "/accounts/login/"


def test_an_unknown_action_is_a_400_that_names_the_valid_ones_and_writes_nothing(client, technician, alert):
    response = post(login(client, technician), alert, "explode")
    assert response.status_code == 400
    assert (
        "unknown action" in response.content.decode().lower()
        and "confirm:repaired" in response.content.decode()
    )
    assert not Feedback.objects.exists() and alert.events.count() == 1


@pytest.mark.parametrize("note", ["on my\x00way", "\x1b[31m"])
def test_a_note_with_a_control_character_is_a_400_naming_the_note_and_writes_nothing(
    client, technician, alert, note
):
    # PostgreSQL stores no NUL in text: the note reached the AlertEvent and Feedback rows as a 500.
    response = post(login(client, technician), alert, "acknowledge", note)
    page = response.content.decode().lower()
    assert response.status_code == 400 and "note: " in page and "contains a control character" in page
    assert Alert.objects.get(pk=alert.pk).state == "open" and not Feedback.objects.exists()


def test_a_note_keeps_its_line_breaks_and_tabs(client, technician, alert):
    post(login(client, technician), alert, "acknowledge", "line one\r\n\tline two")
    assert Feedback.objects.get(alert=alert).note == "line one\r\n\tline two"


def test_an_action_the_state_does_not_allow_is_a_400_shown_in_the_card(client, technician, alert):
    login(client, technician)
    post(client, alert, "acknowledge")

    response = post(client, alert, "acknowledge", htmx=True)

    html = response.content.decode()
    assert response.status_code == 400
    assert html.lstrip().startswith(f'<form id="feedback-{alert.pk}"') and 'class="feedback-error"' in html
    assert "cannot become acknowledged" in html
    post(client, alert, "confirm:repaired")
    assert post(client, alert, "snooze:1h").status_code == 400
    assert post(client, alert, "snooze:2h").status_code == 400


def test_an_htmx_verdict_on_the_board_confirms_with_undo_and_removes_the_card_and_an_acknowledge_redraws_it(
    client, technician, asset, champion, alert
):
    login(client, technician)
    response = post(client, alert, "acknowledge", htmx=True)
    assert response.status_code == 200 and response["HX-Retarget"] == f"#alert-{alert.pk}"
    assert f'<article id="alert-{alert.pk}"' in response.content.decode()
    assert 'data-state="acknowledged"' in response.content.decode()

    response = post(client, alert, "confirm:repaired", htmx=True)
    body = response.content.decode()
    assert response.status_code == 200 and response["HX-Retarget"] == "#board-messages"
    assert response["HX-Reswap"] == "afterbegin"
    verdict = alert.feedback.get(kind="verdict")
    assert "Confirmed fault — Repaired" in body and f"/alerts/{alert.pk}/undo/{verdict.pk}/" in body
    assert f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>' in body

    other = make_alert(asset, champion, explanation=None)
    response = post(client, other, "acknowledge", htmx=True, next_page="detail")
    assert response["HX-Refresh"] == "true"


def test_every_change_is_broadcast_to_the_sites_boards_after_commit(
    client, technician, alert, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(broadcast, "_send", lambda site_id, ids: sent.append((site_id, ids)))
    login(client, technician)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, alert, "acknowledge")
    with django_capture_on_commit_callbacks(execute=True):
        post(client, alert, "false_alarm:unknown")
    assert sent == [(alert.asset.site_id, [alert.pk]), (alert.asset.site_id, [alert.pk])]


def test_a_technician_reports_a_missed_failure_from_the_asset_page(client, technician, asset):
    start = (timezone.now() - timedelta(days=2)).replace(microsecond=0, second=0)
    response = login(client, technician).post(
        reverse("alerts:asset_missed_failure", args=[asset.pk]),
        {
            "missed-start": start.strftime("%Y-%m-%dT%H:%M"),
            "missed-end": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"),
            "missed-fault_type": "seal leak",
            "missed-note": "found a puddle",
        },
    )
    assert response.status_code == 302 and response["Location"] == asset.get_absolute_url()
    feedback = Feedback.objects.get()
    assert (feedback.alert, feedback.asset, feedback.verdict, feedback.kind, feedback.user) == (
        None,
        asset,
        "missed_failure",
        "missed_failure",
        technician,
    )
    label = feedback.label
    assert (label.kind, label.fault_type, label.source, label.author) == (
        "fault",
        "seal leak",
        "feedback",
        technician,
    )
    assert label.start == start and label.end == start + timedelta(hours=3)
    page = client.get(asset.get_absolute_url()).content.decode()
    assert "Report a failure that had no alert" in page and "the failure was recorded" in page


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("Asia/Tokyo", "0001-01-01T00:00", "0001-01-01T05:00"),  # before 0001-01-01 in UTC: a 500
        ("America/Los_Angeles", "0001-01-01T00:00", "2026-01-01T00:00"),  # was recorded as a label
    ],
)
def test_a_missed_failure_outside_the_years_vigil_holds_is_a_form_error(
    client, technician, asset, zone, start, end
):
    asset.site.timezone = zone
    asset.site.save(update_fields=["timezone"])
    login(client, technician)
    url = reverse("alerts:asset_missed_failure", args=[asset.pk])
    data = {"missed-start": start, "missed-end": end, "missed-fault_type": "seal leak"}
    response = client.post(url, data)
    assert (
        response.status_code == 400
        and "is out of range: use a date from 1970-01-01" in response.content.decode()
    )
    assert not Feedback.objects.exists() and not Label.objects.exists()


def test_a_missed_failure_with_a_bad_range_is_a_400_with_the_form_errors(client, technician, asset):
    login(client, technician)
    url = reverse("alerts:asset_missed_failure", args=[asset.pk])
    data = {
        "missed-start": "2026-01-05T10:00",
        "missed-end": "2026-01-05T09:00",
        "missed-fault_type": "seal leak",
    }

    response = client.post(url, data, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "The end of the failure must be after its start." in response.content.decode()
    assert client.post(url, {**data, "missed-start": "yesterday"}).status_code == 400
    assert (
        client.post(
            url, {**data, "missed-start": "2999-01-01T00:00", "missed-end": "2999-01-02T00:00"}
        ).status_code
        == 400
    )
    assert not Feedback.objects.exists() and not Label.objects.exists()


def test_a_verdict_on_an_auto_closed_alert_is_recorded_without_a_state_change(
    client, technician, asset, champion
):
    alert = make_alert(asset, champion, state="auto_closed")
    post(login(client, technician), alert, "confirm:inspected_no_action")
    alert.refresh_from_db()
    assert alert.state == "auto_closed"
    assert Feedback.objects.get(alert=alert).action == "inspected_no_action"
    assert AlertEvent.objects.filter(alert=alert, actor=technician, to_state="auto_closed").exists()
