"""The console side (a channel's URL stored encrypted and never shown, "send test", "send again", site
scoping) and the health page's notification metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import time_machine

from alerts.models import Alert
from alerts.services import record_feedback
from notify.choices import DeliveryStatus, MessageKind
from notify.models import Channel, InboxMessage, Notification, Rule
from notify.services import escalate_due
from tests.notify.conftest import make_channel, raise_alert, run_queued
from tests.notify.test_routing import HIGH

SECRET_URL = "mailtos://user:s3cret-password@example.com?to=oncall@example.com"


def test_a_channel_url_is_stored_encrypted_and_never_shown_back(client, site, engineer):
    client.force_login(engineer)
    response = client.post(
        "/admin/notify/channel/add/", {"site": site.pk, "name": "mail", "url": SECRET_URL, "enabled": "on"}
    )
    assert response.status_code == 302, response.content
    channel = Channel.objects.get()
    assert "s3cret" not in channel.url_encrypted and channel.apprise_url() == SECRET_URL
    page = client.get(f"/admin/notify/channel/{channel.pk}/change/")
    assert page.status_code == 200 and b"s3cret" not in page.content and b"stored (encrypted)" in page.content
    # Saved again without a URL, the stored one is kept.
    client.post(
        f"/admin/notify/channel/{channel.pk}/change/", {"site": site.pk, "name": "mail", "enabled": "on"}
    )
    channel.refresh_from_db()
    assert channel.apprise_url() == SECRET_URL


def test_a_channel_needs_a_url(client, site, engineer):
    client.force_login(engineer)
    response = client.post("/admin/notify/channel/add/", {"site": site.pk, "name": "mail", "enabled": "on"})
    assert response.status_code == 200 and b"Give the channel an Apprise URL" in response.content
    assert not Channel.objects.exists()


def test_send_test_reports_the_outcome_and_logs_it(client, site, engineer, inbox):
    broken = make_channel(site, "typo", "nosuchservice://x")
    client.force_login(engineer)
    response = client.post(
        "/admin/notify/channel/",
        {"action": "send_test_message", "_selected_action": [inbox.pk, broken.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "Technicians: test message sent." in text
    assert "Typo: test message failed: Apprise does not understand this URL" in text
    assert InboxMessage.objects.get().title == "Vigil test message for technicians"
    assert set(Notification.objects.values_list("kind", "status")) == {
        (MessageKind.TEST, DeliveryStatus.SENT),
        (MessageKind.TEST, DeliveryStatus.FAILED),
    }


def test_an_engineer_sees_and_tests_only_the_channels_of_their_sites(
    client, site, other_site, engineer, inbox, queued
):
    theirs = make_channel(other_site, "south mail", "vigil://south")
    client.force_login(engineer)
    listing = client.get("/admin/notify/channel/").content.decode()
    assert "technicians" in listing and "south mail" not in listing
    assert client.get(f"/admin/notify/channel/{theirs.pk}/change/").status_code == 302  # "does not exist"
    client.post("/admin/notify/channel/", {"action": "send_test_message", "_selected_action": [theirs.pk]})
    assert not Notification.objects.filter(channel=theirs).exists()


def test_send_again_requeues_failed_messages(client, site, engineer, inbox, queued):
    failed = Notification.objects.create(
        channel=inbox, kind=MessageKind.TEST, title="t", body="b", status="failed"
    )
    client.force_login(engineer)
    with_commit = client.post(
        "/admin/notify/notification/", {"action": "send_again", "_selected_action": [failed.pk]}, follow=True
    )
    assert b"1 message(s) queued again." in with_commit.content
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.RETRYING


def test_the_health_page_shows_time_to_acknowledge_per_channel_and_escalations(
    client, asset, version, ladder, engineer, technician, queued, django_capture_on_commit_callbacks
):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        raise_alert(asset, version, django_capture_on_commit_callbacks, peak=HIGH)
        run_queued(queued)
    with time_machine.travel(start + timedelta(minutes=15), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            escalate_due()
        run_queued(queued)
    client.force_login(engineer)
    query = {"start": "2026-03-01", "end": "2026-03-31", "period": "month"}

    def section() -> str:
        page = client.get("/alerts/health/", query)
        assert page.status_code == 200
        text = page.content.decode()
        return text[text.index('id="notifications"') :]

    # Not answered yet: said in words, not a bare dash.
    unanswered = "<td>0</td><td>no message answered yet</td><td>no message answered yet</td>"
    assert f"<td>technicians</td><td>1</td><td>0</td>{unanswered}" in section()
    with time_machine.travel(start + timedelta(minutes=22), tick=False):
        record_feedback(Alert.objects.get(), technician, "acknowledge")
    # technicians told at 08:00, supervisor at 08:15, acknowledged at 08:22: 22 and 7 minutes, each the
    # median (and mean) of the one message answered.
    answered = section()
    assert (
        "<td>technicians</td><td>1</td><td>0</td><td>1</td><td>22 min (median of 1)</td><td>22 min (mean of 1)</td>"
        in answered
    )
    assert "<td>supervisor</td><td>1</td><td>0</td><td>1</td><td>7 min (median of 1)</td>" in answered
    assert "2026-03: 1 escalation" in answered


def test_the_inbox_page_lists_the_messages_of_the_users_sites_only_to_everyone_they_are_for(
    client, site, engineer, technician, django_user_model
):
    """The technicians' and the supervisor's boxes are read by technicians and supervisors (it was for
    engineers only: the demo's supervisor could not open the box its escalations go to); each user sees
    the messages of their own sites, named by the site's name."""
    InboxMessage.objects.create(inbox=site.slug, box="technicians", title="Pump alert, high", body="b")
    InboxMessage.objects.create(inbox="south", box="technicians", title="Elsewhere", body="b")
    supervisor = django_user_model.objects.create_user("boss", password="pw", is_staff=True)
    supervisor.sites.add(site)
    outsider = django_user_model.objects.create_user("outsider", password="pw")
    for user in (engineer, technician, supervisor):
        client.force_login(user)
        page = client.get("/notify/inbox/")
        assert page.status_code == 200, user
        text = page.content.decode()
        assert "Pump alert, high" in text and "Elsewhere" not in text
        assert f"at {site.name}</p>" in text
    client.force_login(outsider)
    assert "Pump alert, high" not in client.get("/notify/inbox/").content.decode()
    client.logout()
    assert client.get("/notify/inbox/").status_code == 302


def test_the_alert_page_shows_engineers_its_delivery_log(
    client, asset, version, inbox, engineer, technician, queued, django_capture_on_commit_callbacks
):
    from notify.models import Rule

    Rule.objects.create(site=asset.site, name="all", channel=inbox)
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    run_queued(queued)
    alert = Alert.objects.get()
    client.force_login(engineer)
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert 'id="notify-log"' in page and "Alert opened (tier 1) → <strong>technicians</strong>:" in page
    assert "sent at" in page
    client.force_login(technician)
    assert 'id="notify-log"' not in client.get(f"/alerts/{alert.pk}/").content.decode()


def test_a_rule_refuses_an_escalation_delay_that_is_zero_or_negative(client, site, engineer, inbox):
    from notify.models import Rule

    client.force_login(engineer)
    form = {"site": site.pk, "name": "page", "min_severity": "high", "tier": 1, "channel": inbox.pk}
    for typed in ("-00:05:00", "00:00:00"):
        response = client.post("/admin/notify/rule/add/", {**form, "escalate_after": typed, "enabled": "on"})
        assert response.status_code == 200
        assert b"Escalate after must be longer than zero" in response.content
    assert not Rule.objects.exists()
    response = client.post("/admin/notify/rule/add/", {**form, "escalate_after": "00:15:00", "enabled": "on"})
    assert response.status_code == 302 and Rule.objects.get().escalate_after == timedelta(minutes=15)


def test_a_rule_whose_escalation_reaches_no_next_tier_is_saved_with_a_warning(client, site, engineer, inbox):
    client.force_login(engineer)
    form = {"site": site.pk, "min_severity": "high", "channel": inbox.pk, "enabled": "on"}
    first = {**form, "name": "page the technicians", "tier": 1, "escalate_after": "00:15:00"}
    page = client.post("/admin/notify/rule/add/", first, follow=True).content.decode()
    assert f"{site} has no enabled tier-2 rule, so nobody is told when an alert of" in page
    assert "is still open after 15 min: add one" in page
    page = client.post(
        "/admin/notify/rule/add/", {**form, "name": "supervisor", "tier": 2}, follow=True
    ).content.decode()
    assert "has no enabled tier-3 rule" not in page  # it does not escalate itself
    rule = Rule.objects.get(tier=1)
    page = client.post(
        f"/admin/notify/rule/{rule.pk}/change/", {**first, "tier": 1}, follow=True
    ).content.decode()
    assert "has no enabled tier-2 rule" not in page


def test_the_rule_list_says_the_escalation_delay_in_words(client, site, engineer, inbox):
    Rule.objects.create(site=site, name="page", tier=1, channel=inbox, escalate_after=timedelta(minutes=2))
    Rule.objects.create(site=site, name="boss", tier=2, channel=inbox)
    client.force_login(engineer)
    page = client.get("/admin/notify/rule/").content.decode()
    assert '<td class="field-escalation">2 min</td>' in page and "0:02:00" not in page
    assert '<td class="field-escalation">—</td>' in page


def test_the_shift_list_names_the_week_days(client, site, engineer, inbox):
    from datetime import time

    from notify.models import Shift

    Shift.objects.create(site=site, tier=1, days="01234", start=time(6), end=time(14), channel=inbox)
    Shift.objects.create(site=site, tier=2, days="0123456", start=time(22), end=time(6), channel=inbox)
    client.force_login(engineer)
    page = client.get("/admin/notify/shift/").content.decode()
    assert '<td class="field-week_days">Mon, Tue, Wed, Thu, Fri</td>' in page
    assert '<td class="field-week_days">every day</td>' in page and ">01234<" not in page


def test_the_inbox_times_each_message_on_the_clock_of_the_site_it_was_sent_to(client, site, technician):
    site.timezone = "Asia/Kolkata"
    site.save(update_fields=["timezone"])
    at = datetime(2026, 3, 2, 22, 40, 5, tzinfo=dt_timezone.utc)  # 04:10:05 the next day on the site
    InboxMessage.objects.create(inbox=site.slug, box="technicians", title="Pump alert", body="b", at=at)
    client.force_login(technician)

    text = client.get("/notify/inbox/").content.decode()

    assert ">2026-03-03 04:10:05</time> · to <strong>technicians</strong>" in text
    assert "2026-03-02 22:40" not in text
