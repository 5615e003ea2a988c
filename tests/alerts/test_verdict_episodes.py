"""Verdicts apply to the episode (issue 14): the lifecycle with the scorer's windows after a verdict —
no new alert while the condition lasts, the in-work lane, "repaired" then clear, escalation, return after
a clear — and the 10-second undo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.choices import AlertState, EpisodeState
from alerts.models import Alert, Feedback
from alerts.services import FeedbackError, board_alerts, record_feedback, undo_verdict
from plant.models import Label
from tests.alerts.conftest import CLEAR, OPEN, fault_x, score, windows
from tests.alerts.test_feedback import login, post

N = 6  # VIGIL_ALERT_CLEAR_WINDOWS in the tests' settings


@pytest.fixture(autouse=True)
def clear_windows(settings):
    settings.VIGIL_ALERT_CLEAR_WINDOWS = N
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_ESCALATION_FACTOR = 1.5


@pytest.fixture
def x(trained):
    return fault_x(trained)


def opened(asset, champion, x) -> Alert:
    score(asset, champion, windows(0, [OPEN + 1, OPEN + 2, OPEN + 1], x=x))
    return Alert.objects.get()


def test_after_a_verdict_the_ongoing_condition_raises_no_new_alert(asset, champion, x, technician):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "false_alarm:unknown")
    score(asset, champion, windows(3, [OPEN + 2] * 20, x=x))  # the anomaly is still there, 20 windows on
    assert Alert.objects.count() == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.episode == EpisodeState.JUDGED
    assert alert.window_count == 23 and alert.judged_peak_score == OPEN + 2


def test_a_scheduled_repair_is_in_work_on_the_board_until_repaired_and_clear(asset, champion, x, technician):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "confirm:scheduled")
    score(asset, champion, windows(3, [OPEN + 1] * 5, x=x))
    [card] = board_alerts(technician)
    assert card.pk == alert.pk and card.in_work
    score(asset, champion, windows(8, [CLEAR - 1] * (N + 2) + [OPEN + 1] * 3, x=x))  # clears, comes back
    assert Alert.objects.count() == 1  # latched: in work absorbs the return
    alert.refresh_from_db()
    assert alert.episode == EpisodeState.IN_WORK

    record_feedback(alert, technician, "confirm:repaired")  # the in-work card's "Repaired"
    alert.refresh_from_db()
    assert alert.episode == EpisodeState.JUDGED and board_alerts(technician) == []
    score(asset, champion, windows(19, [CLEAR - 1] * N, x=x))
    alert.refresh_from_db()
    assert alert.episode == EpisodeState.OVER
    assert alert.events.filter(reason__contains="the episode is over").count() == 1
    score(asset, champion, windows(19 + N, [OPEN + 1] * 3, x=x))
    assert Alert.objects.count() == 2  # over: the condition coming back is a new alert


def test_any_technician_may_record_the_repair_of_an_alert_in_work_but_not_change_its_verdict(
    client, asset, champion, x, technician, engineer
):
    alert = opened(asset, champion, x)
    record_feedback(alert, engineer, "confirm:scheduled")
    assert post(login(client, technician), alert, "false_alarm:unknown", htmx=True).status_code == 403
    response = post(client, alert, "confirm:repaired", htmx=True)
    assert response.status_code == 200
    assert Alert.objects.get().episode == EpisodeState.JUDGED


def test_clearing_for_n_windows_and_coming_back_opens_a_new_alert(asset, champion, x, technician):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "confirm:inspected_no_action")
    score(asset, champion, windows(3, [CLEAR - 1] * (N - 1) + [OPEN + 1] * 3, x=x))
    assert Alert.objects.count() == 1  # N - 1 quiet windows are not a clear
    score(asset, champion, windows(11, [CLEAR - 1] * N + [OPEN + 1] * 3, x=x))
    new = Alert.objects.exclude(pk=alert.pk).get()
    assert new.state == AlertState.OPEN and new.reopened_from is None and new.reopen_note == ""


def test_an_escalation_reopens_with_the_sentence(asset, champion, x, technician):
    alert = opened(asset, champion, x)  # peak OPEN + 2 = 12: 1.5 × 12 = 18
    record_feedback(alert, technician, "false_alarm:unknown")
    score(asset, champion, windows(3, [OPEN + 5, 18.5, 18.2], x=x))
    assert Alert.objects.count() == 1  # two windows past 1.5 × the peak: not yet
    score(asset, champion, windows(6, [18.6], x=x))
    alert.refresh_from_db()
    new = Alert.objects.exclude(pk=alert.pk).get()
    verdict_at = timezone.localtime(alert.feedback.get().created_at)
    sentence = f"re-opened: worse than when judged on {verdict_at:%Y-%m-%d %H:%M} by {technician.username}"
    assert new.state == AlertState.OPEN and new.reopen_note == sentence and new.reopened_from == alert
    assert new.peak_score == 18.6 and new.window_count == 3
    assert alert.episode == EpisodeState.OVER
    assert sentence in new.events.get().reason


def test_the_reopened_card_says_so_on_the_board(client, asset, champion, x, technician):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "false_alarm:unknown")
    score(asset, champion, windows(3, [40.0] * 3, x=x))
    body = login(client, technician).get(reverse("alerts:board")).content.decode()
    assert "Re-opened: worse than when judged on" in body and f"alert #{alert.pk}" in body


# --- undo ---------------------------------------------------------------------------------------------------


def test_undo_within_the_limit_reverts_the_verdict_and_its_label_and_is_idempotent(
    asset, champion, x, technician
):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "acknowledge")
    verdict = record_feedback(alert, technician, "confirm:scheduled")
    assert Label.objects.count() == 1
    message = undo_verdict(alert, technician, verdict.pk, now=verdict.created_at + timedelta(seconds=9))
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.closed_at is None
    assert alert.episode == EpisodeState.LIVE and alert.judged_peak_score is None
    assert not Feedback.objects.filter(kind="verdict").exists() and not Label.objects.exists()
    assert alert.events.filter(undoes=verdict.pk).count() == 1
    again = undo_verdict(alert, technician, verdict.pk, now=verdict.created_at + timedelta(seconds=30))
    assert again == message and alert.events.filter(undoes=verdict.pk).count() == 1
    score(asset, champion, windows(3, [OPEN + 1] * 2, x=x))  # the alert is live again: it takes them
    assert Alert.objects.get().window_count == 5


def test_undo_after_the_limit_is_refused_with_a_message(client, asset, champion, x, technician):
    alert = opened(asset, champion, x)
    verdict = record_feedback(alert, technician, "false_alarm:unknown")
    Feedback.objects.filter(pk=verdict.pk).update(created_at=timezone.now() - timedelta(seconds=11))
    with pytest.raises(FeedbackError, match="more than 10 s ago"):
        undo_verdict(alert, technician, verdict.pk)
    response = login(client, technician).post(
        reverse("alerts:undo", args=[alert.pk, verdict.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 400 and "can no longer be undone" in response.content.decode()
    assert Alert.objects.get().state == AlertState.RESOLVED


def test_undo_of_a_correction_restores_the_corrected_verdict_and_label(asset, champion, x, technician):
    alert = opened(asset, champion, x)
    record_feedback(alert, technician, "confirm:scheduled")
    repaired = record_feedback(alert, technician, "confirm:repaired")
    undo_verdict(alert, technician, repaired.pk)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.episode == EpisodeState.IN_WORK
    assert Feedback.objects.get(kind="verdict").action == "scheduled"
    assert Label.objects.get().note.endswith("repair scheduled")


def test_undo_over_http_answers_with_the_message_and_a_resync_trigger(client, asset, champion, x, technician):
    alert = opened(asset, champion, x)
    response = post(login(client, technician), alert, "false_alarm:unknown", htmx=True)
    verdict = Feedback.objects.get(kind="verdict")
    assert f"/alerts/{alert.pk}/undo/{verdict.pk}/" in response.content.decode()
    url = reverse("alerts:undo", args=[alert.pk, verdict.pk])
    for _ in range(2):
        response = client.post(url, headers={"HX-Request": "true"})
        assert response.status_code == 200 and response["HX-Trigger"] == "verdict-undone"
        assert "was undone" in response.content.decode()
    assert Alert.objects.get().state == AlertState.OPEN
