"""The per-alert facts (alerts.metrics.facts, the one definition the counts, drill-downs, export and
comparison read) against the same definitions written independently as ORM subqueries: the same alerts,
each with the same facts."""

from __future__ import annotations

import pytest

from collections.abc import Collection

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

from alerts.choices import AlertState, FeedbackKind
from alerts.metrics import MetricsQuery
from alerts.metrics.facts import facts_sql, fetch
from alerts.metrics.queries import in_range
from alerts.models import Alert, AlertEvent, Feedback
from tests.alerts.test_metrics_golden import build_golden_history


def oracle_alerts(site_ids: Collection[int]) -> QuerySet[Alert]:
    """The facts written a second way, as correlated ORM subqueries (the definition the drill-downs and
    the export used before they read alerts.metrics.facts): every visible alert of the sites with:

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


def _us(delay) -> int | None:
    return None if delay is None else round(delay.total_seconds() * 1_000_000)


@pytest.mark.parametrize("query", [MetricsQuery("site", "month"), MetricsQuery("asset", "week")])
def test_every_counted_alert_has_the_facts_of_the_orm_definitions(db, query):
    golden = build_golden_history()
    site_ids = [golden.north.pk, golden.south.pk]
    sql, params = facts_sql(site_ids, query, (query.group_by,))
    columns = "id, verdict, verdict_action, verdict_reason, first_verdict_at IS NOT NULL, response_us, tta_us"
    got = {
        row[0]: (*row[1:5], *(None if us is None else int(us) for us in row[5:]))
        for row in fetch(f"{sql} SELECT {columns} FROM facts", params)
    }
    expected = {
        alert.pk: (
            alert.verdict,
            alert.verdict_action,
            alert.verdict_reason,
            alert.first_verdict_at is not None,
            _us(alert.response_delay),
            _us(alert.tta),
        )
        for alert in in_range(oracle_alerts(site_ids).filter(shown_at__isnull=False), query, "opened_at")
    }
    assert len(expected) > 10
    assert got == expected


def test_the_verdict_in_force_of_one_alert_is_the_one_the_facts_count(db):
    # current_verdict (alert page, board, a new verdict) reads verdicts_in_force; the counts read the SQL.
    from alerts.metrics.facts import alert_facts
    from alerts.services import current_verdict

    golden = build_golden_history()
    alerts = Alert.objects.filter(asset__site__in=[golden.north, golden.south])
    rows = alert_facts(alerts, shown_only=False)
    assert sum(row.verdict is not None for row in rows) > 10
    for row in rows:
        verdict = current_verdict(Alert.objects.get(pk=row.pk))
        expected = (None,) * 4 if verdict is None else (
            verdict.verdict, verdict.action, verdict.reason, verdict.created_at
        )  # fmt: skip
        assert (row.verdict, row.verdict_action, row.verdict_reason, row.verdict_at) == expected, row.pk
