"""The one dispatch point of hand-off: every AlertEvent (each state change and each verdict of an alert
is one row, alerts.models) is handed, after its transaction commits, to the webhooks and the automatic
work orders — the same post_save + robust on_commit path as the plant write-back (alerts.writeback).

Inside the scoring (or feedback) transaction this costs a set look-up (alerts.event_hooks): the assets of
the sites that have an enabled webhook endpoint or an automatic CMMS, cached per process. The HTTP calls
happen on the ``outbound`` Celery queue, never here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any


from alerts.choices import FeedbackKind, Verdict
from alerts.event_hooks import InterestedAssets, on_alert_events
from alerts.models import Feedback
from handoff.models import CmmsConnection, WebhookEndpoint
from plant.models import Asset
from handoff.webhooks import record_deliveries
from handoff.work_orders import auto_create_for

log = logging.getLogger(__name__)

# deliver_webhook_task.delay, handed in by HandoffConfig.ready() (the task module imports this one).
_DELIVER: list[Callable[[int], Any]] = []


def provide_deliverer(deliver: Callable[[int], Any]) -> None:
    _DELIVER[:] = [deliver]


def _handoff_asset_ids() -> Iterable[int]:
    hooks = WebhookEndpoint.objects.filter(enabled=True).values_list("site_id", flat=True)
    cmms = CmmsConnection.objects.filter(enabled=True, auto_create=True).values_list("site_id", flat=True)
    return Asset.objects.filter(site_id__in={*hooks, *cmms}).values_list("pk", flat=True)


# The assets of the sites with an enabled webhook endpoint or an automatic CMMS (alerts.event_hooks).
handoff_assets = InterestedAssets("handoff.dispatch", _handoff_asset_ids, [WebhookEndpoint, CmmsConnection])


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


def connect() -> None:
    """Every AlertEvent of a live alert of such an asset is dispatched after commit (alerts.event_hooks)."""
    on_alert_events(
        "handoff.dispatch", handoff_assets, lambda event_pk, asset_id: dispatch_event(event_pk), shadow=False
    )
