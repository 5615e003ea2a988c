"""What hand-off adds to alerts' pages (handed in by HandoffConfig.ready()): the alert page's work-order
panel with its "Create work order" button, and the health page's work-order metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Count, Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from alerts.metrics.params import MetricsQuery
from alerts.models import Alert
from alerts.services.board import CardAction
from handoff.choices import WorkOrderOutcome, WorkOrderStatus
from handoff.choices import OPEN_WORK_ORDER
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


def card_actions(alerts: Sequence[Alert]) -> dict[int, list[CardAction]]:
    """The board's "Create work order" button (alerts.services.board.provide_card_actions) on the live cards
    of sites with an enabled CMMS whose alert has no open work order — the alert page's rule
    (``alert_panel``'s ``can_create``), in two queries for the whole board."""
    live = [a for a in alerts if not a.is_shadow]
    sites = set(
        CmmsConnection.objects.filter(site_id__in={a.asset.site_id for a in live}, enabled=True).values_list(
            "site_id", flat=True
        )
    )
    candidates = [a for a in live if a.asset.site_id in sites]
    if not candidates:
        return {}
    busy = set(
        WorkOrder.objects.filter(alert__in=candidates, status__in=OPEN_WORK_ORDER).values_list(
            "alert_id", flat=True
        )
    )
    return {
        a.pk: [
            CardAction("Create work order", reverse("handoff:create_work_order", args=[a.pk]), "work-order")
        ]
        for a in candidates
        if a.pk not in busy
    }


def work_order_metrics(site_ids: list[int], query: MetricsQuery | None = None) -> dict[str, Any]:
    """Work orders of the sites' CMMS connections created in the query's range, in one statement: how many
    were created, closed and could not be sent, the mix of outcomes, how many labels their outcomes wrote
    (a verdict with a label) and how many corrected an earlier verdict; ``connections``: the sites' CMMSs."""
    connections = CmmsConnection.objects.filter(site_id__in=list(site_ids))
    in_range = Q()
    if query is not None:
        if query.site is not None:
            connections = connections.filter(site=query.site)
        if (since := query.since()) is not None:
            in_range &= Q(work_orders__created_at__gte=since)
        if (until := query.until()) is not None:
            in_range &= Q(work_orders__created_at__lt=until)

    def count(condition: Q = Q()) -> Count:
        return Count("work_orders", filter=in_range & condition)

    counts = connections.aggregate(
        connections=Count("pk", distinct=True),
        created=count(),
        closed=count(Q(work_orders__status=WorkOrderStatus.CLOSED)),
        failed=count(Q(work_orders__status=WorkOrderStatus.FAILED)),
        labels=count(Q(work_orders__feedback__label__isnull=False)),
        corrections=count(~Q(work_orders__corrected="")),
        **{o.value: count(Q(work_orders__outcome=o.value)) for o in WorkOrderOutcome},
    )
    counts["mix"] = [(o, counts.pop(o.value)) for o in WorkOrderOutcome]
    return counts


def health_panel(site_ids: list[int], query: MetricsQuery) -> dict[str, Any] | None:
    metrics = work_order_metrics(site_ids, query)
    if not metrics["connections"]:
        return None
    return {"template": "handoff/_health_panel.html", **metrics}


def alert_section(request: HttpRequest, alert: Alert) -> str:
    """The alert page's work-order section (alerts.views.provide_alert_section, after the verdict)."""
    panel = alert_panel(alert, request)
    if panel is None:
        return ""
    return render_to_string(panel["template"], {"panel": panel, "alert": alert}, request)


def health_section(request: HttpRequest, site_ids: list[int], query: MetricsQuery) -> str:
    """The health page's work-order section (alerts.health_views.provide_health_section)."""
    panel = health_panel(site_ids, query)
    return "" if panel is None else render_to_string(panel["template"], {"panel": panel}, request)
