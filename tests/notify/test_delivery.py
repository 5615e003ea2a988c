"""Delivery through Apprise: e-mails received by a real SMTP server, failures recorded with their reason
and retried with backoff, one failing channel never holding up scoring or another channel."""

from __future__ import annotations

import socket
import time
from email import message_from_bytes
from email.policy import default as email_policy

import pytest
from aiosmtpd.controller import Controller

from alerts.models import Alert
from notify import delivery
from notify.choices import DeliveryStatus, MessageKind
from notify.delivery import send_notification, send_test
from notify.models import Channel, InboxMessage, Rule
from plant.connections.secrets import encrypt
from tests.notify.conftest import make_channel, notifications, raise_alert, run_queued


class Inbox:
    """aiosmtpd handler keeping every message it is handed."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            (envelope.mail_from, envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy))
        )
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def mail_url(port: int, to: str = "oncall@example.com") -> str:
    return f"mailto://127.0.0.1:{port}?from=vigil@example.com&to={to}&mode=insecure"


def test_an_alert_reaches_a_real_smtp_server_as_an_email(
    asset, version, smtp, queued, django_capture_on_commit_callbacks
):
    controller, received = smtp
    channel = make_channel(asset.site, "on-call mail", mail_url(controller.port))
    Rule.objects.create(site=asset.site, name="all", channel=channel)
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    assert received.messages == []  # scoring sent nothing itself: the send is the task's
    run_queued(queued)
    [(sender, recipients, mail)] = received.messages
    alert = Alert.objects.get()
    assert (sender, recipients) == ("vigil@example.com", ["oncall@example.com"])
    assert mail["Subject"] == f"{asset.name} Anomaly detector alert, low"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert f"https://vigil.example.com/alerts/{alert.pk}/" in text and "/notify/ack/" in text
    [message] = notifications()
    assert message.status == DeliveryStatus.SENT and message.sent_at is not None
    assert [(a.ok, a.error) for a in message.attempts_made.all()] == [(True, "")]


def test_a_failing_channel_is_retried_with_backoff_then_given_up_with_its_reason(
    asset, version, queued, settings, django_capture_on_commit_callbacks
):
    port = free_port()  # nothing listens there
    channel = make_channel(asset.site, "dead mail", mail_url(port))
    Rule.objects.create(site=asset.site, name="all", channel=channel)
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    [message] = notifications()
    pauses = [send_notification(message.pk) for _ in range(settings.VIGIL_NOTIFY_RETRIES + 1)]
    assert pauses == [30.0, 60.0, None]  # VIGIL_NOTIFY_BACKOFF_S, doubled; then no more tries
    message.refresh_from_db()
    assert message.status == DeliveryStatus.FAILED and message.attempts == 3
    attempts = list(message.attempts_made.all())
    assert [a.ok for a in attempts] == [False, False, False]
    assert "127.0.0.1" in attempts[0].error and message.last_error == attempts[-1].error
    assert send_notification(message.pk) is None  # a failed message is not sent again by a stray task


def test_a_raising_channel_leaves_the_other_channels_delivered(
    asset, version, inbox, queued, monkeypatch, django_capture_on_commit_callbacks
):
    broken = make_channel(asset.site, "broken", "vigil://broken")
    Rule.objects.create(site=asset.site, name="inbox", channel=inbox)
    Rule.objects.create(site=asset.site, name="broken", channel=broken)
    real = delivery.deliver

    def deliver(url: str, title: str, body: str):
        if url == "vigil://broken":
            raise RuntimeError("the channel's service is down")
        return real(url, title, body)

    monkeypatch.setattr(delivery, "deliver", deliver)
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    assert len(queued) == 2  # one task per message
    [failing] = notifications(channel=broken)
    for pk in sorted(queued, key=lambda pk: pk != failing.pk):  # the broken one first
        send_notification(pk)
    failing.refresh_from_db()
    assert failing.status == DeliveryStatus.RETRYING
    assert failing.last_error == "RuntimeError: the channel's service is down"
    assert notifications(channel=inbox)[0].status == DeliveryStatus.SENT
    assert InboxMessage.objects.filter(inbox=asset.site.slug).count() == 1


def test_a_plugin_exception_fails_only_its_message(asset, monkeypatch):
    monkeypatch.setattr(
        delivery.apprise.Apprise, "notify", lambda self, **kw: (_ for _ in ()).throw(OSError("socket closed"))
    )
    assert delivery.deliver("vigil://north", "t", "b") == (False, "OSError: socket closed")


def test_scoring_never_waits_for_a_slow_channel(
    asset, version, queued, monkeypatch, django_capture_on_commit_callbacks
):
    channel = make_channel(asset.site, "slow", "vigil://slow")
    Rule.objects.create(site=asset.site, name="all", channel=channel)
    monkeypatch.setattr(delivery, "deliver", lambda *a: time.sleep(5) or (True, ""))
    started = time.monotonic()
    raise_alert(asset, version, django_capture_on_commit_callbacks)
    assert time.monotonic() - started < 2.0 and queued  # queued for the notify worker, not sent here


def test_an_unreadable_url_fails_at_once_with_the_reason(asset, monkeypatch):
    channel = Channel.objects.create(site=asset.site, name="env", url_env="VIGIL_TEST_NOTIFY_URL")
    monkeypatch.delenv("VIGIL_TEST_NOTIFY_URL", raising=False)
    sent = send_test(channel)
    assert (sent.status, sent.last_error) == (
        DeliveryStatus.FAILED,
        "environment variable VIGIL_TEST_NOTIFY_URL is not set",
    ), list(sent.attempts_made.values_list("error"))
    monkeypatch.setenv("VIGIL_TEST_NOTIFY_URL", f"vigil://{asset.site.slug}")
    assert send_test(channel).status == DeliveryStatus.SENT


def test_an_unknown_url_scheme_is_refused_with_a_clear_reason(asset):
    channel = Channel.objects.create(site=asset.site, name="typo", url_encrypted=encrypt("nosuchservice://x"))
    sent = send_test(channel)
    assert sent.status == DeliveryStatus.FAILED and "does not understand this URL" in sent.last_error
    assert sent.kind == MessageKind.TEST
