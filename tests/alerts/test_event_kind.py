"""AlertEvent.kind: a category change and a held opening are recognised by the event's kind, never by the
words of its reason; migration 0014 gives existing rows their kind from the words the old code matched."""

from __future__ import annotations

import pytest

from alerts.choices import AlertCategory, AlertEventKind, AlertState
from alerts.models import AlertEvent
from notify import tasks as notify_tasks
from notify.choices import MessageKind
from notify.models import Notification, Rule
from notify.services import plan_event
from tests.alerts.builders import bare_champion, make_alert, migrate_to
from tests.notify.conftest import make_channel

BEFORE = ("alerts", "0013_alert_category_data_link")
AFTER = ("alerts", "0014_alertevent_kind")


def test_a_reason_that_only_starts_like_a_category_change_is_not_one_and_tells_nobody(asset, monkeypatch):
    monkeypatch.setattr(notify_tasks.send_notification_task, "delay", lambda pk: None)  # no broker
    site = asset.site
    it = make_channel(site, "IT", f"vigil://{site.slug}/it")
    Rule.objects.create(site=site, name="links", category="data_link", tier=1, channel=it)
    alert = make_alert(asset, bare_champion(asset.asset_type), category=AlertCategory.DATA_LINK)
    assert len(plan_event(alert.events.get().pk)) == 1  # IT hears of the opening
    # A channel the alert's rules reach now but that was not told: a category change would tell it.
    crew = make_channel(site, "field crew", f"vigil://{site.slug}/crew")
    Rule.objects.create(site=site, name="crew", category="data_link", tier=1, channel=crew)
    words = "category Check the data link → Machine fault? the night shift is not sure"
    note = AlertEvent.objects.create(alert=alert, from_state="open", to_state="open", reason=words)
    assert note.kind == AlertEventKind.STATE and note.category_change == ""
    assert plan_event(note.pk) == []
    assert not Notification.objects.filter(kind=MessageKind.CATEGORY).exists()
    assert AlertEvent.objects.get(pk=note.pk).reason == words  # shown as written

    maintenance = make_channel(site, "maintenance", f"vigil://{site.slug}/maintenance")
    Rule.objects.create(site=site, name="faults", category="machine_fault", tier=1, channel=maintenance)
    change = alert.recategorize(AlertCategory.MACHINE_FAULT, "the data flows again")
    assert change.kind == AlertEventKind.CATEGORY and change.from_state == change.to_state == "open"
    assert change.reason == "category Check the data link → Machine fault: the data flows again"
    assert change.category_change == "Check the data link → Machine fault: the data flows again"
    [told] = Notification.objects.filter(pk__in=plan_event(change.pk))
    assert (told.channel, told.kind) == (maintenance, MessageKind.CATEGORY)
    assert "Category changed: Check the data link → Machine fault: the data flows again." in told.body
    assert plan_event(change.pk) == []  # once


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_old_events_their_kind_from_the_words_the_old_code_matched(asset):
    alert = make_alert(asset, bare_champion(asset.asset_type), state=AlertState.SUPPRESSED, reason="x")
    rows = {  # (from, to, reason) as written before the field: the kind each must get
        ("", "open", "score above the open threshold for 3 consecutive windows"): "state",
        (
            "",
            "suppressed",
            "held: the readings of a faulty sensor explain it (vibration): score above",
        ): "held",
        ("open", "open", "category Check the data link → Machine fault: the condition persists"): "category",
        ("acknowledged", "acknowledged", "category Check the sensor → Machine fault: the explanation"): (
            "category"
        ),
        # Same words where the old code did not look (a state moved), or without the arrow a change has.
        ("open", "acknowledged", "category Check the sensor → Machine fault: I looked"): "state",
        ("resolved", "resolved", "category mix-up: the night shift confirmed it"): "state",
        ("resolved", "resolved", "Category Check the sensor → Machine fault: capital C"): "state",
        ("open", "snoozed", "held: the readings of a faulty sensor explain it"): "state",
        ("auto_closed", "auto_closed", "condition cleared for 6 windows; the episode is over"): "state",
    }
    pks: dict[int, str] = {}
    try:
        old = migrate_to(BEFORE)
        OldEvent = old.get_model("alerts", "AlertEvent")
        assert "kind" not in {field.name for field in OldEvent._meta.get_fields()}
        for (a, b, why), kind in rows.items():
            pks[OldEvent.objects.create(alert_id=alert.pk, from_state=a, to_state=b, reason=why).pk] = kind
        new = migrate_to(AFTER)
        found = dict(
            new.get_model("alerts", "AlertEvent").objects.filter(pk__in=pks).values_list("pk", "kind")
        )
        assert found == pks
        # Backwards the column goes; the reasons, never rewritten, still read as before.
        old = migrate_to(BEFORE)
        assert set(
            old.get_model("alerts", "AlertEvent").objects.filter(pk__in=pks).values_list("reason", flat=True)
        ) == {why for _, _, why in rows}
    finally:
        migrate_to()
    assert dict(AlertEvent.objects.filter(pk__in=pks).values_list("pk", "kind")) == pks
