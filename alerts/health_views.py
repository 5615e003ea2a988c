"""Engineers' alert health page: trust and quality metrics by period, their trend, the trust-erosion
warning, the alarm-management KPIs per site and shift/day/week with their band warnings, the alerts behind
every number, and the per-alert CSV export.

Engineers and supervisors (staff) only; technicians get 403. Everything is scoped to the user's sites and
computed by alerts.metrics, the same functions the JSON/CSV API uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from alerts.choices import verdict_summary
from alerts.metrics import (
    DRILL_METRICS,
    GROUP_BYS,
    PERIODS,
    MetricsParamError,
    MetricsQuery,
    MetricsRow,
    drill_alerts,
    drill_missed,
    follow_through_window,
    health_report,
    parse_period,
    parse_query,
    period_bounds,
    period_kind,
)
from alerts.metrics.charts import kpi_figures, trend_figure
from alerts.metrics.export import aiter_chunks, export_alerts
from alerts.metrics.params import KPI_PERIODS
from alerts.metrics.kpis import (
    RATE_MIN_ELAPSED,
    alarm_kpis,
    chatter_opens,
    chatter_window,
    mix_text,
    respond_window,
)
from alerts.metrics.rows import gc_paused, rate_text
from alerts.metrics.trust import FLOOR
from alerts.models import ScoringGap
from detection.wording import duration_text
from plant.access import can_see_health, role_required, site_ids_for_user
from plant.models import Site
from plant.params import ParamError, parse_id, shown, text

DRILL_LIMIT = 500


SCORING_GAPS_SHOWN = 20
# Keys shown per period: a fine grouping (asset × week) has 10,000 rows a year, a slow page nobody scrolls.
# The page shows the keys with the most alerts; the period's link to the metrics CSV has every row.
TABLE_KEYS = 5
# KPI buckets shown per site, newest first (a year of shifts is 1,095); the API has every one.
KPI_ROWS_SHOWN = 21
GROUP_LABELS = {
    "site": "Site",
    "asset": "Asset",
    "asset_type": "Asset type",
    "model_version": "Model version",
}
METRIC_TITLES = {
    "alerts": "Alerts shown",
    "verdicts": "Alerts with a verdict",
    "confirmed": "Confirmed faults",
    "false_alarms": "False alarms",
    "not_actionable": "Not actionable",
    "precision": "Confirmed faults and false alarms on machine-fault alerts (precision)",
    "machine_judged": "Confirmed faults and false alarms on machine-fault alerts (precision)",
    "machine_confirmed": "Confirmed faults on machine-fault alerts (precision, recall)",
    "routed_judged": "Confirmed faults and false alarms on sensor or data-link alerts (not in precision, recall)",
    "actionable": "Confirmed faults repaired or scheduled",
    "followed": "Verdict within the follow-through window",
    "due": "Alerts counted in follow-through",
    "not_followed": "No verdict within the follow-through window",
    "acknowledged": "Acknowledged (time to acknowledge)",
    "ignored": "Ignored (auto-closed untouched)",
    "dismissed": "Dismissed (false alarm or not actionable)",
    "dismissed_or_ignored": "Dismissed or ignored",
    "missed": "Missed failures (reported, no alert)",
}


# Engineers and supervisors only: technicians get 403, anonymous users the login page.
health_required = role_required(can_see_health, "The alert health page is for engineers and supervisors.")


@dataclass(frozen=True)
class Cell:
    """One number of the table and the drill-down that lists what it counts."""

    text: str
    url: str = ""
    name: str = ""
    label: str = ""  # the column's words, shown beside the number when the table stacks on a phone
    note: str = ""  # under a rate: the alerts its denominator leaves out, and why

    def __html__(self) -> str:
        # html.escape is what Django's escaping does (quotes included), without its lazy-string wrapper:
        # the page has thousands of cells.
        note = f'<span class="muted cell-note">{escape(self.note)}</span>' if self.note else ""
        return (
            f'<td data-label="{escape(self.label)}" data-metric="{escape(self.name)}">'
            f'<a href="{escape(self.url)}">{escape(self.text)}</a>{note}</td>'
        )


class Cells(list):
    """A row's cells, which the template renders in one go (``{{ cells }}``): a year of weeks is thousands
    of cells, each four template look-ups and escapes otherwise (bench/metrics.py)."""

    def __html__(self) -> SafeString:
        return mark_safe("".join([cell.__html__() for cell in self]))

    __str__ = __html__  # the template turns a value into text first, then escapes what is not safe


# Sections that apps above alerts add to the page (notify: messages and escalations; handoff: work orders), each rendering its
# own HTML from the page's request, sites and query; handed in from their AppConfig.ready().
HealthSection = Callable[[HttpRequest, list[int], MetricsQuery], str]
_SECTIONS: list[HealthSection] = []


def provide_health_section(section: HealthSection) -> None:
    """Register a section of the health page (idempotent)."""
    if section not in _SECTIONS:
        _SECTIONS.append(section)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def not_due_text(not_due: int) -> str:
    """Why follow-through leaves alerts out: '4 still inside their 24 h answer window'."""
    if not not_due:
        return ""
    hours = f"{follow_through_window().total_seconds() / 3600:g} h"
    return f"{not_due} still inside {'its' if not_due == 1 else 'their'} {hours} answer window"


def left_out(*parts: tuple[int, str]) -> str:
    """What a rate's denominator leaves out, the non-zero parts: 'not counted: 4 without a verdict yet'."""
    said = [f"{n} {why}" for n, why in parts if n]
    return f"not counted: {', '.join(said)}" if said else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d}" if minutes else f"{hours} h"
    return f"{hours / 24:.1f} d"


def delay_text(
    seconds: float | None, count: int, statistic: str, none: str = "no acknowledged alerts yet"
) -> str:
    """A time to acknowledge with the number of delays it is computed from, as the rates show theirs:
    '4 min (median of 12)', '2 h 05 (p90 of 12)'; ``none`` (not a bare dash) when there are none."""
    if not count or seconds is None:
        return none
    return f"{duration(seconds)} ({statistic} of {count})"


def verdict_text(verdict: str | None, action: str | None, reason: str | None, category: str) -> str:
    """The verdict's one line (``alerts.choices.verdict_summary``), or "—" without a verdict."""
    return verdict_summary(verdict, action, reason, category) if verdict else "—"


def drill_url(query: MetricsQuery, row: MetricsRow, metric: str, *, total: bool) -> str:
    # A row without a key that is not a period total: missed failures with no model deployed.
    key = "all" if total else "none" if row.key is None else str(row.key)
    params = query.as_params(period=row.period, key=key, metric=metric)
    return f"{reverse('alerts:health_alerts')}?{urlencode(params)}"


# The table's column headers (templates/alerts/health.html), repeated beside each number on a phone.
COLUMN_LABELS = {
    "alerts": "Alerts",
    "verdicts": "Verdicts",
    "confirmed": "Confirmed",
    "false_alarms": "False alarms",
    "not_actionable": "Not actionable",
    "missed": "Missed",
    "precision": "Precision",
    "recall": "Recall",
    "follow_through": "Follow-through",
    "actionability": "Actionability",
    "tta_median": "Time to acknowledge, median",
    "tta_p90": "Time to acknowledge, p90",
    "ignored": "Ignored",
}


def cells(query: MetricsQuery, row: MetricsRow, *, total: bool = False) -> Cells:
    """The table's numbers for one row, left to right, each linked to the alerts behind it."""
    # drill_url's query string ends with the metric: the rest is built once per row, not once per cell.
    prefix = drill_url(query, row, "", total=total)

    def link(text: str, metric: str, name: str, note: str = "") -> Cell:
        return Cell(text, f"{prefix}{metric}", name, COLUMN_LABELS[name], note)

    unjudged = (row.unjudged, "without a verdict yet")
    # The gate's calls, not the model's (alerts.metrics.facts): said beside both model rates.
    routed = (row.routed_judged, "on sensor or data-link alerts")

    return Cells(
        [
            link(str(row.alerts), "alerts", "alerts"),
            link(str(row.verdicts), "verdicts", "verdicts"),
            link(str(row.confirmed), "confirmed", "confirmed"),
            link(str(row.false_alarms), "false_alarms", "false_alarms"),
            link(str(row.not_actionable), "not_actionable", "not_actionable"),
            link(str(row.missed), "missed", "missed"),
            link(
                rate_text(row, "precision"),
                "precision",
                "precision",
                left_out(unjudged, (row.not_actionable, "not actionable"), routed),
            ),
            link(rate_text(row, "recall"), "machine_confirmed", "recall", left_out(unjudged, routed)),
            link(
                rate_text(row, "follow_through"),
                "due",
                "follow_through",
                not_due_text(row.not_due),
            ),
            link(rate_text(row, "actionability"), "verdicts", "actionability", left_out(unjudged)),
            link(delay_text(row.tta_median_s, row.acknowledged, "median"), "acknowledged", "tta_median"),
            link(delay_text(row.tta_p90_s, row.acknowledged, "p90"), "acknowledged", "tta_p90"),
            link(str(row.ignored), "ignored", "ignored"),
        ]
    )


def _filters_context(request: HttpRequest, site_ids: list[int]) -> dict[str, Any]:
    return {
        "group_bys": [(value, GROUP_LABELS[value]) for value in GROUP_BYS],
        "period_choices": PERIODS,
        "kpi_period_choices": KPI_PERIODS,
        "sites": Site.objects.filter(pk__in=site_ids).order_by("name"),
        "values": request.GET,
        "follow_through_hours": int(follow_through_window().total_seconds() // 3600),
    }


@require_GET
@health_required
def health(request: HttpRequest) -> HttpResponse:
    """The metrics table by period (totals first), the trend chart and the trust-erosion warnings; the
    alarm-management KPIs load after the page (health_kpis), so their pass over the alerts does not hold it."""
    site_ids = site_ids_for_user(request.user)
    context = _filters_context(request, site_ids)
    try:
        query = parse_query(request.GET, site_ids)
    except MetricsParamError as exc:
        return render(request, "alerts/health.html", {**context, "error": exc}, status=400)
    with gc_paused():  # a year of weeks is thousands of rows and cells: alerts.metrics.rows.gc_paused
        return _health_page(request, site_ids, query, context, timezone.now())


def _health_page(
    request: HttpRequest, site_ids: list[int], query: MetricsQuery, context: dict[str, Any], now: datetime
) -> HttpResponse:
    report = health_report(site_ids, query, now=now)
    rows_by_period: dict[str, list[MetricsRow]] = {}
    for row in report.rows:
        rows_by_period.setdefault(row.period, []).append(row)
    periods = []
    for total in reversed(report.totals):
        rows = rows_by_period.get(total.period, [])
        if len(rows) > TABLE_KEYS:
            rows = sorted(rows, key=lambda r: (-r.alerts, -r.missed, r.label, r.key or 0))[:TABLE_KEYS]
        periods.append(
            {
                "total": total,
                "total_cells": cells(query, total, total=True),
                "rows": [(row, cells(query, row)) for row in rows],
                "hidden": len(rows_by_period.get(total.period, [])) - len(rows),
                "csv_url": _period_csv_url(query, total.period),
            }
        )
    flagged = [warning.period for warning in report.warnings]
    gaps = ScoringGap.objects.overlapping(
        site_ids=[query.site.pk] if query.site else site_ids, since=query.since(), until=query.until()
    )
    context.update(
        {
            "scoring_gap_count": (gap_count := gaps.count()),
            "scoring_gaps": list(gaps[:SCORING_GAPS_SHOWN]) if gap_count else [],
            "query": query,
            "report": report,
            "periods": periods,
            "group_label": GROUP_LABELS[query.group_by],
            "figure": trend_figure(report.totals, flagged),
            "floor": percent(FLOOR),
            "table_keys": TABLE_KEYS,
            "table_cut": any(item["hidden"] for item in periods),
            "warnings": [
                {
                    "warning": warning,
                    "follow_through": percent(warning.follow_through),
                    "assets": [
                        (d, _driver_url(query, warning.period, "asset", d.key)) for d in warning.assets
                    ],
                    "models": [
                        (d, _driver_url(query, warning.period, "model_version", d.key))
                        for d in warning.models
                    ],
                }
                for warning in reversed(report.warnings)
            ],
            "kpi_url": f"{reverse('alerts:health_kpis')}?{urlencode(query.as_params())}",
            "csv_url": f"{reverse('api:metrics_csv')}?{urlencode(query.as_params())}",
            "export_url": f"{reverse('alerts:export')}?{urlencode(query.as_params())}",
            "sections": [section(request, site_ids, query) for section in _SECTIONS],
        }
    )
    return render(request, "alerts/health.html", context)


@require_GET
@health_required
def health_kpis(request: HttpRequest) -> HttpResponse:
    """The health page's alarm-management KPIs (per site and shift/day/week, their charts with the
    standard's targets and their band warnings): the fragment the page loads with htmx, or a page of its own
    for the page's no-JavaScript link. Same filters and site scoping as the page."""
    site_ids = site_ids_for_user(request.user)
    # htmx swaps in only the fragment; the no-JavaScript link opens the same content as a whole page.
    template = "alerts/health_kpis.html#kpis" if request.htmx else "alerts/health_kpis.html"
    try:
        query = parse_query(request.GET, site_ids)
    except MetricsParamError as exc:
        return render(request, template, {"error": exc}, status=400)
    kpis = alarm_kpis(site_ids, query, now=timezone.now())
    context = {
        "query": query,
        "kpis": kpis,
        "kpi_sites": [
            {
                "site": site,
                "rows": [(row, mix_text(row.priority_mix)) for row in reversed(site.rows[-KPI_ROWS_SHOWN:])],
                "hidden": max(0, len(site.rows) - KPI_ROWS_SHOWN),
                "mix": mix_text(site.priority_mix),
                "share": percent(site.bad_actor_share),
                "actors": [(actor, percent(actor.share)) for actor in site.bad_actors],
            }
            for site in kpis.sites
        ],
        "kpi_figures": kpi_figures(kpis.sites),
        "chatter_opens": chatter_opens(),
        "chatter_minutes": int(chatter_window().total_seconds() // 60),
        "respond_minutes": int(respond_window().total_seconds() // 60),
        "rate_min": duration_text(RATE_MIN_ELAPSED.total_seconds()),
        "back_url": f"{reverse('alerts:health')}?{urlencode(query.as_params())}",
    }
    return render(request, template, context)


def _period_csv_url(query: MetricsQuery, period: str) -> str:
    """The metrics CSV of one period (within the query's own dates): every row the table leaves out."""
    start, end = period_bounds(period)
    first, last = start.date(), (end - timedelta(days=1)).date()
    params = query.as_params(
        start=max(first, query.start or first).isoformat(), end=min(last, query.end or last).isoformat()
    )
    return f"{reverse('api:metrics_csv')}?{urlencode(params)}"


def _driver_url(query: MetricsQuery, period: str, group: str, key: int) -> str:
    params = query.with_group(group).as_params(period=period, key=str(key), metric="dismissed_or_ignored")
    return f"{reverse('alerts:health_alerts')}?{urlencode(params)}"


def _drill_params(
    params: Mapping[str, str], site_ids: list[int]
) -> tuple[MetricsQuery, str, int | None, str]:
    """Read a drill-down's period label, key and metric next to the filters of the page it came from."""
    label = text(params, "period")
    if not label:
        raise MetricsParamError("period", "say which period, e.g. 2026-09 or 2026-W37")
    parse_period(label)
    filters = {name: params.get(name, "") for name in ("group_by", "start", "end", "site")}
    query = parse_query({**filters, "period": period_kind(label)}, site_ids)
    raw_key = text(params, "key") or "all"
    if raw_key in ("all", "none"):
        key: int | str | None = None if raw_key == "all" else "none"
    else:
        try:
            key = parse_id("key", raw_key)
        except ParamError:
            raise MetricsParamError(
                "key", f"{shown(raw_key, 20)} is not an id (or 'all', or 'none')"
            ) from None
    metric = text(params, "metric") or "alerts"
    if metric not in DRILL_METRICS:
        raise MetricsParamError("metric", f"{shown(metric, 30)} is not one of {', '.join(DRILL_METRICS)}")
    return query, label, key, metric


@require_GET
@health_required
def health_alerts(request: HttpRequest) -> HttpResponse:
    """The alerts (or missed failures) behind one number of the health page."""
    site_ids = site_ids_for_user(request.user)
    try:
        query, label, key, metric = _drill_params(request.GET, site_ids)
    except MetricsParamError as exc:
        return render(request, "alerts/health_alerts.html", {"error": exc}, status=400)
    context: dict[str, Any] = {
        "query": query,
        "period": label,
        "key": key,
        "metric": metric,
        "title": METRIC_TITLES[metric],
        "group_label": GROUP_LABELS[query.group_by],
        "limit": DRILL_LIMIT,
        "back_url": f"{reverse('alerts:health')}?{urlencode(query.as_params())}",
        "window": duration_text(follow_through_window().total_seconds()),
    }
    if metric == "missed":
        missed = drill_missed(site_ids, query, period=label, key=key).select_related(
            "asset__site", "user", "label"
        )
        context["missed"] = list(missed.order_by("failure_at", "pk")[:DRILL_LIMIT])
        context["total"] = len(context["missed"])
    else:
        rows = drill_alerts(
            site_ids, query, period=label, key=key, metric=metric, now=timezone.now(), limit=DRILL_LIMIT + 1
        )
        for alert in rows:
            alert.verdict_text = verdict_text(
                alert.verdict, alert.verdict_action, alert.verdict_reason, alert.category
            )
        context["alerts"] = rows[:DRILL_LIMIT]
        context["truncated"] = len(rows) > DRILL_LIMIT
    return render(request, "alerts/health_alerts.html", context)


@require_GET
@health_required
def export_csv(request: HttpRequest) -> HttpResponse:
    """Every visible alert of the user's sites (date range and site as on the health page), one CSV row
    each, streamed chunk by chunk."""
    site_ids = site_ids_for_user(request.user)
    try:
        query = parse_query(request.GET, site_ids)
    except MetricsParamError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
    chunks = export_alerts(site_ids, query)
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        aiter_chunks(chunks) if isinstance(request, ASGIRequest) else chunks,
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="vigil-alerts-{stamp}.csv"'
    return response
