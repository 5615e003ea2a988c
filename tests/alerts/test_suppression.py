"""Snoozes, maintenance windows and shadow versions: recorded, never shown as open."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.choices import ACTIVE_STATES, AlertState
from alerts.models import Alert, MaintenanceWindow
from tests.alerts.conftest import CLEAR, OPEN, fault_x, score, window_end, windows


@pytest.fixture
def x(trained):
    return fault_x(trained)


def snoozed_alert(asset, champion, technician, x, snooze: timedelta) -> Alert:
    """An alert opened by three windows above the open threshold, then snoozed by the technician."""
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    alert = Alert.objects.get()
    alert.transition(
        AlertState.SNOOZED,
        actor=technician,
        snoozed_until=timezone.now() + snooze,
        snooze_reason="crew on site",
    )
    return alert


def test_a_snoozed_alert_keeps_updating_silently(asset, champion, technician, x):
    alert = snoozed_alert(asset, champion, technician, x, timedelta(hours=2))
    ids = score(asset, champion, windows(3, [OPEN + 40, OPEN + 2], x=x))
    alert.refresh_from_db()
    assert ids == []  # nothing to broadcast while snoozed
    assert alert.state == AlertState.SNOOZED
    assert alert.peak_score == OPEN + 40 and alert.window_count == 5
    assert Alert.objects.count() == 1


def test_an_expired_snooze_returns_to_open_while_the_condition_persists(asset, champion, technician, x):
    alert = snoozed_alert(asset, champion, technician, x, timedelta(minutes=5))
    Alert.objects.filter(pk=alert.pk).update(snoozed_until=timezone.now() - timedelta(seconds=1))
    ids = score(asset, champion, windows(3, [(OPEN + CLEAR) / 2], x=x))
    alert.refresh_from_db()
    assert ids == [alert.pk]
    assert alert.state == AlertState.OPEN
    event = alert.events.last()
    assert (event.from_state, event.to_state, event.actor) == ("snoozed", "open", None)
    assert "snooze expired" in event.reason


def test_an_expired_snooze_whose_condition_cleared_auto_closes(asset, champion, technician, x):
    alert = snoozed_alert(asset, champion, technician, x, timedelta(minutes=5))
    score(asset, champion, windows(3, [CLEAR - 1] * 6, x=x))
    alert.refresh_from_db()
    assert alert.state == AlertState.AUTO_CLOSED
    assert [e.to_state for e in alert.events.all()] == ["open", "snoozed", "auto_closed"]


def test_an_alert_opened_inside_a_maintenance_window_is_suppressed(asset, champion, engineer, x):
    MaintenanceWindow.objects.create(
        asset=asset, start=window_end(0), end=window_end(10), reason="bearing swap", created_by=engineer
    )
    ids = score(asset, champion, windows(0, [OPEN + 1] * 6, x=x))
    alert = Alert.objects.get()
    assert alert.state == AlertState.SUPPRESSED
    assert not Alert.objects.filter(state=AlertState.OPEN).exists()
    assert "bearing swap" in alert.events.get().reason
    assert ids == [alert.pk]  # the row changed; the dashboard shows it as suppressed, not open


def test_a_suppressed_alert_opens_when_the_fault_outlasts_the_maintenance(asset, champion, x):
    MaintenanceWindow.objects.create(asset=asset, start=window_end(0), end=window_end(4))
    score(asset, champion, windows(0, [OPEN + 1] * 5, x=x))
    assert Alert.objects.get().state == AlertState.SUPPRESSED
    score(asset, champion, windows(5, [OPEN + 1], x=x))
    alert = Alert.objects.get()
    assert alert.state == AlertState.OPEN
    assert alert.events.last().from_state == AlertState.SUPPRESSED


def test_a_suppressed_alert_whose_condition_clears_auto_closes(asset, champion, x):
    MaintenanceWindow.objects.create(asset=asset, start=window_end(0), end=window_end(4))
    score(asset, champion, windows(0, [OPEN + 1] * 3 + [CLEAR - 1] * 6, x=x))
    assert Alert.objects.get().state == AlertState.AUTO_CLOSED


def test_maintenance_windows_must_end_after_they_start(asset):
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceWindow.objects.create(asset=asset, start=window_end(5), end=window_end(5))


def test_a_shadow_version_records_only_would_be_alerts(asset, champion, shadow_version, x):
    ids = score(asset, shadow_version, windows(0, [OPEN + 1] * 3, x=x))
    alert = Alert.objects.get()
    assert alert.is_shadow and alert.model_version == shadow_version
    assert ids == [alert.pk]
    assert not Alert.objects.filter(is_shadow=False).exists()


def test_a_shadow_alert_does_not_block_the_champions_alert(asset, champion, shadow_version, x):
    score(asset, shadow_version, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    visible = Alert.objects.get(is_shadow=False)
    shadowed = Alert.objects.get(is_shadow=True)
    assert visible.model_version == champion and visible.state == AlertState.OPEN
    assert shadowed.state in ACTIVE_STATES
    score(asset, champion, windows(3, [CLEAR - 1] * 6, x=x))
    shadowed.refresh_from_db()
    assert shadowed.state == AlertState.OPEN  # the champion's scores never touch the shadow's alert


def test_the_champions_open_alert_does_not_stop_a_shadow_alert(asset, champion, shadow_version, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, shadow_version, windows(0, [OPEN + 1] * 3, x=x))
    assert Alert.objects.filter(state=AlertState.OPEN).count() == 2
