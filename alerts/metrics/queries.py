"""The querysets every metric is counted from: alerts annotated with what happened to them, and missed
failures with the period and model version they count against.

Each annotation is one correlated subquery on an indexed foreign key (AlertEvent.alert, Feedback.alert
+ kind), so the per-alert facts — when it was shown, the first human touch, the first verdict, the verdict
in force — are found by the database: cheap for the few alerts of a drill-down or an export chunk. The
counts over every alert read the same facts from ``alerts.metrics.facts`` (one pass, not one subquery
per alert and per count); ``metric_filters`` and ``facts.conditions`` must stay the same populations.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth, TruncWeek

from alerts.choices import AlertState, FeedbackKind, MaintenanceAction, Verdict
from alerts.metrics.params import MetricsQuery, period_bounds
from alerts.models import Alert, AlertEvent, Feedback
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
ACTIONABLE_ACTIONS = (MaintenanceAction.REPAIRED, MaintenanceAction.SCHEDULED)
DISMISSED_VERDICTS = (Verdict.FALSE_ALARM, Verdict.NOT_ACTIONABLE)


def follow_through_window() -> timedelta:
    return timedelta(hours=settings.VIGIL_FOLLOW_THROUGH_HOURS)


def trunc(period: str, field: str) -> TruncMonth | TruncWeek:
    return TruncMonth(field) if period == "month" else TruncWeek(field)


def annotated_alerts(site_ids: Collection[int]) -> QuerySet[Alert]:
    """Every visible (non-shadow) alert of the sites with, per alert:

    ``suppressed`` (opened inside a maintenance window), ``shown_at`` (when operators could first see it:
    the opening, or for a suppressed alert its first move to open; null if it never left suppression),
    ``first_human_at`` (first event by a person: acknowledge, snooze, verdict), ``first_verdict_at`` (first
    verdict, corrected or not), the verdict in force (``verdict``, ``verdict_action``, ``verdict_reason``,
    ``verdict_at``: the verdict Feedback no later one supersedes) and the delays ``response_delay``
    (first verdict − shown) and ``tta`` (first human event − shown).
    """
    events = AlertEvent.objects.filter(alert=OuterRef("pk"))
    verdicts = Feedback.objects.filter(alert=OuterRef("pk"), kind=FeedbackKind.VERDICT)
    current = verdicts.filter(superseded_by__isnull=True).order_by("-created_at", "-pk")
    human = Q(actor__isnull=False) | Q(feedback__isnull=False)
    # No transition leads into "suppressed": an event to it is the alert's creation.
    opened_suppressed = Q(state=AlertState.SUPPRESSED) | Q(
        Exists(events.filter(to_state=AlertState.SUPPRESSED))
    )
    first_open = events.filter(to_state=AlertState.OPEN).order_by("at", "pk")
    return (
        Alert.objects.filter(is_shadow=False, asset__site_id__in=list(site_ids))
        .annotate(
            suppressed=Case(
                When(opened_suppressed, then=Value(True)), default=Value(False), output_field=BooleanField()
            ),
            first_open_at=Subquery(first_open.values("at")[:1]),
            first_human_at=Subquery(events.filter(human).order_by("at", "pk").values("at")[:1]),
            first_verdict_at=Subquery(verdicts.order_by("created_at", "pk").values("created_at")[:1]),
            verdict=Subquery(current.values("verdict")[:1]),
            verdict_action=Subquery(current.values("action")[:1]),
            verdict_reason=Subquery(current.values("reason")[:1]),
            verdict_at=Subquery(current.values("created_at")[:1]),
        )
        .annotate(
            shown_at=Case(
                When(suppressed=True, then=F("first_open_at")),
                default=F("opened_at"),
                output_field=DateTimeField(),
            )
        )
        .annotate(
            response_delay=ExpressionWrapper(
                F("first_verdict_at") - F("shown_at"), output_field=DurationField()
            ),
            tta=ExpressionWrapper(F("first_human_at") - F("shown_at"), output_field=DurationField()),
        )
    )


def counted_alerts(site_ids: Collection[int], query: MetricsQuery) -> QuerySet[Alert]:
    """The alerts the metrics count: shown to operators, opened in the query's range, of its site."""
    alerts = annotated_alerts(site_ids).filter(shown_at__isnull=False)
    return in_range(alerts, query, "opened_at")


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


def metric_filters(now: datetime) -> dict[str, Q]:
    """The population behind each number of a row (drill-down) and each conditional count."""
    window = follow_through_window()
    confirmed = Q(verdict=Verdict.CONFIRMED_FAULT)
    false_alarm = Q(verdict=Verdict.FALSE_ALARM)
    followed = Q(response_delay__lte=window)
    return {
        "alerts": Q(),
        "verdicts": Q(verdict__isnull=False),
        "confirmed": confirmed,
        "false_alarms": false_alarm,
        "not_actionable": Q(verdict=Verdict.NOT_ACTIONABLE),
        "precision": confirmed | false_alarm,
        "actionable": confirmed & Q(verdict_action__in=ACTIONABLE_ACTIONS),
        "followed": followed,
        # Still inside its window with no verdict yet: not late, so not counted against follow-through.
        "due": Q(first_verdict_at__isnull=False) | Q(shown_at__lte=now - window),
        "not_followed": ~followed & (Q(first_verdict_at__isnull=False) | Q(shown_at__lte=now - window)),
        "acknowledged": Q(first_human_at__isnull=False),
        "ignored": Q(state=AlertState.AUTO_CLOSED, first_human_at__isnull=True),
        "dismissed": Q(verdict__in=DISMISSED_VERDICTS),
        "dismissed_or_ignored": Q(verdict__in=DISMISSED_VERDICTS)
        | Q(state=AlertState.AUTO_CLOSED, first_human_at__isnull=True),
    }


DRILL_METRICS = (
    "alerts",
    "verdicts",
    "confirmed",
    "false_alarms",
    "not_actionable",
    "precision",
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


def _with_key(rows: QuerySet, field: str, key: int | str | None) -> QuerySet:
    """Rows of one key: an id, NO_KEY (a null key: missed failures with no model deployed) or None (all)."""
    if key is None:
        return rows
    if key == NO_KEY:
        return rows.filter(**{f"{field}__isnull": True})
    return rows.filter(**{field: key})


def drill_alerts(
    site_ids: Collection[int],
    query: MetricsQuery,
    *,
    period: str,
    key: int | str | None,
    metric: str,
    now: datetime,
) -> QuerySet[Alert]:
    """The alerts behind one number: the query's alerts opened in ``period`` (a label), of ``key`` (an id of
    the query's grouping, None for every key) that match ``metric``."""
    start, end = period_bounds(period)
    alerts = counted_alerts(site_ids, query).filter(opened_at__gte=start, opened_at__lt=end)
    alerts = _with_key(alerts, ALERT_KEYS[query.group_by], key)
    return alerts.filter(metric_filters(now)[metric])


def drill_missed(
    site_ids: Collection[int], query: MetricsQuery, *, period: str, key: int | str | None
) -> QuerySet[Feedback]:
    """The missed failures behind a row's ``missed``: those whose failure began in ``period``, of ``key``."""
    start, end = period_bounds(period)
    missed = missed_failures(site_ids, query).filter(failure_at__gte=start, failure_at__lt=end)
    return _with_key(missed, MISSED_KEYS[query.group_by], key)
