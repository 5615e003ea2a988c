"""The per-alert facts, defined once: when an alert was shown, its first human event, its first verdict
and its verdict in force, with the delays between them, as one raw SQL statement (``alert_facts_sql``).

The metric rows count them (``facts_sql``, ``conditions``), the drill-downs and the alert export list them
(``alert_facts``, ``drill_alerts``), and the comparison page's observed follow-through counts them
(``follow_through_by_verdict``); ``verdicts_in_force`` is the verdict in force as model rows, for the
pages that show or correct one alert's verdict (checked against the statement in tests).

Correlated subqueries per fact made an aggregate over 100,000 alerts run each subquery again for every
alert and every count (6 s on PostgreSQL, bench/metrics.py). Here the events and the verdicts of the
selected alerts are read once each, grouped by alert (``ev``: first human event, first move to open,
created suppressed; ``vd``: first verdict and the verdict in force, picked with ROW_NUMBER), joined to the
alerts and grouped by period and key in the same statement (~0.2 s). Plain SQL that runs on SQLite (3.30+)
and PostgreSQL alike; the alerts' filters and the period truncation come from the ORM, so the range, the
site scoping and the time zone are the ORM's, and only the delay between two times needs a function of
each database. tests/alerts/test_metrics_golden.py checks the numbers against hand-written ones, and
tests/alerts/test_metrics_facts.py the facts against the same definitions written as ORM subqueries.

Which verdicts judge the model (``MODEL_JUDGED_CATEGORIES``, read by ``conditions``): precision and recall
answer "of the alerts the model raised about the machine that were judged, how many were real machine
faults". An alert the data-quality gate filed "Check the sensor" (category sensor_fault) or "Check the data
link" (data_link) is not the model's machine-fault call: the gate routed it, because the readings behind the
score were flagged or missing, and a verdict on it judges the sensor or the link ("sensor replaced", "link
restored"; a data-link verdict writes no label at all). Counting a confirmed one as a true machine fault
would raise precision and recall for readings the model never judged; counting a false alarm on one would
lower them for the gate's call. So those verdicts are in neither rate (the health page says how many it
left out), while every count of what operators did — verdicts, confirmed, false alarms, actionability,
follow-through, acknowledgement, ignored and the alarm load — still counts them: the operator had to act.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import F, QuerySet
from django.utils import timezone

from alerts.choices import AlertCategory, AlertState, FalseAlarmReason, FeedbackKind, Verdict
from alerts.metrics.params import MetricsQuery, period_bounds
from alerts.metrics.queries import (
    ACTIONABLE_ACTIONS,
    ALERT_KEYS,
    DISMISSED_VERDICTS,
    follow_through_window,
    in_range,
    trunc,
    with_key,
)
from alerts.models import Alert, AlertEvent, Feedback
from plant.models import zone_named

# Conditional counts of a metrics row, each a COUNT(CASE WHEN <condition> ...) of the same GROUP BY (the
# live rows, alerts.metrics.rows, and the stored cells of closed periods, alerts.metrics.closed).
COUNTED = (
    "verdicts",
    "confirmed",
    "false_alarms",
    "not_actionable",
    "actionable",
    "followed",
    "due",
    "ignored",
    "machine_confirmed",
    "machine_judged",
)
# The categories whose verdicts judge the model's machine-fault call (module docstring): precision and
# recall count only their alerts.
MODEL_JUDGED_CATEGORIES = (AlertCategory.MACHINE_FAULT,)
EVENT = AlertEvent._meta.db_table
FEEDBACK = Feedback._meta.db_table


def _delay_us(later: str, earlier: str) -> str:
    """SQL of ``later - earlier`` in microseconds (null if either is null), exact on both databases."""
    if connection.vendor == "sqlite":
        # Django's own function for DurationField arithmetic on SQLite.
        return f"django_timestamp_diff({later}, {earlier})"
    return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000000 AS BIGINT)"


def epoch_s(column: str) -> str:
    """SQL of ``column`` (a time) as seconds since 1970 UTC, a float (null if null): reading floats is ~10×
    cheaper than aware datetimes when a statement returns one row per alert (alerts.metrics.kpis)."""
    if connection.vendor == "sqlite":
        # Django stores UTC text on SQLite; julianday() reads it (to ~50 µs; callers round to the ms).
        return f"((julianday({column}) - 2440587.5) * 86400.0)"
    return f"CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION)"


def verdicts_in_force() -> QuerySet[Feedback]:
    """The verdict Feedback rows in force (no later verdict supersedes them), latest first: ``vd.in_force``
    of the statement below for one alert or a few, as model rows (the board, the alert page, the noise
    review and a new verdict read them). tests/alerts/test_metrics_facts.py checks the two agree."""
    return Feedback.objects.filter(kind=FeedbackKind.VERDICT, superseded_by__isnull=True).order_by(
        "-created_at", "-pk"
    )


def facts_sql(
    site_ids: Collection[int],
    query: MetricsQuery,
    groups: tuple[str, ...],
    *,
    leave_out: list[tuple[datetime, datetime]] | None = None,
) -> tuple[str, list[Any]]:
    """``WITH ... facts AS (...)``: one row per alert the metrics count (shown, opened in the query's
    range), with ``id``, ``state``, ``category``, ``p`` (its period's start, naive local time or its text
    on SQLite: see ``moment``), ``k_<group>`` for each of ``groups``, ``verdict``, ``verdict_action``,
    ``verdict_reason``, ``first_verdict_at``, ``first_human_at``, ``shown_at``, ``response_us`` and
    ``tta_us`` (the delays in microseconds). Append a ``SELECT ... FROM facts`` to it. ``leave_out``:
    [start, end) ranges of opening times whose alerts are counted elsewhere (the stored closed periods,
    alerts.metrics.closed); the rest are then the few of the open periods, so only their own events and
    verdicts are read."""
    alerts = in_range(
        Alert.objects.filter(is_shadow=False, asset__site_id__in=list(site_ids)), query, "opened_at"
    )
    for start, end in leave_out or ():
        alerts = alerts.exclude(opened_at__gte=start, opened_at__lt=end)
    return alert_facts_sql(
        alerts,
        few=bool(leave_out),
        p=trunc(query.period, "opened_at"),
        **{f"k_{group}": F(ALERT_KEYS[group]) for group in groups},
    )


def alert_facts_sql(
    alerts: QuerySet[Alert], *, shown_only: bool = True, few: bool = False, **columns: Any
) -> tuple[str, list[Any]]:
    """``WITH ... facts AS (...)`` over any selection of alerts: the per-alert facts of ``facts_sql`` (and
    ``verdict_at``, when the verdict in force was given, and ``suppressed``, 1 when it opened inside a
    maintenance window) for the alerts of ``alerts`` that were shown to operators (every one of them
    when not ``shown_only``: the export lists those never shown too), with ``columns`` (ORM expressions)
    carried along. The one definition of when an alert was shown, its first human event, its first
    verdict and its verdict in force: the counts, the drill-downs, the export and the comparison page
    select their alerts and read the facts from here. ``few``: the selection is a small part of the
    alerts (a drill-down, an export chunk, one version's period), so only its own events and verdicts are
    read; over every alert, one pass over both tables is much cheaper (bench/metrics.py)."""

    def selection(queryset: QuerySet[Alert]) -> tuple[str, tuple[Any, ...]]:
        selected = queryset.values("id", "state", "opened_at", "category", **columns)
        if not selected.query.is_sliced:  # a chunk of the export keeps its order and limit
            selected = selected.order_by()
        return selected.query.sql_with_params()

    try:
        inner, inner_params = selection(alerts)
    except EmptyResultSet:  # an empty __in (a type with no asset on the user's sites): no SQL for it
        inner, inner_params = selection(Alert.objects.filter(pk__isnull=True))
    sql = f"""
WITH a AS ({inner}),
ev AS (
    SELECT e.alert_id,
        MIN(CASE WHEN e.actor_id IS NOT NULL OR fe.id IS NOT NULL THEN e.at END) AS first_human_at,
        MIN(CASE WHEN e.to_state = %s THEN e.at END) AS first_open_at,
        MAX(CASE WHEN e.to_state = %s THEN 1 ELSE 0 END) AS created_suppressed
    FROM {EVENT} e
    LEFT JOIN {FEEDBACK} fe ON fe.event_id = e.id
    {"WHERE e.alert_id IN (SELECT id FROM a)" if few else ""}
    GROUP BY e.alert_id
),
vd AS (
    SELECT fb.alert_id, fb.verdict, fb.action, fb.reason, fb.created_at,
        CASE WHEN nx.id IS NULL THEN 1 ELSE 0 END AS in_force,
        MIN(fb.created_at) OVER (PARTITION BY fb.alert_id) AS first_verdict_at,
        ROW_NUMBER() OVER (
            PARTITION BY fb.alert_id
            ORDER BY CASE WHEN nx.id IS NULL THEN 0 ELSE 1 END, fb.created_at DESC, fb.id DESC
        ) AS rn
    FROM {FEEDBACK} fb
    LEFT JOIN {FEEDBACK} nx ON nx.supersedes_id = fb.id
    WHERE fb.kind = %s {"AND fb.alert_id IN (SELECT id FROM a)" if few else ""}
),
shown AS (
    SELECT a.*, ev.first_human_at, vd.first_verdict_at,
        CASE WHEN vd.in_force = 1 THEN vd.verdict END AS verdict,
        CASE WHEN vd.in_force = 1 THEN vd.action END AS verdict_action,
        CASE WHEN vd.in_force = 1 THEN vd.reason END AS verdict_reason,
        CASE WHEN vd.in_force = 1 THEN vd.created_at END AS verdict_at,
        CASE WHEN a.state = %s OR ev.created_suppressed = 1 THEN 1 ELSE 0 END AS suppressed,
        CASE WHEN a.state = %s OR ev.created_suppressed = 1 THEN ev.first_open_at ELSE a.opened_at END
            AS shown_at
    FROM a
    LEFT JOIN ev ON ev.alert_id = a.id
    LEFT JOIN vd ON vd.alert_id = a.id AND vd.rn = 1
),
facts AS (
    SELECT shown.*,
        {_delay_us("first_verdict_at", "shown_at")} AS response_us,
        {_delay_us("first_human_at", "shown_at")} AS tta_us
    FROM shown
    {"WHERE shown_at IS NOT NULL" if shown_only else ""}
)
"""
    params = [
        *inner_params,
        AlertState.OPEN,
        AlertState.SUPPRESSED,
        FeedbackKind.VERDICT,
        AlertState.SUPPRESSED,
        AlertState.SUPPRESSED,
    ]
    return sql, params


def shown_alert_ids(alerts: QuerySet[Alert]) -> set[int]:
    """The ids of those of ``alerts`` that were shown to operators, by ``alert_facts_sql``'s one definition
    (a shadow alert's events look like a shown one's: leave shadow alerts out of ``alerts``)."""
    facts, params = alert_facts_sql(alerts, few=True)
    return {row[0] for row in fetch(f"{facts} SELECT id FROM facts", params)}


def by_the_model() -> tuple[str, list[Any]]:
    """SQL condition over ``facts``: the alert is one whose verdict judges the model's machine-fault call
    (``MODEL_JUDGED_CATEGORIES``), not one the gate routed to the sensor or the data link."""
    return f"category IN ({', '.join(['%s'] * len(MODEL_JUDGED_CATEGORIES))})", list(MODEL_JUDGED_CATEGORIES)


def conditions(now: datetime) -> dict[str, tuple[str, list[Any]]]:
    """The population behind each number of a row (drill-down) and each conditional count, as SQL
    conditions over ``facts``. ``confirmed``, ``false_alarms`` and the operators' counts take every alert;
    precision's (``machine_judged``, alias ``precision``) and recall's (``machine_confirmed``) take only the
    alerts of ``MODEL_JUDGED_CATEGORIES``, and ``routed_judged`` is what that leaves out (module docstring)."""
    window_us = int(follow_through_window().total_seconds() * 1_000_000)
    model, model_params = by_the_model()
    judged = "verdict IN (%s, %s)"
    judged_params = [Verdict.CONFIRMED_FAULT, Verdict.FALSE_ALARM]
    machine_judged = (f"{judged} AND {model}", [*judged_params, *model_params])
    due_before = connection.ops.adapt_datetimefield_value(now - follow_through_window())
    dismissed = f"verdict IN ({', '.join(['%s'] * len(DISMISSED_VERDICTS))})"
    ignored = "state = %s AND first_human_at IS NULL"
    due = ("(first_verdict_at IS NOT NULL OR shown_at <= %s)", [due_before])
    return {
        "alerts": ("1 = 1", []),
        "verdicts": ("verdict IS NOT NULL", []),
        "confirmed": ("verdict = %s", [Verdict.CONFIRMED_FAULT]),
        "false_alarms": ("verdict = %s", [Verdict.FALSE_ALARM]),
        "not_actionable": ("verdict = %s", [Verdict.NOT_ACTIONABLE]),
        "machine_confirmed": (f"verdict = %s AND {model}", [Verdict.CONFIRMED_FAULT, *model_params]),
        "machine_judged": machine_judged,
        "precision": machine_judged,
        "routed_judged": (f"{judged} AND NOT {model}", [*judged_params, *model_params]),
        "actionable": (
            f"verdict = %s AND verdict_action IN ({', '.join(['%s'] * len(ACTIONABLE_ACTIONS))})",
            [Verdict.CONFIRMED_FAULT, *ACTIONABLE_ACTIONS],
        ),
        "followed": ("response_us <= %s", [window_us]),
        # Still inside its window with no verdict yet: not late, so not counted against follow-through.
        "due": due,
        "not_followed": (f"(response_us IS NULL OR response_us > %s) AND {due[0]}", [window_us, *due[1]]),
        "acknowledged": ("first_human_at IS NOT NULL", []),
        "ignored": (ignored, [AlertState.AUTO_CLOSED]),
        "dismissed": (dismissed, list(DISMISSED_VERDICTS)),
        "dismissed_or_ignored": (
            f"({dismissed} OR ({ignored}))",
            [*DISMISSED_VERDICTS, AlertState.AUTO_CLOSED],
        ),
    }


def counts_sql(names: tuple[str, ...], now: datetime) -> tuple[str, list[Any]]:
    """``COUNT(*), COUNT(CASE WHEN <condition> THEN 1 END), ...`` for the named conditions."""
    known = conditions(now)
    parts, params = ["COUNT(*)"], []
    for name in names:
        condition, condition_params = known[name]
        parts.append(f"COUNT(CASE WHEN {condition} THEN 1 END)")
        params.extend(condition_params)
    return ", ".join(parts), params


def in_display_order(by_reason: dict[str, int]) -> dict[str, int]:
    """False alarms by reason in their display order: the choices', then any other reason by name."""
    choices = FalseAlarmReason.values  # built anew on each access: once per call
    return {reason: by_reason[reason] for reason in [*choices, *sorted(by_reason)] if reason in by_reason}


def moment(value: datetime | str) -> datetime:
    """A period start as the ORM's truncation returns it in raw SQL: a naive local datetime (PostgreSQL)
    or its text (SQLite); ``period_label`` reads a naive one as local time."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# The comparison's verdict groups (models_registry.comparison) by the verdict in force on a machine-fault
# alert. A verdict on a sensor or data-link alert judges the gate's call, not the model's (module docstring):
# those alerts count in the overall rate only, under ROUTED in the counts.
FOLLOW_THROUGH_KEYS = {
    Verdict.CONFIRMED_FAULT: "true",
    Verdict.FALSE_ALARM: "false_alarm",
    Verdict.NOT_ACTIONABLE: "not_actionable",
}
ROUTED = "sensor_or_data_link"


def follow_through_by_verdict(alerts: QuerySet[Alert], *, now: datetime) -> dict[str, Any]:
    """Follow-through of ``alerts`` as the health page counts it (``followed`` / ``due`` over the shown
    ones, window ``VIGIL_FOLLOW_THROUGH_HOURS``), overall and per verdict in force: ``alerts`` (how many
    were shown), ``overall`` and ``rates`` (None / left out when nothing is due yet) and ``counts`` (the
    due alerts behind each rate, ``unknown`` for those without a verdict, ``ROUTED`` for the sensor and
    data-link alerts with one: in the overall rate, in no verdict's)."""
    facts, params = alert_facts_sql(alerts, few=True)
    known = conditions(now)
    (followed, followed_params), (due, due_params) = known["followed"], known["due"]
    model, model_params = by_the_model()
    rows = fetch(
        f"{facts} SELECT verdict, CASE WHEN {model} THEN 1 ELSE 0 END AS model, COUNT(*),"
        f" COUNT(CASE WHEN {followed} THEN 1 END), COUNT(CASE WHEN {due} THEN 1 END)"
        f" FROM facts GROUP BY verdict, model",
        [*params, *model_params, *followed_params, *due_params],
    )
    shown = sum(row[2] for row in rows)
    followed_n = sum(row[3] for row in rows)
    due_n = sum(row[4] for row in rows)
    counts: dict[str, int] = {}
    hits: dict[str, int] = {}
    for verdict, by_model, _shown, hit, due_count in rows:
        key = FOLLOW_THROUGH_KEYS.get(verdict, "unknown") if by_model or verdict is None else ROUTED
        counts[key] = counts.get(key, 0) + due_count
        hits[key] = hits.get(key, 0) + hit
    return {
        "alerts": shown,
        "overall": followed_n / due_n if due_n else None,
        "rates": {
            key: hits[key] / n for key, n in counts.items() if key in FOLLOW_THROUGH_KEYS.values() and n
        },
        "counts": counts,
    }


@dataclass
class AlertFacts:
    """One alert as the drill-downs and the export show it: what it is, and its facts from ``facts``."""

    pk: int
    state: str
    category: str
    opened_at: datetime
    closed_at: datetime | None
    site_slug: str
    site_name: str
    site_timezone: str
    asset_tag: str
    asset_name: str
    model_label: str
    shown_at: datetime | None
    first_human_at: datetime | None
    first_verdict_at: datetime | None
    verdict: str | None
    verdict_action: str | None
    verdict_reason: str | None
    verdict_at: datetime | None
    suppressed: bool
    response_delay: timedelta | None
    verdict_text: str = ""
    due: bool = True  # counted in follow-through: a verdict given, or its window over (conditions' "due")

    @property
    def state_label(self) -> str:
        return AlertState(self.state).label

    @property
    def zone(self) -> ZoneInfo:
        """The clock its times are read on: its site's."""
        return zone_named(self.site_timezone)

    @property
    def followed(self) -> bool:
        return self.response_delay is not None and self.response_delay <= follow_through_window()

    @property
    def follow_through_text(self) -> str:
        """yes / no, or "not yet due" for an alert still inside its window without a verdict: the rate
        leaves those out, so a "no" beside a 100 % would contradict it."""
        if self.followed:
            return "yes"
        return "no" if self.due else "not yet due"


DESCRIBED = {
    "closed": F("closed_at"),
    "site_slug": F("asset__site__slug"),
    "site_name": F("asset__site__name"),
    "site_timezone": F("asset__site__timezone"),
    "asset_tag": F("asset__tag"),
    "asset_name": F("asset__name"),
    "model_name": F("model_version__name"),
    "model_number": F("model_version__version"),
}
FACT_COLUMNS = (
    "state", "opened_at", "site_slug", "site_name", "site_timezone", "asset_tag", "asset_name", "model_name", "model_number",
    "shown_at", "first_human_at", "first_verdict_at", "verdict", "verdict_action", "verdict_reason",
    "verdict_at", "suppressed", "response_us",
)  # fmt: skip
TIMES = ("opened_at", "closed_at", "shown_at", "first_human_at", "first_verdict_at", "verdict_at")


def _when(value: datetime | str | None) -> datetime | None:
    """A time read by raw SQL: aware on PostgreSQL, the UTC text Django stores on SQLite."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=dt_timezone.utc)


def alert_facts(
    alerts: QuerySet[Alert],
    *,
    condition: tuple[str, list[Any]] = ("1 = 1", []),
    shown_only: bool = True,
    order_by: str = "id",
    limit: int | None = None,
    now: datetime | None = None,
) -> list[AlertFacts]:
    """The alerts of ``alerts`` that meet ``condition`` (one of ``conditions``), each with its facts, in
    one statement. ``shown_only`` as in ``alert_facts_sql``; ``due`` is judged at ``now`` (default: now)."""
    facts, params = alert_facts_sql(alerts, shown_only=shown_only, few=True, **DESCRIBED)
    # Named as AlertFacts' fields, but for the model's name and number and the delay in microseconds (and
    # the closing time, which a values() annotation cannot be named after a field of the model).
    selected = {
        "id": "pk",
        "closed": "closed_at",
        "category": "category",
        **{name: name for name in FACT_COLUMNS},
    }
    columns = ", ".join(f"{column} AS {name}" for column, name in selected.items())
    due, due_params = conditions(now or timezone.now())["due"]
    sql = (
        f"{facts} SELECT {columns}, CASE WHEN {due} THEN 1 ELSE 0 END AS due FROM facts "
        f"WHERE {condition[0]} ORDER BY {order_by}"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    found = []
    for values in fetch(sql, [*params, *due_params, *condition[1]]):
        row = dict(zip([*selected.values(), "due"], values))
        row["due"] = bool(row["due"])
        row.update({name: _when(row[name]) for name in TIMES})
        response_us = row.pop("response_us")
        row["model_label"] = f"{row.pop('model_name')} v{row.pop('model_number')}"
        row["response_delay"] = None if response_us is None else timedelta(microseconds=int(response_us))
        row["suppressed"] = bool(row["suppressed"])
        found.append(AlertFacts(**row))
    return found


def drill_alerts(
    site_ids: Collection[int],
    query: MetricsQuery,
    *,
    period: str,
    key: int | str | None,
    metric: str,
    now: datetime,
    limit: int | None = None,
) -> list[AlertFacts]:
    """The alerts behind one number: the query's alerts opened in ``period`` (a label), of ``key`` (an id of
    the query's grouping, None for every key) that match ``metric``, oldest first (at most ``limit``)."""
    start, end = period_bounds(period)
    alerts = in_range(
        Alert.objects.filter(is_shadow=False, asset__site_id__in=list(site_ids)), query, "opened_at"
    ).filter(opened_at__gte=start, opened_at__lt=end)
    alerts = with_key(alerts, ALERT_KEYS[query.group_by], key)
    return alert_facts(
        alerts, condition=conditions(now)[metric], order_by="opened_at, id", limit=limit, now=now
    )
