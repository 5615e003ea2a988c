"""What the metrics select, apart from the per-alert facts (``alerts.metrics.facts``): the follow-through
window, the grouping keys, the range filter and the missed failures with the period and model version
they count against.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from django.conf import settings
from django.db.models import (
    OuterRef,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce, TruncMonth, TruncWeek

from alerts.choices import FeedbackKind, MaintenanceAction, Verdict
from alerts.metrics.params import MetricsQuery, period_bounds
from alerts.models import Feedback
from models_registry.choices import ModelStatus
from models_registry.models import ModelStatusChange

# The field each grouping reads, on alerts and on missed failures (which have no model version of their
# own: they count against the version that was champion for the asset's type when the failure began).
ALERT_KEYS = {
    "site": "asset__site_id",
    "asset": "asset_id",
    "asset_type": "asset__asset_type_id",
    "model_version": "model_version_id",
}
MISSED_KEYS = {**ALERT_KEYS, "model_version": "deployed_version_id"}
# A confirmed fault someone acted on: a repair done or scheduled, a sensor replaced or recalibrated.
ACTIONABLE_ACTIONS = (
    MaintenanceAction.REPAIRED,
    MaintenanceAction.SCHEDULED,
    MaintenanceAction.SENSOR_REPLACED,
    MaintenanceAction.RECALIBRATED,
)
DISMISSED_VERDICTS = (Verdict.FALSE_ALARM, Verdict.NOT_ACTIONABLE)


def follow_through_window() -> timedelta:
    return timedelta(hours=settings.VIGIL_FOLLOW_THROUGH_HOURS)


def trunc(period: str, field: str) -> TruncMonth | TruncWeek:
    return TruncMonth(field) if period == "month" else TruncWeek(field)


def in_range(rows: QuerySet, query: MetricsQuery, field: str) -> QuerySet:
    site_field = "asset__site"
    if query.since():
        rows = rows.filter(**{f"{field}__gte": query.since()})
    if query.until():
        rows = rows.filter(**{f"{field}__lt": query.until()})
    if query.site:
        rows = rows.filter(**{site_field: query.site})
    return rows


def missed_failures(site_ids: Collection[int], query: MetricsQuery) -> QuerySet[Feedback]:
    """Reported failures no alert caught, with ``failure_at`` (the start of the failure they report, or
    the report time if the label is gone) and ``deployed_version_id`` (the version most recently made
    champion for the asset's type at that time; null when none was)."""
    deployed = (
        ModelStatusChange.objects.filter(
            version__asset_type_id=OuterRef("asset__asset_type_id"),
            to_status=ModelStatus.CHAMPION,
            at__lte=OuterRef("failure_at"),
        )
        .order_by("-at", "-pk")
        .values("version_id")[:1]
    )
    rows = (
        Feedback.objects.filter(kind=FeedbackKind.MISSED_FAILURE, asset__site_id__in=list(site_ids))
        .annotate(failure_at=Coalesce("label__start", "created_at"))
        .annotate(deployed_version_id=Subquery(deployed))
    )
    return in_range(rows, query, "failure_at")


DRILL_METRICS = (
    "alerts",
    "verdicts",
    "confirmed",
    "false_alarms",
    "not_actionable",
    "precision",
    "machine_confirmed",
    "machine_judged",
    "routed_judged",
    "actionable",
    "followed",
    "due",
    "not_followed",
    "acknowledged",
    "ignored",
    "dismissed",
    "dismissed_or_ignored",
    "missed",
)


NO_KEY = "none"


def with_key(rows: QuerySet, field: str, key: int | str | None) -> QuerySet:
    """Rows of one key: an id, NO_KEY (a null key: missed failures with no model deployed) or None (all)."""
    if key is None:
        return rows
    if key == NO_KEY:
        return rows.filter(**{f"{field}__isnull": True})
    return rows.filter(**{field: key})


def drill_missed(
    site_ids: Collection[int], query: MetricsQuery, *, period: str, key: int | str | None
) -> QuerySet[Feedback]:
    """The missed failures behind a row's ``missed``: those whose failure began in ``period``, of ``key``."""
    start, end = period_bounds(period)
    missed = missed_failures(site_ids, query).filter(failure_at__gte=start, failure_at__lt=end)
    return with_key(missed, MISSED_KEYS[query.group_by], key)
