"""Handing messages to their channels through Apprise, with the attempts recorded and retried.

``send_notification`` runs in the ``send_notification_task`` on the ``notify`` queue, one message per
task: a channel that hangs or fails delays only its own message, never scoring or another channel. A
failed attempt is recorded with Apprise's reason and tried again after a growing pause
(VIGIL_NOTIFY_BACKOFF_S × 2^n, VIGIL_NOTIFY_RETRIES times); a message is claimed by compare-and-set, so a
task that runs twice sends once.

The built-in inbox is an Apprise plugin of its own: ``vigil://<site slug>/<box>`` stores the message as an
InboxMessage, listed on /notify/inbox/ (the demo's channel).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import apprise
from apprise.decorators import notify as apprise_plugin
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from notify.choices import SENDABLE, DeliveryStatus, MessageKind
from notify.models import Channel, DeliveryAttempt, InboxMessage, Notification
from plant.connections.secrets import SecretError

log = logging.getLogger(__name__)

INBOX_SCHEME = "vigil"
MAX_ERROR = 500


@apprise_plugin(on=INBOX_SCHEME, name="Vigil inbox")
def deliver_to_inbox(
    body: str, title: str, notify_type: str, meta: dict, *args: object, **kwargs: object
) -> bool:
    """vigil://<site slug>/<box>: the message lands in that site's inbox page, in the named box."""
    box = (meta.get("fullpath") or meta.get("path") or "").strip("/")
    InboxMessage.objects.create(
        inbox=(meta.get("host") or "")[:60], box=box[:60], title=title[:200], body=body
    )
    return True


class UnusableURL(ValueError):
    """Apprise cannot use the URL at all: trying again will not help."""


def deliver(url: str, title: str, body: str) -> tuple[bool, str]:
    """Send one message to one Apprise URL; (True, "") or (False, the reason Apprise gave). UnusableURL
    when Apprise does not understand the URL."""
    # One URL per call, delivered in this thread: Apprise's own service timeout would hand the call to a
    # thread pool (and the inbox plugin's write to another database connection). A hung channel is bounded
    # by the plugins' socket timeouts and the send task's time limit instead.
    client = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False, service_timeout=0))
    if not client.add(url):
        raise UnusableURL("Apprise does not understand this URL (check its scheme and parameters)")
    with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
        try:
            ok = bool(client.notify(title=title, body=body))
        except Exception as exc:  # a plugin's own bug must fail this message, not the worker
            return False, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        reason = captured.getvalue().strip()
    if ok:
        return True, ""
    # The log lines carry a time stamp and level in front; the reason is what follows.
    lines = [line.split(" - ", 2)[-1] for line in reason.splitlines() if line.strip()]
    return False, ("; ".join(lines) or "the channel refused the message")[:MAX_ERROR]


def backoff(attempt: int) -> float:
    """The pause after the `attempt`-th failed try, in seconds."""
    return settings.VIGIL_NOTIFY_BACKOFF_S * 2 ** (attempt - 1)


def send_notification(notification_id: int) -> float | None:
    """Try to send one message now (if it is still waiting to be sent); the seconds until its next try
    when this one failed and tries remain, else None."""
    now = timezone.now()
    claimed = Notification.objects.filter(pk=notification_id, status__in=SENDABLE).update(
        status=DeliveryStatus.SENDING,
        attempts=F("attempts") + 1,
        next_attempt_at=now,  # when it was claimed
    )
    if claimed != 1:
        return None
    notification = Notification.objects.select_related("channel").get(pk=notification_id)
    channel = notification.channel
    try:
        ok, error = (
            deliver(channel.apprise_url(), notification.title, notification.body)
            if channel.enabled
            else (False, "the channel is disabled")
        )
        permanent = not channel.enabled
    except (SecretError, UnusableURL) as exc:
        ok, error, permanent = False, str(exc), True
    except Exception as exc:  # whatever a channel does, it fails its own message, retried like any failure
        ok, error, permanent = False, f"{type(exc).__name__}: {exc}"[:MAX_ERROR], False
    DeliveryAttempt.objects.create(notification=notification, at=now, ok=ok, error=error)
    if ok:
        Notification.objects.filter(pk=notification.pk).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), last_error="", next_attempt_at=None
        )
        return None
    if permanent or notification.attempts > settings.VIGIL_NOTIFY_RETRIES:
        Notification.objects.filter(pk=notification.pk).update(
            status=DeliveryStatus.FAILED, last_error=error, next_attempt_at=None
        )
        log.warning("notification %s to %s failed for good: %s", notification.pk, channel, error)
        return None
    pause = backoff(notification.attempts)
    Notification.objects.filter(pk=notification.pk).update(
        status=DeliveryStatus.RETRYING, last_error=error, next_attempt_at=now + timedelta(seconds=pause)
    )
    return pause


def send_test(channel: Channel) -> Notification:
    """The console's "send test": a test message written to the log and sent at once."""
    notification = Notification.objects.create(
        channel=channel,
        kind=MessageKind.TEST,
        title=f"Vigil test message for {channel.name}",
        body=f"This channel of {channel.site.name} is set up: alerts routed to it will arrive like this.",
    )
    send_notification(notification.pk)
    notification.refresh_from_db()
    return notification


def lost_sends(now: datetime | None = None) -> list[int]:
    """Messages whose send task was lost (broker down when queued, worker killed while sending): waiting
    longer than VIGIL_NOTIFY_LOST_S past when they were due. Put back to retrying; their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.VIGIL_NOTIFY_LOST_S)
    stale = Notification.objects.filter(
        (
            Q(status=DeliveryStatus.PENDING, created_at__lt=cutoff, send_after__isnull=True)
            | Q(status=DeliveryStatus.PENDING, send_after__lt=cutoff)
            | Q(status=DeliveryStatus.RETRYING, next_attempt_at__lt=cutoff)
            | Q(status=DeliveryStatus.SENDING, next_attempt_at__lt=cutoff)
        )
    )
    ids = list(stale.values_list("pk", flat=True))
    # A message stuck "sending" (its worker died mid-send) becomes sendable again.
    Notification.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.RETRYING
    )
    return ids


def redeliver(ids: list[int]) -> list[int]:
    """The console's "send again" for failed or skipped messages: sendable again; the ids that were."""
    chosen = list(
        Notification.objects.filter(
            pk__in=ids, status__in=[DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]
        ).values_list("pk", flat=True)
    )
    Notification.objects.filter(pk__in=chosen).update(status=DeliveryStatus.RETRYING, next_attempt_at=None)
    return chosen
