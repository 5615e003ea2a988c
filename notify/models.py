"""Notification channels, routing rules, on-call shifts, quiet hours, and the delivery log of every message.

The app sits above alerts (it reads alerts and their events, alerts never import it): each message is a
``Notification`` row written when an alert's state changes (notify.services), sent by a task on the
``notify`` queue (notify.delivery) with every attempt recorded as a ``DeliveryAttempt``.
"""

from __future__ import annotations

import calendar
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.choices import AlertCategory, Severity
from alerts.models import Alert
from notify.choices import DeliveryStatus, MessageKind
from plant.connections.secrets import SecretError, read_secret
from plant.models import Asset, Site

ENV_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable name: letters, digits, _.")
TIER = [MinValueValidator(1), MaxValueValidator(9)]


def _in_window(start: time, end: time, moment: time) -> bool:
    """Whether `moment` falls in [start, end); a window whose end is not after its start runs past
    midnight (22:00–06:00), and start == end is the whole day."""
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


class Channel(models.Model):
    """Where a site's messages go: one Apprise URL (mailto://, slack://, ntfy://, json://, ... or
    vigil://<site slug>/<box> for the built-in inbox page). The URL holds credentials, so it is stored
    encrypted (plant.connections.secrets, as the connections' passwords) or read from an environment
    variable, and never shown back."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="notify_channels")
    name = models.CharField(max_length=120)
    url_encrypted = models.TextField(blank=True, editable=False)
    url_env = models.CharField(
        "URL from environment variable",
        max_length=100,
        blank=True,
        validators=[ENV_NAME],
        help_text="Read the Apprise URL from this environment variable of the workers instead of storing it.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_notify_channel_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.site})"

    def apprise_url(self) -> str:
        """The channel's URL in clear; SecretError when it is missing or cannot be read."""
        url = read_secret(self.url_env, self.url_encrypted, "URL")
        if not url:
            raise SecretError("no URL is stored for this channel")
        return url


class Rule(models.Model):
    """Which alerts of a site go to which channel at which tier. Tier 1 is told when the alert opens;
    an alert still open (not acknowledged, snoozed or closed) ``escalate_after`` the message of a tier
    goes to the next tier's rules. Without a channel the rule sends to whoever is on call for its tier
    (``Shift``)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="notify_rules")
    name = models.CharField(max_length=120)
    min_severity = models.CharField(
        "severity at least", max_length=10, choices=Severity.choices, default=Severity.LOW
    )
    category = models.CharField(
        max_length=16, choices=AlertCategory.choices, blank=True, help_text="Empty: every category."
    )
    asset = models.ForeignKey(
        Asset,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every asset.",
    )
    tier = models.PositiveSmallIntegerField(default=1, validators=TIER)
    channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rules",
        help_text="Empty: the channel on call for this tier (on-call shifts).",
    )
    escalate_after = models.DurationField(
        null=True,
        blank=True,
        help_text="Not acknowledged this long after this tier's message (e.g. 00:15:00): the next tier is told.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["site", "tier", "name"]

    def __str__(self) -> str:
        return f"{self.name} (tier {self.tier})"

    def clean(self) -> None:
        for name in ("asset", "channel"):
            related = getattr(self, name)
            if related is not None and self.site_id and related.site_id != self.site_id:
                raise ValidationError({name: f"The {name} belongs to another site."})
        # A negative delay escalated at the next sweep and zero never: neither is what was typed for.
        if self.escalate_after is not None and self.escalate_after <= timedelta(0):
            raise ValidationError(
                {
                    "escalate_after": "Escalate after must be longer than zero (e.g. 00:15:00); leave it "
                    "empty for a tier that does not escalate."
                }
            )

    def matches(self, alert: Alert) -> bool:
        return (
            Severity(alert.severity).rank >= Severity(self.min_severity).rank
            and self.category in ("", alert.category)
            and self.asset_id in (None, alert.asset_id)
        )


class Shift(models.Model):
    """Who is on call: a weekly time window (the site's time zone) in which a tier's channel is the one
    a rule without a channel sends to."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="notify_shifts")
    tier = models.PositiveSmallIntegerField(default=1, validators=TIER)
    days = models.CharField(
        max_length=7,
        default="0123456",
        validators=[RegexValidator(r"^[0-6]{1,7}$", "Digits 0 (Monday) to 6 (Sunday), e.g. 01234.")],
        help_text="Week days of the start, 0 = Monday … 6 = Sunday (e.g. 01234 for Monday to Friday).",
    )
    start = models.TimeField()
    end = models.TimeField(help_text="Not after the start: the shift runs past midnight.")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="shifts")

    class Meta:
        ordering = ["site", "tier", "start"]

    def __str__(self) -> str:
        return f"tier {self.tier} {self.days_text} {self.start:%H:%M}–{self.end:%H:%M} → {self.channel.name}"

    @property
    def days_text(self) -> str:
        """The week days in words: "every day", "Mon, Tue, Wed" (``days`` holds their digits, 0 = Monday)."""
        if set(self.days) == set("0123456"):
            return "every day"
        return ", ".join(calendar.day_abbr[int(day)] for day in sorted(set(self.days)) if day in "0123456")

    def clean(self) -> None:
        if self.channel_id and self.site_id and self.channel.site_id != self.site_id:
            raise ValidationError({"channel": "The channel belongs to another site."})

    def covers(self, local: datetime) -> bool:
        """Whether the shift is on at `local` (a time in the site's zone); a shift past midnight belongs to
        the day it started."""
        moment = local.time()
        if not _in_window(self.start, self.end, moment):
            return False
        started_yesterday = not self.start < self.end and moment < self.end
        weekday = (local.weekday() - 1) % 7 if started_yesterday else local.weekday()
        return str(weekday) in self.days


class QuietHours(models.Model):
    """A daily window (the site's time zone) in which messages about alerts of ``max_severity`` or lower
    are held and sent when it ends (dropped if the alert closed meanwhile)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="notify_quiet_hours")
    start = models.TimeField()
    end = models.TimeField(help_text="Not after the start: the window runs past midnight.")
    max_severity = models.CharField(
        "hold severities up to", max_length=10, choices=Severity.choices, default=Severity.LOW
    )

    class Meta:
        ordering = ["site", "start"]
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.site}: {self.start:%H:%M}–{self.end:%H:%M} (up to {self.get_max_severity_display().lower()})"

    def covers(self, local: datetime) -> bool:
        return _in_window(self.start, self.end, local.time())


class Notification(models.Model):
    """One message to one channel, and its delivery: the per-alert delivery log. At most one per (alert,
    channel, kind, tier): one for the episode's opening, one per escalation tier, one for its close."""

    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=10, choices=MessageKind.choices)
    tier = models.PositiveSmallIntegerField(default=0, help_text="The escalation tier (0: none).")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    title = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    send_after = models.DateTimeField(
        null=True, blank=True, help_text="Held or waiting for the digest until then."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    digest = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="items",
        help_text="The digest message that carried this one.",
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel", "kind", "tier"],
                condition=Q(alert__isnull=False),
                name="one_notification_per_alert_channel_kind_tier",
            )
        ]
        indexes = [models.Index(fields=["status", "send_after"], name="notify_due")]

    def __str__(self) -> str:
        about = f"#{self.alert_id}" if self.alert_id else self.get_kind_display()
        return f"{about} → {self.channel.name}: {self.get_status_display()}"


class DeliveryAttempt(models.Model):
    """One try to hand a message to its channel: when, whether it went, and the reason if not."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts_made")
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'failed'}"


class Escalation(models.Model):
    """Where an open alert stands on its site's escalation ladder: the last tier told, when the next
    one is due (None: not due, e.g. acknowledged, or no further tier) and the alert's severity when its
    channels were last chosen (a rise routes it again). Claimed by compare-and-set."""

    alert = models.OneToOneField(Alert, on_delete=models.CASCADE, primary_key=True, related_name="escalation")
    tier = models.PositiveSmallIntegerField(default=1)
    next_at = models.DateTimeField(null=True, blank=True, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, blank=True)

    def __str__(self) -> str:
        return f"#{self.alert_id} tier {self.tier}"


class AckToken(models.Model):
    """The stored nonce of one signed acknowledge link: the link works once (``used_at``) and expires
    (the signature's timestamp, VIGIL_NOTIFY_ACK_MAX_AGE_S)."""

    nonce = models.CharField(max_length=40, unique=True)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="+")
    notification = models.ForeignKey(
        Notification, null=True, blank=True, on_delete=models.CASCADE, related_name="ack_tokens"
    )
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"ack #{self.alert_id} ({'used' if self.used_at else 'unused'})"


class InboxMessage(models.Model):
    """A message delivered to the built-in inbox (Apprise URL vigil://<site slug>/<box>): what a phone
    would have shown, listed on /notify/inbox/ for the demo and for trying rules out without a mail
    server."""

    inbox = models.SlugField(max_length=60, db_index=True, help_text="The site slug of the URL.")
    box = models.CharField(max_length=60, blank=True, help_text="Whose box: the URL's path.")
    title = models.CharField(max_length=200)
    body = models.TextField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.inbox}/{self.box}: {self.title}"
