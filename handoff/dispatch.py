"""The one dispatch point of hand-off: every AlertEvent (each state change and each verdict of an alert
is one row, alerts.models) is handed, after its transaction commits, to the webhooks and the automatic
work orders — the same post_save + robust on_commit path as the plant write-back (alerts.writeback).

Inside the scoring (or feedback) transaction this costs a set look-up: the assets of the sites that
have an enabled webhook endpoint or an automatic CMMS are cached per process for HANDOFF_SITES_TTL_S (and forgotten at
once when one is saved here). The HTTP calls happen on the ``outbound`` Celery queue, never here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from alerts.choices import FeedbackKind, Verdict
from alerts.models import AlertEvent, Feedback
from handoff.models import CmmsConnection, WebhookEndpoint
from plant.models import Asset
from handoff.webhooks import record_deliveries
from handoff.work_orders import auto_create_for

log = logging.getLogger(__name__)

HANDOFF_SITES_TTL_S = 10.0
_sites_cache: TTLCache = TTLCache(maxsize=1, ttl=HANDOFF_SITES_TTL_S)
_sites_lock = threading.Lock()
# deliver_webhook_task.delay, handed in by HandoffConfig.ready() (the task module imports this one).
_DELIVER: list[Callable[[int], Any]] = []


def provide_deliverer(deliver: Callable[[int], Any]) -> None:
    _DELIVER[:] = [deliver]


def handoff_assets() -> frozenset[int]:
    """Ids of the assets on sites with an enabled webhook endpoint or an automatic CMMS (cached briefly)."""
    with _sites_lock:
        assets = _sites_cache.get("assets")
        if assets is None:
            hooks = WebhookEndpoint.objects.filter(enabled=True).values_list("site_id", flat=True)
            cmms = CmmsConnection.objects.filter(enabled=True, auto_create=True).values_list(
                "site_id", flat=True
            )
            assets = _sites_cache["assets"] = frozenset(
                Asset.objects.filter(site_id__in={*hooks, *cmms}).values_list("pk", flat=True)
            )
        return assets


def forget_handoff_assets(**kwargs: Any) -> None:
    with _sites_lock:
        _sites_cache.clear()


def dispatch_event(event_pk: int) -> None:
    """After commit: the event's webhook deliveries (queued), and the automatic work order of a
    confirmed fault."""
    for delivery_pk in record_deliveries(event_pk):
        for deliver in _DELIVER:
            deliver(delivery_pk)
    verdict = (
        Feedback.objects.filter(event_id=event_pk, kind=FeedbackKind.VERDICT)
        .values_list("alert_id", "verdict")
        .first()
    )
    if verdict is not None and verdict[1] == Verdict.CONFIRMED_FAULT:
        auto_create_for(verdict[0])


def on_alert_event(sender: type, instance: AlertEvent, created: bool, **kwargs: Any) -> None:
    """post_save of AlertEvent."""
    if not created or kwargs.get("raw"):
        return
    alert = instance.alert  # made with its alert in hand: no query in the caller's transaction
    if alert.is_shadow or alert.asset_id not in handoff_assets():
        return
    event_pk = instance.pk

    def dispatch_alert_event() -> None:  # a named function: robust on_commit logs its name
        dispatch_event(event_pk)

    transaction.on_commit(dispatch_alert_event, robust=True)


def connect() -> None:
    post_save.connect(on_alert_event, sender=AlertEvent, dispatch_uid="handoff.dispatch")
    for model in (WebhookEndpoint, CmmsConnection):
        for signal in (post_save, post_delete):
            signal.connect(
                forget_handoff_assets,
                sender=model,
                dispatch_uid=f"handoff.dispatch.{model.__name__}.{signal}",
            )
