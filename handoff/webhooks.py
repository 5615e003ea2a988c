"""Signed outgoing webhooks: the JSON event of an alert state change or verdict, one delivery row per
enabled endpoint of the alert's site, and the delivery itself (signed POST, result in the log).

Events are written after the change has committed (handoff.dispatch) and sent by
``deliver_webhook_task`` on the ``outbound`` queue, so a slow or failing receiver never holds scoring or
the board. The event id is derived from the AlertEvent row (uuid5), so it is the same on every attempt,
every redelivery and every endpoint: receivers use it (header ``Idempotency-Key``) to process it once.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from alerts.choices import FeedbackKind
from alerts.models import AlertEvent, Feedback
from handoff.choices import DeliveryStatus, EventType
from handoff.models import WebhookDelivery, WebhookEndpoint
from handoff.signing import SIGNATURE_HEADER, signature_header
from plant.connections.secrets import SecretError, decrypt, encrypt

EVENT_NAMESPACE = uuid.UUID("6f1c3a2e-5d4b-4c8e-9a1f-0b7e2d3c4a5b")
MAX_ERROR = 500


def event_id(event_pk: int) -> uuid.UUID:
    """The idempotency key of the webhook event of AlertEvent ``event_pk``: stable forever."""
    return uuid.uuid5(EVENT_NAMESPACE, f"alert-event:{event_pk}")


def set_secret(endpoint: WebhookEndpoint, secret: str) -> None:
    endpoint.secret_encrypted = encrypt(secret)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _verdict(feedback: Feedback) -> dict[str, Any]:
    corrects = feedback.supersedes
    return {
        "verdict": feedback.verdict,
        "action": feedback.action or None,
        "reason": feedback.reason or None,
        "summary": feedback.summary,
        "note": feedback.note,
        "by": feedback.user.get_username() if feedback.user else None,
        "from_work_order": feedback.user_id is None,
        "corrects": corrects.verdict if corrects else None,
    }


def event_payload(event: AlertEvent) -> tuple[str, dict[str, Any]]:
    """(event type, JSON body) of one alert state change — a verdict when a verdict Feedback made it.
    The schema is ``WebhookEvent`` in the OpenAPI document (handoff.openapi)."""
    alert = event.alert
    asset = alert.asset
    feedback = Feedback.objects.filter(event=event).select_related("alert", "user", "supersedes").first()
    verdict = feedback if feedback is not None and feedback.kind == FeedbackKind.VERDICT else None
    kind = EventType.VERDICT if verdict else EventType.STATE_CHANGED
    body = {
        "id": str(event_id(event.pk)),
        "type": kind.value,
        "created_at": event.at.isoformat(),
        "site": asset.site.slug,
        "alert": {
            "id": alert.pk,
            "asset": asset.tag,
            "asset_name": asset.name,
            "kind": alert.kind,
            "category": alert.category,
            "severity": alert.severity,
            "state": alert.state,
            "opened_at": _iso(alert.opened_at),
            "closed_at": _iso(alert.closed_at),
            "link": settings.VIGIL_PUBLIC_URL + reverse("alerts:detail", args=[alert.pk]),
        },
        "change": {
            "from_state": event.from_state or None,
            "to_state": event.to_state,
            "by": event.actor.get_username() if event.actor else None,
            "reason": event.reason,
        },
        "verdict": _verdict(verdict) if verdict else None,
    }
    return kind.value, body


def record_deliveries(event_pk: int) -> list[int]:
    """One pending delivery per enabled endpoint of the event's site (none twice: the unique key);
    the ids of the rows written."""
    event = AlertEvent.objects.select_related("alert__asset__site", "actor").filter(pk=event_pk).first()
    if event is None:
        return []
    endpoints = list(
        WebhookEndpoint.objects.filter(site_id=event.alert.asset.site_id, enabled=True).values_list(
            "pk", flat=True
        )
    )
    if not endpoints:
        return []
    kind, body = event_payload(event)
    key = event_id(event.pk)
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint_id=pk, event_id=key, event_type=kind, alert=event.alert, payload=body)
            for pk in endpoints
        ],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(event_id=key, endpoint_id__in=endpoints, attempts=0).values_list(
            "pk", flat=True
        )
    )


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential, capped."""
    base = settings.VIGIL_WEBHOOK_BACKOFF_S
    return float(min(base * 2 ** max(attempts - 1, 0), settings.VIGIL_WEBHOOK_BACKOFF_MAX_S))


def deliver(delivery_id: int, *, now: float | None = None) -> bool | None:
    """Send one delivery now: True when the receiver answered 2xx, False on a failure (recorded in the
    log: status code or error), None when there is nothing to do (gone, delivered, endpoint disabled)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status == DeliveryStatus.DELIVERED or not delivery.endpoint.enabled:
        return None
    endpoint = delivery.endpoint
    body = orjson.dumps(delivery.payload)
    timestamp = int(now if now is not None else time.time())
    status_code, error = None, ""
    try:
        secret = decrypt(endpoint.secret_encrypted, "webhook secret")
        response = httpx.post(
            endpoint.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Vigil-Webhooks/1",
                SIGNATURE_HEADER: signature_header(secret, timestamp, body),
                "Idempotency-Key": str(delivery.event_id),
                "Vigil-Event-Type": delivery.event_type,
            },
            timeout=settings.VIGIL_WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:200]}"
    except SecretError as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    ok = not error
    attempts = delivery.attempts + 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts,
        last_status_code=status_code,
        last_error=error[:MAX_ERROR],
        last_attempt_at=timezone.now(),
        status=DeliveryStatus.DELIVERED
        if ok
        else (
            DeliveryStatus.RETRYING
            if attempts < settings.VIGIL_WEBHOOK_MAX_ATTEMPTS
            else DeliveryStatus.FAILED
        ),
        **({"delivered_at": timezone.now()} if ok else {}),
    )
    return ok


def redeliver(delivery_ids: list[int]) -> list[int]:
    """Queue deliveries again by hand (the console's action), whatever their state: the same event id
    and body, a fresh signature, and a fresh budget of attempts (the count starts again). Returns the ids
    to send."""
    ids = list(WebhookDelivery.objects.filter(pk__in=delivery_ids).values_list("pk", flat=True))
    WebhookDelivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.PENDING, attempts=0)
    return ids


def stale_deliveries(older_than: timedelta) -> list[int]:
    """Deliveries never attempted although queued more than ``older_than`` ago: their task was lost (the
    broker was down when the change committed). The sweep queues them again."""
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at__lt=timezone.now() - older_than,
            endpoint__enabled=True,
        ).values_list("pk", flat=True)[:500]
    )
