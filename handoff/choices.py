"""Choices of the hand-off app (webhooks and work orders); each carries a label and a colour."""

from __future__ import annotations

from django.db import models

from plant.choices import colours


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Failed, will retry"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"

    colour = colours(
        {"pending": "#6b7280", "retrying": "#d97706", "delivered": "#16a34a", "failed": "#dc2626"}
    )


class EventType(models.TextChoices):
    STATE_CHANGED = "alert.state_changed", "Alert state changed"
    VERDICT = "alert.verdict", "Verdict given"


class CmmsKind(models.TextChoices):
    GENERIC = "generic", "Generic JSON over HTTPS"
    ODOO = "odoo", "Odoo maintenance.request (JSON-RPC)"


class WorkOrderStatus(models.TextChoices):
    PENDING = "pending", "Being sent"
    SENT = "sent", "Sent to the CMMS"
    FAILED = "failed", "Could not be sent"
    CLOSED = "closed", "Closed"

    colour = colours({"pending": "#6b7280", "sent": "#d97706", "failed": "#dc2626", "closed": "#16a34a"})


# A work order still waiting for its outcome (one per alert at a time).
OPEN_WORK_ORDER = ("pending", "sent", "failed")


class WorkOrderOutcome(models.TextChoices):
    """What the CMMS says was found (the outcome webhook's and the poll's ``outcome``)."""

    DONE = "done", "Done, with findings"
    NO_FAULT_FOUND = "no_fault_found", "No fault found"
    CANCELLED = "cancelled", "Cancelled"

    colour = colours({"done": "#16a34a", "no_fault_found": "#2563eb", "cancelled": "#6b7280"})


class WorkOrderTrigger(models.TextChoices):
    AUTOMATIC = "automatic", "Confirmed fault (automatic)"
    MANUAL = "manual", "Created by a person"
