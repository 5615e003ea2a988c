"""Who is told what, when: routing an alert's state changes to channels, escalation, quiet hours, the
flood digest and the signed acknowledge links.

The one dispatch point is ``connect``'s receiver of AlertEvent rows (alerts.event_hooks, the path the
write-back and handoff take): every state change of an alert is an AlertEvent, whoever made it.
After the change commits, ``plan_event`` writes the messages as ``Notification`` rows (an outbox: no
network here, so scoring never waits for a channel) and queues one send task per message on the
``notify`` queue (notify.delivery). Rules:

* an alert shown to people (opened visibly, or out of maintenance) → one message per tier-1 channel;
  a re-opened snooze sends nothing (one message per episode, never one per window);
* still open ``escalate_after`` later → the next tier's channels (``escalate_due``, beat);
* closed → one message to each channel that was told of it;
* acknowledged, snoozed or closed → no further escalation; a snooze that runs out with the alert still
  open starts the escalation clock of its tier again (somebody must answer it now);
* a live alert whose severity rose since its channels were chosen → one "got worse" message to each
  channel its rules now reach on the tiers told so far and that was not told yet (a rule for high alerts
  only), and, while nobody answered it, the escalation clock the worse alert's rules set
  (``reroute_worse``, beat);
* a live alert whose category changed (the evidence moved it: alerts.services.lifecycle) → one "category
  changed" message, in the change's own words, to each channel the new category's rules reach on the tiers
  told so far and that was not told yet (the same routing as a worse alert, at once);
* during a flood (the alarm-load KPI's: more than ``FLOOD_ALERTS`` alerts shown at the site in the
  10-minute period) the messages wait for that period's digest, one per channel (``send_digests``);
* in quiet hours, messages about alerts of the held severities wait for the end (``release_held``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from alerts.choices import CLOSED_STATES, AlertCategory, AlertEventKind, AlertState, EpisodeState, Severity
from alerts.event_hooks import InterestedAssets, on_alert_events
from alerts.metrics.kpis import FLOOD_ALERTS, TEN_MINUTES
from alerts.models import Alert, AlertEvent, Feedback
from alerts.services import current_verdict, record_feedback
from alerts.writeback import alert_words
from notify.choices import ALERT_MESSAGES, TOLD, DeliveryStatus, MessageKind
from notify.models import AckToken, Channel, Escalation, Notification, QuietHours, Rule, Shift
from plant.models import Asset, Site

log = logging.getLogger(__name__)

ACK_SALT = "vigil.notify.ack"
# Moves that show an alert to people: opened visibly, or out of its maintenance window.
SHOWN_FROM = ("", AlertState.SUPPRESSED)
Sender = Callable[[int], None]
_sender: list[Sender] = []


def provide_sender(send: Sender) -> None:
    """The tasks module hands in how a message is queued (it imports this module)."""
    _sender[:] = [send]


def queue_send(notification_ids: Iterable[int]) -> None:
    """Queue the send task of each message once the current transaction has committed."""
    ids = list(notification_ids)
    if not ids or not _sender:
        return

    def queue_notifications() -> None:  # a named function: robust on_commit logs its name
        for pk in ids:
            _sender[0](pk)

    transaction.on_commit(queue_notifications, robust=True)


# --- the dispatch point ------------------------------------------------------------------------------------


def _notified_asset_ids() -> Iterable[int]:
    sites = Rule.objects.filter(enabled=True).values_list("site_id", flat=True)
    return Asset.objects.filter(site_id__in=sites).values_list("pk", flat=True)


# The assets of sites with an enabled rule (alerts.event_hooks: cached per process, at once after a rule is
# saved here): scoring, which holds the alert's asset, pays no query per event for them.
notified_assets = InterestedAssets("notify.services", _notified_asset_ids, [Rule])


def connect() -> None:
    """Plan the messages of every state change and category change (not of a verdict leaving the state as
    it was: plan_event sends nothing for it) of a live alert on a site with rules, once the change has
    committed (alerts.event_hooks: a failure is logged and never rolls back or slows the change)."""
    on_alert_events(
        "notify.services",
        notified_assets,
        lambda event_pk, asset_id: plan_event(event_pk),
        shadow=False,
    )


# --- planning ------------------------------------------------------------------------------------------------


def plan_event(event_id: int, *, now: datetime | None = None) -> list[int]:
    """The messages one alert state change calls for (written and queued); their ids."""
    event = (
        AlertEvent.objects.select_related("alert__asset__site", "alert__asset__asset_type")
        .filter(pk=event_id)
        .first()
    )
    if event is None or event.alert.is_shadow:
        return []
    alert, now = event.alert, now or timezone.now()
    if event.kind == AlertEventKind.CATEGORY:
        return notify_category_change(event, now)
    if event.from_state == event.to_state:  # a note that changes no state (a late verdict, an episode over)
        return []
    if event.to_state == AlertState.OPEN and event.from_state in SHOWN_FROM:
        return notify_tier(alert, 1, MessageKind.OPENED, now)
    if event.to_state == AlertState.OPEN and (
        event.from_state == AlertState.SNOOZED or event.from_state in CLOSED_STATES
    ):
        escalation = Escalation.objects.filter(alert=alert).first()
        if escalation is not None:  # the snooze is over, or a closing verdict undone: chase it again
            Escalation.objects.filter(pk=escalation.pk).update(
                next_at=next_escalation(alert, escalation.tier, route(alert, escalation.tier, now), now)
            )
        return []
    if event.to_state != AlertState.OPEN:
        # Acknowledged, snoozed, suppressed or closed: nobody needs to be chased about it any more.
        Escalation.objects.filter(alert=alert).update(next_at=None)
    if event.to_state in CLOSED_STATES:
        return notify_closed(alert, now)
    return []


@dataclass(frozen=True)
class Route:
    channels: list[Channel]
    escalate_after: timedelta | None


def route(alert: Alert, tier: int, now: datetime) -> Route:
    """The enabled channels of the alert's site that its tier-`tier` rules name (or that are on call for
    the tier), and the shortest escalation delay among those rules."""
    site = alert.asset.site
    rules = [
        rule
        for rule in Rule.objects.filter(site=site, tier=tier, enabled=True).select_related("channel")
        if rule.matches(alert)
    ]
    channels: dict[int, Channel] = {}
    for rule in rules:
        if rule.channel is not None:
            channels.setdefault(rule.channel.pk, rule.channel)
    if any(rule.channel is None for rule in rules):
        for channel in on_call(site, tier, now):
            channels.setdefault(channel.pk, channel)
    delays = [rule.escalate_after for rule in rules if rule.escalate_after]
    return Route(
        channels=[channel for channel in channels.values() if channel.enabled],
        escalate_after=min(delays) if delays else None,
    )


def on_call(site: Site, tier: int, now: datetime) -> list[Channel]:
    """The channels whose shift of this tier covers `now` in the site's time zone."""
    local = now.astimezone(site.zone)
    shifts = Shift.objects.filter(site=site, tier=tier).select_related("channel")
    return [shift.channel for shift in shifts if shift.covers(local)]


def flood_period(at: datetime) -> tuple[datetime, datetime]:
    """The 10-minute period (UTC multiples, as the alarm-load KPI's) holding `at`."""
    start_s = int(at.timestamp()) // TEN_MINUTES * TEN_MINUTES
    start = datetime.fromtimestamp(start_s, tz=dt_timezone.utc)
    return start, start + timedelta(seconds=TEN_MINUTES)


def in_flood(site_id: int, at: datetime) -> bool:
    """Whether the site has shown more than FLOOD_ALERTS alerts in `at`'s 10-minute period (the KPI's
    flood: alerts shown = visible alerts that moved to open from nothing or from maintenance)."""
    start, end = flood_period(at)
    shown = (
        AlertEvent.objects.filter(
            alert__asset__site_id=site_id,
            alert__is_shadow=False,
            to_state=AlertState.OPEN,
            from_state__in=SHOWN_FROM,
            at__gte=start,
            at__lt=end,
        )
        .values("alert_id")
        .distinct()
        .count()
    )
    return shown > FLOOD_ALERTS


def quiet_until(alert: Alert, now: datetime) -> datetime | None:
    """The end of the quiet hours holding a message about `alert` now, or None when it goes out now."""
    site = alert.asset.site
    local = now.astimezone(site.zone)
    rank = Severity(alert.severity).rank
    for quiet in QuietHours.objects.filter(site=site):
        if rank <= Severity(quiet.max_severity).rank and quiet.covers(local):
            end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
            if end <= local:
                end += timedelta(days=1)
            return end.astimezone(dt_timezone.utc)
    return None


def notify_tier(alert: Alert, tier: int, kind: MessageKind, now: datetime) -> list[int]:
    """Tell the alert's tier-`tier` channels (opened: tier 1; escalated: the next tier) and set when the
    tier after it is due. Returns the ids of the messages written (none twice: unique per tier)."""
    found = route(alert, tier, now)
    next_at = next_escalation(alert, tier, found, now)
    Escalation.objects.update_or_create(
        alert=alert, defaults={"tier": tier, "next_at": next_at, "severity": alert.severity}
    )
    return _write(alert, found.channels, kind, tier, now)


def next_escalation(alert: Alert, tier: int, found: Route, now: datetime) -> datetime | None:
    """When the tier after `tier` is due: the route's shortest delay, if the site has a next tier."""
    if not found.escalate_after:
        return None
    return now + found.escalate_after if has_next_tier(alert.asset.site_id, tier) else None


def has_next_tier(site_id: int, tier: int) -> bool:
    """Whether the site has an enabled rule of the tier after `tier`: without one, nobody is escalated to."""
    return Rule.objects.filter(site=site_id, tier=tier + 1, enabled=True).exists()


def notify_closed(alert: Alert, now: datetime) -> list[int]:
    """One close message to every channel that was told about the alert; messages still held for quiet
    hours are dropped instead (nobody needs to hear of an alert that is already over)."""
    told = Notification.objects.filter(alert=alert, kind__in=ALERT_MESSAGES)
    told.filter(status=DeliveryStatus.HELD).update(
        status=DeliveryStatus.SKIPPED, last_error="the alert closed during quiet hours"
    )
    channels = list(
        Channel.objects.filter(notifications__in=told.filter(status__in=TOLD), enabled=True).distinct()
    )
    return _write(alert, channels, MessageKind.CLOSED, 0, now)


def _write(
    alert: Alert, channels: list[Channel], kind: MessageKind, tier: int, now: datetime, change: str = ""
) -> list[int]:
    if not channels:
        return []
    status, send_after = DeliveryStatus.PENDING, None
    if in_flood(alert.asset.site_id, now):
        status, send_after = DeliveryStatus.DIGEST, flood_period(now)[1]
    elif kind != MessageKind.CLOSED and (held := quiet_until(alert, now)) is not None:
        status, send_after = DeliveryStatus.HELD, held
    title, body = compose(alert, kind, tier, change)
    written: list[Notification] = []
    for channel in channels:
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    alert=alert,
                    channel=channel,
                    kind=kind,
                    tier=tier,
                    status=status,
                    title=title,
                    body=body,
                    created_at=now,
                    send_after=send_after,
                )
        except IntegrityError:  # this channel already has this message: one per episode, tier and close
            continue
        if kind != MessageKind.CLOSED:
            notification.body += "\n" + ack_line(alert, notification)
            notification.save(update_fields=["body"])
        written.append(notification)
    queue_send(n.pk for n in written if n.status == DeliveryStatus.PENDING)
    return [n.pk for n in written]


def compose(alert: Alert, kind: MessageKind, tier: int = 0, change: str = "") -> tuple[str, str]:
    """Title and body of a message: the alert in the board's and the write-back's plain words
    (alerts.writeback.alert_words) and its link; a category change says what changed and why in the
    words of its event (Alert.recategorize): "Check the data link → Machine fault: <why>"."""
    words = alert_words(alert)
    lines = [words["text"][:1].upper() + words["text"][1:] + "."]
    if words.get("top_sensor_text"):
        lines.append(words["top_sensor_text"])
    if getattr(alert, "unusual", ""):
        lines.append(f"{alert.unusual}, for {alert.unusual_for}.")
    if kind == MessageKind.ESCALATED:
        lines.append(f"Not acknowledged yet: escalated to tier {tier}.")
        title = f"Escalated: {words['text']}"
    elif kind == MessageKind.WORSE:
        lines.append(f"It got worse since it opened: now {alert.get_severity_display().lower()} severity.")
        title = f"Worse: {words['text']}"
    elif kind == MessageKind.CATEGORY:
        lines.append(f"Category changed: {change}.")
        title = f"Now {alert.get_category_display().lower()}: {words['text']}"
    elif kind == MessageKind.CLOSED:
        # A verdict closes the alert too: say which, or "is resolved" reads as "the pump is fixed".
        closed = f"{words['text'][:1].upper() + words['text'][1:]} is {alert.get_state_display().lower()}"
        if (verdict := current_verdict(alert)) is not None:
            closed += f": {verdict.summary}" + (f" ({verdict.user.username})" if verdict.user else "")
        lines = [closed + "."]
        if alert.episode == EpisodeState.IN_WORK:
            work = "fix" if alert.category == AlertCategory.DATA_LINK else "repair"
            lines.append(f"In work until the {work} is done: no new alert while the condition lasts.")
        title = f"Closed: {words['text']}"
    else:
        title = words["text"][:1].upper() + words["text"][1:]
    lines.append(f"Open it: {words['link']}")
    return title[:200], "\n".join(lines)


# --- the beat sweep ------------------------------------------------------------------------------------------


def escalate_due(now: datetime | None = None) -> list[int]:
    """Escalate every open alert whose next tier is due (claimed by compare-and-set: a sweep that runs
    twice escalates once); the messages written."""
    now = now or timezone.now()
    written: list[int] = []
    for escalation in Escalation.objects.filter(next_at__lte=now).select_related(
        "alert__asset__site", "alert__asset__asset_type"
    ):
        claimed = Escalation.objects.filter(
            pk=escalation.pk, tier=escalation.tier, next_at=escalation.next_at
        ).update(next_at=None)
        if claimed != 1 or escalation.alert.state != AlertState.OPEN:
            continue
        with transaction.atomic():
            written += notify_tier(escalation.alert, escalation.tier + 1, MessageKind.ESCALATED, now)
    return written


def reroute_worse(now: datetime | None = None) -> list[int]:
    """Route again every live alert whose severity rose since its channels were chosen (claimed by
    compare-and-set on the severity routed): a "got worse" message to each channel not told yet
    (tell_newly_routed). The messages written."""
    now = now or timezone.now()
    written: list[int] = []
    live = Escalation.objects.filter(alert__state__in=[AlertState.OPEN, AlertState.ACKNOWLEDGED]).exclude(
        severity=F("alert__severity")
    )
    for escalation in live.select_related("alert__asset__site", "alert__asset__asset_type"):
        alert = escalation.alert
        claimed = Escalation.objects.filter(pk=escalation.pk, severity=escalation.severity).update(
            severity=alert.severity
        )
        rose = Severity(alert.severity).rank > Severity(escalation.severity or alert.severity).rank
        if claimed != 1 or not rose:
            continue  # another sweep has it, or it got better: the channels told stay told
        with transaction.atomic():
            written += tell_newly_routed(escalation, MessageKind.WORSE, now)
    return written


def tell_newly_routed(
    escalation: Escalation, kind: MessageKind, now: datetime, change: str = ""
) -> list[int]:
    """Route the escalation's live alert again on the tiers told so far: a `kind` message (got worse,
    category changed: `change` says how) to each channel its rules reach now and that has not been told of
    it, and, for an open alert whose escalation clock stopped for want of a delay, the clock its rules now
    set. The messages written (none twice: unique per alert, channel, kind and tier)."""
    alert, written = escalation.alert, []
    told = set(
        Notification.objects.filter(alert=alert, kind__in=ALERT_MESSAGES)
        .exclude(status__in=[DeliveryStatus.FAILED, DeliveryStatus.SKIPPED])
        .values_list("channel_id", flat=True)
    )
    for tier in range(1, escalation.tier + 1):
        found = route(alert, tier, now)
        new = [channel for channel in found.channels if channel.pk not in told]
        written += _write(alert, new, kind, tier, now, change)
        told.update(channel.pk for channel in new)
        if tier == escalation.tier and alert.state == AlertState.OPEN and escalation.next_at is None:
            Escalation.objects.filter(pk=escalation.pk, next_at=None).update(
                next_at=next_escalation(alert, tier, found, now)
            )
    return written


def notify_category_change(event: AlertEvent, now: datetime) -> list[int]:
    """A live alert that changed category (not a verdict leaving the state as it was): the channels its
    new category's rules reach on the tiers told so far hear of it once (tell_newly_routed)."""
    change = event.category_change
    if not change or event.alert.state not in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
        return []
    escalation = Escalation.objects.filter(alert=event.alert).first()
    if escalation is None:  # never shown to anybody (in maintenance): its opening message will route it
        return []
    escalation.alert = event.alert
    with transaction.atomic():
        return tell_newly_routed(escalation, MessageKind.CATEGORY, now, change)


def release_held(now: datetime | None = None) -> list[int]:
    """Messages whose quiet hours are over go out, unless their alert closed meanwhile."""
    now = now or timezone.now()
    due = Notification.objects.filter(status=DeliveryStatus.HELD, send_after__lte=now)
    due.filter(Q(alert__state__in=CLOSED_STATES) | Q(alert__state=AlertState.ACKNOWLEDGED)).update(
        status=DeliveryStatus.SKIPPED, last_error="answered or closed during quiet hours"
    )
    ids = list(due.values_list("pk", flat=True))
    released = Notification.objects.filter(pk__in=ids, status=DeliveryStatus.HELD).update(
        status=DeliveryStatus.PENDING
    )
    if released:
        queue_send(ids)
    return ids


def send_digests(now: datetime | None = None) -> list[int]:
    """One digest per channel for the messages that waited for a flood period to end; the digests."""
    now = now or timezone.now()
    waiting = (
        Notification.objects.filter(status=DeliveryStatus.DIGEST, send_after__lte=now)
        .select_related("alert__asset", "channel")
        .order_by("channel_id", "created_at", "pk")
    )
    by_channel: dict[int, list[Notification]] = {}
    for notification in waiting:
        by_channel.setdefault(notification.channel_id, []).append(notification)
    digests: list[int] = []
    for items in by_channel.values():
        with transaction.atomic():
            digest = Notification.objects.create(
                channel=items[0].channel,
                kind=MessageKind.DIGEST,
                title=f"{len(items)} alert messages during an alert flood",
                body=digest_body(items),
                created_at=now,
            )
            claimed = Notification.objects.filter(
                pk__in=[n.pk for n in items], status=DeliveryStatus.DIGEST
            ).update(status=DeliveryStatus.DIGESTED, digest=digest, sent_at=None)
            if claimed != len(items):  # another sweep took some of them: let it send them
                transaction.set_rollback(True)
                continue
        digests.append(digest.pk)
    queue_send(digests)
    return digests


def digest_body(items: list[Notification]) -> str:
    """The digest: one line per message (its title, the alert's link and acknowledge link)."""
    lines = [
        f"More than {FLOOD_ALERTS} alerts were shown within 10 minutes: one message instead of {len(items)}.",
        "",
    ]
    for item in items:
        link = settings.VIGIL_PUBLIC_URL + reverse("alerts:detail", args=[item.alert_id])
        line = f"- {item.title} — {link}"
        if item.kind != MessageKind.CLOSED and item.alert.state == AlertState.OPEN:
            line += f" — acknowledge: {ack_link(item.alert, item)}"
        lines.append(line)
    return "\n".join(lines)


# --- signed acknowledge links ---------------------------------------------------------------------------------


class AckLinkError(ValueError):
    """The acknowledge link is malformed, forged, expired or already used; the message says which."""


def ack_token(alert: Alert, notification: Notification | None = None) -> str:
    """A new acknowledge token for `alert`: signed and time-stamped, naming a stored single-use nonce."""
    nonce = secrets.token_urlsafe(16)
    AckToken.objects.create(nonce=nonce, alert=alert, notification=notification)
    return signing.TimestampSigner(salt=ACK_SALT).sign(f"{alert.pk}.{nonce}")


def ack_link(alert: Alert, notification: Notification | None = None) -> str:
    """A new one-click acknowledge link for `alert` (expiring, good for one use)."""
    return settings.VIGIL_PUBLIC_URL + reverse("notify:ack", args=[ack_token(alert, notification)])


def ack_line(alert: Alert, notification: Notification | None = None) -> str:
    hours = settings.VIGIL_NOTIFY_ACK_MAX_AGE_S / 3600
    return f"Acknowledge (one click, works once, expires in {hours:g} h): {ack_link(alert, notification)}"


def read_ack(token: str) -> AckToken:
    """The unused AckToken a link names; AckLinkError says why a link is refused."""
    try:
        value = signing.TimestampSigner(salt=ACK_SALT).unsign(
            token, max_age=settings.VIGIL_NOTIFY_ACK_MAX_AGE_S
        )
    except signing.SignatureExpired:
        raise AckLinkError("This acknowledge link has expired; open the alert instead.") from None
    except signing.BadSignature:
        raise AckLinkError("This is not a valid acknowledge link.") from None
    alert_id, _, nonce = value.partition(".")
    found = AckToken.objects.filter(nonce=nonce, alert_id=alert_id).select_related("alert").first()
    if found is None:
        raise AckLinkError("This is not a valid acknowledge link.")
    if found.used_at is not None:
        raise AckLinkError("This acknowledge link was already used; open the alert instead.")
    return found


def acknowledge_by_link(token: str, user: Any) -> Feedback:
    """Acknowledge the link's alert as `user` (the lifecycle's own acknowledge: alerts.services.feedback)
    and spend the link; FeedbackError when the alert's state no longer allows it (the link stays unused)."""
    with transaction.atomic():
        found = read_ack(token)
        spent = AckToken.objects.filter(pk=found.pk, used_at__isnull=True).update(
            used_at=timezone.now(), used_by=user
        )
        if spent != 1:
            raise AckLinkError("This acknowledge link was already used; open the alert instead.")
        return record_feedback(found.alert, user, "acknowledge")
