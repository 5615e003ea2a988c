"""Choices of the notifications: what a message is about and where its delivery stands."""

from __future__ import annotations

from django.db import models

from plant.choices import colours


class MessageKind(models.TextChoices):
    """One message per episode (opened), one per escalation tier, one to a channel a worse alert now
    reaches (got worse) or its new category's rules now reach (category changed), one for its close; a
    digest replaces individual messages during a flood; a test comes from the console's "send test"
    action."""

    OPENED = "opened", "Alert opened"
    ESCALATED = "escalated", "Escalated (not acknowledged)"
    WORSE = "worse", "Got worse (newly routed)"
    CATEGORY = "category", "Category changed (newly routed)"
    CLOSED = "closed", "Alert closed"
    DIGEST = "digest", "Flood digest"
    TEST = "test", "Test message"

    colour = colours(
        {
            "opened": "#dc2626",
            "escalated": "#7f1d1d",
            "worse": "#991b1b",
            "category": "#b45309",
            "closed": "#16a34a",
            "digest": "#d97706",
            "test": "#6b7280",
        }
    )


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    HELD = "held", "Held (quiet hours)"
    DIGEST = "digest", "Waiting for the flood digest"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Failed, will retry"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Not sent"
    DIGESTED = "digested", "Sent in a digest"

    colour = colours(
        {
            "pending": "#6b7280",
            "held": "#2563eb",
            "digest": "#d97706",
            "sending": "#6b7280",
            "retrying": "#d97706",
            "sent": "#16a34a",
            "failed": "#dc2626",
            "skipped": "#9ca3af",
            "digested": "#16a34a",
        }
    )


# The messages that tell a channel about a live alert (each also carries an acknowledge link).
ALERT_MESSAGES = ("opened", "escalated", "worse", "category")
# Waiting for a send task (a lost one is queued again by the sweep).
SENDABLE = ("pending", "retrying")
# The channel was (or is being) told about the alert: it also gets the close message.
TOLD = ("pending", "sending", "retrying", "sent", "digest", "digested")
