"""What hand-off adds to alerts' pages (handed in by HandoffConfig.ready()): the alert page's work-order
panel with its "Create work order" button, and the health page's work-order metrics."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.http import HttpRequest

from alerts.metrics.params import MetricsQuery
from alerts.models import Alert
from handoff.choices import WorkOrderOutcome, WorkOrderStatus
from handoff.models import CmmsConnection, WorkOrder


def alert_panel(alert: Alert, request: HttpRequest) -> dict[str, Any] | None:
    """The alert's work orders (newest first) and whether a new one can be created (the site has a CMMS
    and none is open); None when the site has no CMMS and the alert never had a work order."""
    orders = list(alert.work_orders.select_related("requested_by", "feedback").order_by("-created_at", "-pk"))
    has_cmms = CmmsConnection.objects.filter(site_id=alert.asset.site_id, enabled=True).exists()
    if not orders and not has_cmms:
        return None
    return {
        "template": "handoff/_alert_panel.html",
        "orders": orders,
        "can_create": has_cmms and not alert.is_shadow and not any(o.is_open for o in orders),
    }


def work_order_metrics(site_ids: list[int], query: MetricsQuery | None = None) -> dict[str, Any]:
    """Work orders of the sites created in the query's range: how many were created and closed, the mix
    of outcomes, and how many labels their outcomes wrote (a verdict with a label)."""
    orders = WorkOrder.objects.filter(alert__asset__site_id__in=list(site_ids))
    if query is not None:
        if query.site is not None:
            orders = orders.filter(alert__asset__site=query.site)
        if (since := query.since()) is not None:
            orders = orders.filter(created_at__gte=since)
        if (until := query.until()) is not None:
            orders = orders.filter(created_at__lt=until)
    counts = orders.aggregate(
        created=Count("pk"),
        closed=Count("pk", filter=Q(status=WorkOrderStatus.CLOSED)),
        failed=Count("pk", filter=Q(status=WorkOrderStatus.FAILED)),
        labels=Count("pk", filter=Q(feedback__label__isnull=False)),
        corrections=Count("pk", filter=~Q(corrected="")),
        **{o.value: Count("pk", filter=Q(outcome=o.value)) for o in WorkOrderOutcome},
    )
    counts["mix"] = [(o, counts.pop(o.value)) for o in WorkOrderOutcome]
    return counts


def health_panel(site_ids: list[int], query: MetricsQuery) -> dict[str, Any] | None:
    metrics = work_order_metrics(site_ids, query)
    if not metrics["created"] and not CmmsConnection.objects.filter(site_id__in=site_ids).exists():
        return None
    return {"template": "handoff/_health_panel.html", **metrics}
