"""Routing and escalation: one message per episode, escalation after a set time with a frozen clock, the
flood digest, quiet hours, on-call shifts, and the close message."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

import time_machine
from django.utils import timezone

from alerts.choices import AlertCategory, AlertState
from alerts.models import Alert, AlertEvent
from alerts.services import record_feedback, undo_verdict
from notify.choices import DeliveryStatus, MessageKind
from notify.models import InboxMessage, QuietHours, Rule, Shift
from notify.services import escalate_due, plan_event, release_held, reroute_worse, send_digests
from tests.alerts.builders import make_alert
from tests.alerts.conftest import CLEAR, OPEN, score, windows
from tests.notify.conftest import make_channel, notifications, raise_alert, run_queued

HIGH = OPEN * 5  # a high alert on a medium-criticality asset


def test_an_episode_gets_one_message_however_many_windows_it_lasts(
    asset, version, ladder, inbox, queued, django_capture_on_commit_callbacks
):
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    for first in (3, 6, 9):  # more anomalous windows update the same alert
        raise_alert(asset, version, django_capture_on_commit_callbacks, first=first)
    alert = Alert.objects.get()
    with django_capture_on_commit_callbacks(execute=True):  # a snooze that ends is the same episode
        alert.transition(AlertState.SNOOZED, reason="snooze:1h")
        alert.transition(AlertState.OPEN, reason="snooze ended")
    [message] = notifications()
    assert (message.channel, message.kind, message.tier) == (inbox, MessageKind.OPENED, 1)
    run_queued(queued)
    [received] = InboxMessage.objects.all()
    alert = Alert.objects.get()
    assert (received.inbox, received.box) == (asset.site.slug, "technicians")
    assert received.title == f"{asset.name} Anomaly detector alert, low"
    assert f"https://vigil.example.com/alerts/{alert.pk}/" in received.body
    assert "https://vigil.example.com/notify/ack/" in received.body


def test_the_close_goes_to_the_channels_that_were_told_once(
    asset, version, ladder, inbox, queued, django_capture_on_commit_callbacks
):
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, version, windows(3, [CLEAR - 1] * 6))
    opened, closed = notifications()
    assert (opened.kind, closed.kind, closed.channel) == (MessageKind.OPENED, MessageKind.CLOSED, inbox)
    assert closed.title.startswith("Closed: ") and "auto-closed" in closed.body
    assert "/notify/ack/" not in closed.body


def test_the_close_message_of_a_verdict_says_the_verdict_and_that_a_scheduled_repair_is_in_work(
    asset, version, ladder, inbox, technician, queued, django_capture_on_commit_callbacks
):
    # QA: "Repair scheduled" sent "<pump> alert, critical is resolved." and nothing else: read on a phone,
    # the pump was fixed, while the board kept the alert in work until the repair.
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(Alert.objects.get(), technician, "confirm:scheduled")
    opened, closed = notifications()
    assert closed.kind == MessageKind.CLOSED
    assert f"is resolved: Confirmed fault — Repair scheduled ({technician.username})." in closed.body
    assert "In work until the repair is done" in closed.body


def test_the_close_message_of_a_false_alarm_on_a_sensor_alert_says_the_sensor_read_true(
    asset, version, ladder, inbox, technician, queued, django_capture_on_commit_callbacks
):
    # It said "False alarm — Sensor glitch" (the sensor at fault) while the verdict kept the readings as true.
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    Alert.objects.update(category=AlertCategory.SENSOR_FAULT)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(Alert.objects.get(), technician, "false_alarm:sensor_reads_true")
    opened, closed = notifications()
    assert closed.kind == MessageKind.CLOSED
    assert f"is resolved: False alarm — Sensor checked, reads true ({technician.username})." in closed.body


def test_unacknowledged_high_alert_escalates_to_the_supervisor_after_15_minutes(
    asset, version, ladder, supervisor, queued, django_capture_on_commit_callbacks
):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, peak=HIGH)
        assert Alert.objects.get().severity == "high"
    with time_machine.travel(start + timedelta(minutes=14, seconds=59), tick=False):
        assert escalate_due() == []
    with time_machine.travel(start + timedelta(minutes=15), tick=False):
        escalated = escalate_due()
        assert escalate_due() == []  # claimed: a second sweep escalates nothing
    [message] = notifications(pk__in=escalated)
    assert (message.channel, message.kind, message.tier) == (supervisor, MessageKind.ESCALATED, 2)
    assert "escalated to tier 2" in message.body


def test_an_acknowledged_alert_does_not_escalate(
    asset, version, ladder, technician, queued, django_capture_on_commit_callbacks
):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, peak=HIGH)
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            record_feedback(Alert.objects.get(), technician, "acknowledge")
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        assert escalate_due() == []
    assert [n.kind for n in notifications()] == [MessageKind.OPENED]


def test_a_low_alert_is_not_escalated(asset, version, ladder, queued, django_capture_on_commit_callbacks):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks)
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        assert escalate_due() == []


def test_a_flood_turns_individual_messages_into_one_digest_per_channel(
    site, version, ladder, inbox, queued, django_capture_on_commit_callbacks
):
    from tests.conftest import make_asset

    start = datetime(2026, 3, 2, 8, 0, 30, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        for k in range(14):
            asset = make_asset(site, tag=f"f-{k}", asset_type=version.asset_type)
            with django_capture_on_commit_callbacks(execute=True):
                make_alert(asset, version, opened=timezone.now())
    messages = notifications(kind=MessageKind.OPENED)
    assert len(messages) == 14
    # The first ten went out one by one; from the eleventh the site is in flood (the KPI's > 10 / 10 min).
    assert [m.status for m in messages].count(DeliveryStatus.PENDING) == 10
    waiting = [m for m in messages if m.status == DeliveryStatus.DIGEST]
    assert len(waiting) == 4
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        assert send_digests() == []  # the period is not over yet
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            [digest_id] = send_digests()
        assert send_digests() == []
    [digest] = notifications(pk=digest_id)
    assert (digest.kind, digest.channel, digest.alert) == (MessageKind.DIGEST, inbox, None)
    assert digest.body.count("\n- ") == 4 and "one message instead of 4" in digest.body
    assert {m.digest_id for m in notifications(pk__in=[m.pk for m in waiting])} == {digest_id}
    run_queued(queued)
    assert InboxMessage.objects.count() == 11  # ten alerts and one digest


def test_quiet_hours_hold_low_alerts_until_they_end_but_not_high_ones(
    asset, version, ladder, queued, django_capture_on_commit_callbacks
):
    QuietHours.objects.create(site=asset.site, start=time(22, 0), end=time(6, 0), max_severity="low")
    night = datetime(2026, 3, 2, 23, 30, tzinfo=dt_timezone.utc)  # the site is on UTC
    with time_machine.travel(night, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks)
        [held] = notifications()
        assert held.status == DeliveryStatus.HELD and queued == []
        assert held.send_after == datetime(2026, 3, 3, 6, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(datetime(2026, 3, 3, 6, 0, tzinfo=dt_timezone.utc), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert release_held() == [held.pk]
    assert queued == [held.pk]
    other = make_alert(asset, version, kind="rul", severity="high", opened=night)
    with time_machine.travel(night, tick=False):
        plan_event(AlertEvent.objects.filter(alert=other).get().pk)
    assert notifications(alert=other)[0].status == DeliveryStatus.PENDING


def test_a_rule_without_channel_sends_to_whoever_is_on_call(
    asset, version, inbox, queued, django_capture_on_commit_callbacks
):
    night_shift = make_channel(asset.site, "night shift", f"vigil://{asset.site.slug}-night")
    Shift.objects.create(site=asset.site, tier=1, days="01234", start=time(6), end=time(18), channel=inbox)
    Shift.objects.create(
        site=asset.site, tier=1, days="01234", start=time(18), end=time(6), channel=night_shift
    )
    Rule.objects.create(site=asset.site, name="on call", tier=1)
    # Tuesday 03:00: the night shift that started on Monday evening.
    with time_machine.travel(datetime(2026, 3, 3, 3, 0, tzinfo=dt_timezone.utc), tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks)
    assert [n.channel for n in notifications()] == [night_shift]
    # Saturday 10:00: nobody on call, so nobody is told.
    with time_machine.travel(datetime(2026, 3, 7, 10, 0, tzinfo=dt_timezone.utc), tick=False):
        make_alert(asset, version, kind="rul")
        assert plan_event(AlertEvent.objects.latest("pk").pk) == []


def test_rules_filter_by_severity_category_and_asset(asset, other_asset, version, inbox, queued):
    from tests.conftest import make_asset

    neighbour = make_asset(asset.site, tag="p-102", asset_type=asset.asset_type)
    Rule.objects.create(
        site=asset.site, name="p-101 sensors", tier=1, channel=inbox, asset=asset, category="sensor_fault"
    )
    told = make_alert(asset, version, category="sensor_fault")
    other_category = make_alert(asset, version, kind="rul")
    other_asset_alert = make_alert(neighbour, version, category="sensor_fault")
    for alert in (told, other_category, other_asset_alert):
        plan_event(alert.events.get().pk)
    assert [n.alert for n in notifications()] == [told]


def test_shadow_alerts_and_other_sites_are_never_notified(
    asset, other_asset, version, ladder, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, version, is_shadow=True)
        make_alert(other_asset, version)
    assert notifications() == []


def test_a_low_alert_that_gets_high_is_chased_like_a_high_one(
    asset, version, ladder, inbox, supervisor, queued, django_capture_on_commit_callbacks
):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks)
        assert Alert.objects.get().severity == "low"
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, first=3, peak=HIGH)
        assert Alert.objects.get().severity == "high"
        assert reroute_worse() == []  # the technicians were told already: no second message
        assert reroute_worse() == []
    with time_machine.travel(start + timedelta(minutes=19, seconds=59), tick=False):
        assert escalate_due() == []
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        [escalated] = notifications(pk__in=escalate_due())
    assert (escalated.channel, escalated.kind, escalated.tier) == (supervisor, MessageKind.ESCALATED, 2)


def test_a_channel_for_worse_alerts_hears_of_an_alert_once_it_gets_worse(
    site, asset, version, inbox, supervisor, queued, django_capture_on_commit_callbacks
):
    Rule.objects.create(site=site, name="all", min_severity="low", tier=1, channel=inbox)
    Rule.objects.create(site=site, name="high", min_severity="high", tier=1, channel=supervisor)
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    assert [(n.channel, n.kind) for n in notifications()] == [(inbox, MessageKind.OPENED)]
    assert reroute_worse() == []  # nothing changed
    raise_alert(asset, version, django_capture_on_commit_callbacks, first=3, peak=HIGH)
    [worse] = notifications(pk__in=reroute_worse())
    assert (worse.channel, worse.kind, worse.tier) == (supervisor, MessageKind.WORSE, 1)
    assert worse.title.startswith("Worse: ") and "now high severity" in worse.body
    assert "/notify/ack/" in worse.body
    assert reroute_worse() == []  # claimed: told once
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, version, windows(6, [CLEAR - 1] * 6))
    closed = notifications(kind=MessageKind.CLOSED)
    assert {n.channel for n in closed} == {inbox, supervisor}  # both were told, both hear it is over


def test_a_snooze_that_runs_out_starts_the_escalation_clock_again(
    asset, version, ladder, supervisor, technician, queued, django_capture_on_commit_callbacks
):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, peak=HIGH)
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            Alert.objects.get().transition(AlertState.SNOOZED, reason="snooze:1h")
    with time_machine.travel(start + timedelta(minutes=65), tick=False):
        assert escalate_due() == []  # snoozed: nobody is chased
        with django_capture_on_commit_callbacks(execute=True):
            Alert.objects.get().transition(AlertState.OPEN, reason="snooze expired; still anomalous")
    with time_machine.travel(start + timedelta(minutes=79, seconds=59), tick=False):
        assert escalate_due() == []
    with time_machine.travel(start + timedelta(minutes=80), tick=False):
        [escalated] = notifications(pk__in=escalate_due())
    assert (escalated.channel, escalated.kind, escalated.tier) == (supervisor, MessageKind.ESCALATED, 2)
    assert [n.kind for n in notifications()] == [MessageKind.OPENED, MessageKind.ESCALATED]


def test_an_undone_verdict_starts_the_escalation_clock_again(
    asset, version, ladder, supervisor, technician, queued, django_capture_on_commit_callbacks
):
    # QA (demo): a false alarm closed the alert and stopped its escalation; "Undo" put it back on the board
    # as open and unacknowledged, but nobody was ever chased about it again.
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, peak=HIGH)
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            verdict = record_feedback(Alert.objects.get(), technician, "false_alarm:sensor_glitch")
    with time_machine.travel(start + timedelta(minutes=5, seconds=10), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            undo_verdict(Alert.objects.get(), technician, verdict.pk)
    assert Alert.objects.get().state == AlertState.OPEN
    with time_machine.travel(start + timedelta(minutes=20, seconds=9), tick=False):
        assert escalate_due() == []  # 15 minutes from the undo, as from a snooze that ran out
    with time_machine.travel(start + timedelta(minutes=20, seconds=10), tick=False):
        [escalated] = notifications(pk__in=escalate_due())
    assert (escalated.channel, escalated.kind, escalated.tier) == (supervisor, MessageKind.ESCALATED, 2)
