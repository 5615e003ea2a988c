"""Hand-off of alerts to other systems: signed webhooks (endpoints and their delivery log) and work
orders sent to a site's CMMS (its connection and the orders with their outcome)."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from alerts.models import Alert, Feedback
from handoff.choices import (
    OPEN_WORK_ORDER,
    CmmsKind,
    DeliveryStatus,
    EventType,
    WorkOrderOutcome,
    WorkOrderStatus,
    WorkOrderTrigger,
)
from plant.models import Site, hash_token


class WebhookEndpoint(models.Model):
    """A URL of one site that receives every alert state change and verdict of the site, signed with the
    endpoint's secret (stored encrypted: plant.connections.secrets; never shown back)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="webhook_endpoints")
    name = models.CharField(max_length=120)
    url = models.URLField(max_length=500, help_text="HTTPS URL that receives the signed JSON events.")
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.site})"


class WebhookDelivery(models.Model):
    """One event for one endpoint: what was sent, how often, and how it went (the delivery log).

    ``event_id`` is the event's idempotency key: the same for every attempt and every redelivery."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=24, choices=EventType.choices)
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries"
    )
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="one_delivery_per_endpoint_event")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint}: {self.get_status_display()}"


class CmmsConnection(models.Model):
    """The site's CMMS: where work orders go (adapter ``kind``), the credential Vigil sends (encrypted,
    never shown back) and the hash of the token the CMMS sends with outcomes (shown once, like a gateway's)."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="cmms")
    kind = models.CharField(max_length=10, choices=CmmsKind.choices, default=CmmsKind.GENERIC)
    url = models.URLField(
        max_length=500,
        help_text="Generic: the URL work orders are POSTed to. Odoo: the server's base URL (…/jsonrpc is added).",
    )
    credential_encrypted = models.TextField(blank=True, editable=False)
    odoo_database = models.CharField(max_length=120, blank=True, help_text="Odoo only: the database name.")
    odoo_login = models.CharField(max_length=120, blank=True, help_text="Odoo only: the user's login.")
    auto_create = models.BooleanField(
        default=False, help_text="Send a work order automatically when a fault is confirmed."
    )
    inbound_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    inbound_token_hint = models.CharField(max_length=12, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "CMMS connection"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} CMMS of {self.site}"

    def rotate_inbound_token(self) -> str:
        """A new token for the CMMS's outcome calls; the clear token is returned once and not stored."""
        token = "vwo_" + secrets.token_urlsafe(32)
        self.inbound_token_hash, self.inbound_token_hint = hash_token(token), token[:10]
        return token

    def accepts(self, token: str) -> bool:
        return bool(self.inbound_token_hash) and secrets.compare_digest(
            self.inbound_token_hash, hash_token(token)
        )


class WorkOrder(models.Model):
    """A work order Vigil sent (or is sending) to the site's CMMS about one alert, and its outcome.

    The outcome is written to the alert's feedback through alerts.services.feedback (``feedback``: the
    verdict it recorded), so the label, the board and the metrics read it like any verdict."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="work_orders")
    connection = models.ForeignKey(CmmsConnection, on_delete=models.PROTECT, related_name="work_orders")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="Idempotency key.")
    trigger = models.CharField(max_length=10, choices=WorkOrderTrigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=8, choices=WorkOrderStatus.choices, default=WorkOrderStatus.PENDING)
    external_id = models.CharField(max_length=120, blank=True, help_text="The CMMS's id of the order.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    outcome = models.CharField(max_length=16, choices=WorkOrderOutcome.choices, blank=True)
    findings = models.TextField(blank=True)
    outcome_source = models.CharField(max_length=10, blank=True, help_text='"webhook" or "poll".')
    corrected = models.CharField(
        max_length=120, blank=True, help_text="The verdict the outcome corrected (e.g. a confirmed fault)."
    )
    feedback = models.ForeignKey(
        Feedback, null=True, blank=True, on_delete=models.SET_NULL, related_name="work_orders"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert"],
                condition=Q(status__in=OPEN_WORK_ORDER),
                name="one_open_work_order_per_alert",
            )
        ]

    def __str__(self) -> str:
        return f"Work order #{self.pk} for alert #{self.alert_id}: {self.get_status_display()}"

    @property
    def status_choice(self) -> WorkOrderStatus:
        return WorkOrderStatus(self.status)

    @property
    def outcome_choice(self) -> WorkOrderOutcome | None:
        return WorkOrderOutcome(self.outcome) if self.outcome else None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_WORK_ORDER
