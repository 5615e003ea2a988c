"""The metrics API: GET /api/v1/metrics (JSON, or CSV with ?format=csv) and /api/v1/metrics.csv.

Session-authenticated engineers and supervisors (the health page's users); anyone else gets 403. Every
error is ``{"error": "...", "param": "..."}`` with a 4xx status. The rows are alerts.metrics.metric_rows,
the same the health page shows; the JSON answer adds ``alarm_kpis`` (alerts.metrics.kpis, per site and
``kpi_period``, also as the health page shows them) when asked for with ``include=kpis`` or a ``kpi_period``:
they are a second pass over the alerts (~1.3 s at 100,000 alerts, bench/metrics.py), which would take the
rows alone past their 1 s target.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from alerts.metrics import MetricsParamError, MetricsRow, follow_through_window, metric_rows, parse_query
from alerts.metrics.rows import gc_paused
from alerts.metrics.export import metrics_csv
from alerts.metrics.kpis import alarm_kpis
from alerts.services.edge_events import TooManyEvents, record_edge_events
from plant.access import can_see_health, site_ids_for_user
from plant.api import api_json as _json
from plant.api import gateway_json
from plant.edge_agents import EdgeReportError
from plant.params import shown, text

FORMATS = ("json", "csv")
INCLUDES = ("kpis",)


def wants_kpis(params) -> bool:
    """Whether the JSON answer carries ``alarm_kpis``: ``include=kpis`` (a comma-separated list of
    INCLUDES; empty: nothing more) or a ``kpi_period`` given, which only they use."""
    parts = [part.strip() for part in text(params, "include").split(",") if part.strip()]
    for part in parts:
        if part not in INCLUDES:
            raise MetricsParamError("include", f"{shown(part, 20)} is not one of {', '.join(INCLUDES)}")
    return "kpis" in parts or bool(text(params, "kpi_period"))


def _error(message: str, status: int, param: str | None = None, headers: dict | None = None) -> HttpResponse:
    body = {"error": message}
    if param:
        body["param"] = param
    return _json(body, status=status, headers=headers)


def metrics(request: HttpRequest, fmt: str | None = None) -> HttpResponse:
    """Metric rows per (period, key) for ?group_by=site|asset|asset_type|model_version&period=month|week
    (&start=YYYY-MM-DD&end=YYYY-MM-DD&site=<slug>), and in JSON with &include=kpis or
    &kpi_period=day|shift|week the alarm-management KPIs per site."""
    if request.method not in ("GET", "HEAD"):
        return _error(f"method {request.method} not allowed: use GET", 405, headers={"Allow": "GET"})
    if not request.user.is_authenticated:
        return _error("log in as an engineer or supervisor to read the metrics (session authentication)", 403)
    if not can_see_health(request.user):
        return _error("the metrics are for engineers and supervisors", 403)
    site_ids = site_ids_for_user(request.user)
    try:
        fmt = fmt or text(request.GET, "format") or "json"
        if fmt not in FORMATS:
            raise MetricsParamError("format", f"{shown(fmt, 20)} is not one of {', '.join(FORMATS)}")
        query = parse_query(request.GET, site_ids)
        kpis = fmt == "json" and wants_kpis(request.GET)
    except MetricsParamError as exc:
        return _error(str(exc), 400, exc.param)
    now = timezone.now()
    rows = metric_rows(site_ids, query, now=now)
    if fmt == "csv":
        response = HttpResponse(metrics_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="vigil-metrics-{query.group_by}-{query.period}.csv"'
        )
        return response
    answer = {
        "group_by": query.group_by,
        "period": query.period,
        "start": query.start.isoformat() if query.start else None,
        "end": query.end.isoformat() if query.end else None,
        "site": query.site.slug if query.site else None,
        "follow_through_hours": follow_through_window().total_seconds() / 3600,
        "rows": _as_dicts(rows),
    }
    if kpis:
        answer["alarm_kpis"] = alarm_kpis(site_ids, query, now=now).as_dict()
    return _json(answer)


def _as_dicts(rows: list[MetricsRow]) -> list[dict]:
    with gc_paused():  # a year of asset x week rows: 20,000 dicts (alerts.metrics.rows.gc_paused)
        return [row.as_dict() for row in rows]


def metrics_csv_view(request: HttpRequest) -> HttpResponse:
    return metrics(request, fmt="csv")


@csrf_exempt
def edge_events(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/edge/events: an edge agent's local alert events, each recorded at most once
    (alerts.services.edge_events); one result per event, a wrong event rejected with its reason."""
    checked = gateway_json(request, "events")
    if isinstance(checked, HttpResponse):
        return checked
    gateway, payload = checked
    try:
        results = record_edge_events(gateway, payload["events"])
    except EdgeReportError as exc:
        return _json({"error": str(exc)}, status=413 if isinstance(exc, TooManyEvents) else 400)
    return _json({"results": results})
