"""Pages of the plant: the user's sites, a site's assets with their sensor health, an asset's chart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django import forms
from django.utils import timezone
from django.views.decorators.http import require_GET

from plant.access import get_asset_for_user, get_site_for_user, sites_for_user
from plant.charts import asset_figure
from plant.choices import Criticality, HealthStatus
from plant.forms import ChartRangeForm, TimeRange
from plant.health import asset_health, sensor_health, worst
from plant.models import Asset, Sensor, Site


# The asset page shows panels that apps above plant own (the registry's baselines, alerts' scoring gaps
# and missed-failure form). plant may not import them: each app hands in, from its AppConfig.ready(),
# a function giving its part of the page's context (asset) and of the chart's JSON (asset, time range).
_ASSET_CONTEXT: list[Callable[[Asset], dict]] = []
_CHART_EXTRAS: list[Callable[[Asset, TimeRange], dict]] = []


def provide_asset_panels(
    context: Callable[[Asset], dict] | None = None, chart: Callable[[Asset, TimeRange], dict] | None = None
) -> None:
    """Register an app's part of the asset page's context and of its chart JSON (idempotent)."""
    for registry, part in ((_ASSET_CONTEXT, context), (_CHART_EXTRAS, chart)):
        if part is not None and part not in registry:
            registry.append(part)


# The site page shows each asset's active alert next to its data health: alerts hands in, from
# AlertsConfig.ready(), a function giving {asset id: its active alert (an object the template reads:
# severity_choice, opened_at, in_work, state, state_choice, snoozed_until, snooze_end_text)} for the page's
# assets, in one query.
_SITE_ALERTS: list[Callable[[list[Asset]], dict[int, object]]] = []


def provide_site_alerts(alerts: Callable[[list[Asset]], dict[int, object]]) -> None:
    """Register how the site page finds its assets' active alerts (idempotent)."""
    if alerts not in _SITE_ALERTS:
        _SITE_ALERTS.append(alerts)


def _sensors(asset: Asset) -> list[Sensor]:
    return list(asset.sensors.select_related("role").order_by("role__key", "key"))


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    sites = list(sites_for_user(request.user))
    if len(sites) == 1:
        return redirect(sites[0])
    return render(request, "plant/home.html", {"sites": sites})


@require_GET
@login_required
def site_detail(request: HttpRequest, slug: str) -> HttpResponse:
    site = get_site_for_user(request, slug)
    assets = list(
        site.assets.filter(is_active=True)
        .select_related("asset_type")
        .prefetch_related(Prefetch("sensors", queryset=Sensor.objects.select_related("role")))
    )
    sensors = [sensor for asset in assets for sensor in asset.sensors.all()]
    health = sensor_health(sensors, drift=False)
    active: dict[int, object] = {}
    for part in _SITE_ALERTS:
        active.update(part(assets))
    rows = []
    for asset in assets:
        asset_sensors = [(sensor, health[sensor.pk]) for sensor in asset.sensors.all()]
        rows.append(
            {
                "asset": asset,
                "criticality": Criticality(asset.criticality),
                "status": asset_health(h for _, h in asset_sensors),
                "sensors": asset_sensors,
                "alert": active.get(asset.pk),
            }
        )
    counts = {status: 0 for status in HealthStatus}
    for row in rows:
        counts[row["status"]] += 1
    return render(
        request,
        "plant/site.html",
        {
            "site": site,
            "rows": rows,
            "status_counts": [(status, counts[status]) for status in HealthStatus if counts[status]],
            "site_status": worst(row["status"] for row in rows),
            "alert_count": len(active),
            "connections": list(site.connections.select_related("state").order_by("name")),
        },
    )


def _chart_range(request: HttpRequest, asset: Asset) -> tuple[ChartRangeForm, TimeRange]:
    # Naive times typed into the form are the site's local wall-clock times.
    with timezone.override(asset.site.zone):
        form = ChartRangeForm(request.GET or None)
        return form, form.time_range()


@require_GET
@login_required
def asset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render_asset(request, get_asset_for_user(request, pk))


def render_asset(
    request: HttpRequest, asset: Asset, *, extra_context: dict | None = None, status: int = 200
) -> HttpResponse:
    """The asset page (or its chart panel for htmx); `extra_context` overrides the apps' panels (e.g. a
    form shown again with its errors)."""
    sensors = _sensors(asset)
    form, span = _chart_range(request, asset)
    if form.is_bound and not form.is_valid():
        status = 400  # the page still draws the default range, under the form's errors
    context = {
        "asset": asset,
        "site": asset.site,
        "site_zone": asset.site.zone,
        "form": form,
        # An invalid form is shown with its errors, but its fields show the range actually drawn.
        "range_form": form if form.is_valid() else ChartRangeForm(initial={"range": span.preset}),
        "span": span,
        "figure": asset_figure(sensors, span, asset.site.timezone),
        "chart_url": asset.get_absolute_url() + "chart.json",
    }
    if request.htmx:
        return render(request, "plant/asset.html#chart-panel", context, status=status)
    health = sensor_health(sensors)
    context.update(
        criticality=Criticality(asset.criticality),
        sensor_rows=[(sensor, health[sensor.pk]) for sensor in sensors],
        status=asset_health(health.values()),
        now=timezone.now(),
    )
    for part in _ASSET_CONTEXT:
        context.update(part(asset))
    context.update(extra_context or {})
    return render(request, "plant/asset.html", context, status=status)


@require_GET
@login_required
def asset_chart(request: HttpRequest, pk: int) -> JsonResponse:
    asset = get_asset_for_user(request, pk)
    form, span = _chart_range(request, asset)
    if form.is_bound and not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    figure = asset_figure(_sensors(asset), span, asset.site.timezone)
    for part in _CHART_EXTRAS:
        figure.update(part(asset, span))
    return JsonResponse(figure)


def site_form(form_class: type[forms.Form], data: Any, site: Site) -> forms.Form:
    """A form bound to ``data`` and validated in the site's time zone: naive times typed into it are the
    site's wall-clock times (the asset page's POST forms: missed failure, recalibration)."""
    with timezone.override(site.zone):
        form = form_class(data)
        form.is_valid()
    return form
