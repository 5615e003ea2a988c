"""Pages of the plant: the user's sites, a site's assets with their sensor health, an asset's chart."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts.forms import MissedFailureForm
from alerts.services import FeedbackError, record_missed_failure
from models_registry.baseline import calibration_status
from models_registry.models import ScoringGap

from plant.access import get_asset_for_user, get_site_for_user, sites_for_user
from plant.charts import asset_figure
from plant.choices import Criticality, HealthStatus
from plant.forms import ChartRangeForm, TimeRange
from plant.health import asset_health, sensor_health, worst
from plant.models import Asset, Sensor, Site


SCORING_GAPS_SHOWN = 20
SCORING_GAPS_RECENT = timedelta(days=30)


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
    rows = []
    for asset in assets:
        asset_sensors = [(sensor, health[sensor.pk]) for sensor in asset.sensors.all()]
        rows.append(
            {
                "asset": asset,
                "criticality": Criticality(asset.criticality),
                "status": asset_health(h for _, h in asset_sensors),
                "sensors": asset_sensors,
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
        },
    )


def _chart_range(request: HttpRequest, asset: Asset) -> tuple[ChartRangeForm, TimeRange]:
    # Naive times typed into the form are the site's local wall-clock times.
    with timezone.override(_site_zone(asset.site)):
        form = ChartRangeForm(request.GET or None)
        return form, form.time_range()


@require_GET
@login_required
def asset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_asset(request, get_asset_for_user(request, pk))


def _render_asset(
    request: HttpRequest, asset: Asset, *, missed_form: MissedFailureForm | None = None, status: int = 200
) -> HttpResponse:
    sensors = _sensors(asset)
    form, span = _chart_range(request, asset)
    if form.is_bound and not form.is_valid():
        status = 400  # the page still draws the default range, under the form's errors
    context = {
        "asset": asset,
        "site": asset.site,
        "site_zone": _site_zone(asset.site),
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
        missed_form=missed_form or MissedFailureForm(),
        baselines=calibration_status(asset),
        scoring_gaps=list(
            asset.scoring_gaps.overlapping(since=timezone.now() - SCORING_GAPS_RECENT)[:SCORING_GAPS_SHOWN]
        ),
    )
    return render(request, "plant/asset.html", context, status=status)


@require_POST
@login_required
def asset_missed_failure(request: HttpRequest, pk: int) -> HttpResponse:
    """Report a failure that had no alert: a fault Label and a missed-failure Feedback (recall uses it)."""
    asset = get_asset_for_user(request, pk)
    with timezone.override(_site_zone(asset.site)):  # the form's times are the site's wall-clock times
        form = MissedFailureForm(request.POST)
        valid = form.is_valid()
    if valid:
        try:
            record_missed_failure(asset, request.user, **form.cleaned_data)
        except FeedbackError as exc:
            form.add_error(None, str(exc))
            valid = False
    if request.htmx:
        context = {
            "asset": asset,
            "missed_form": form if not valid else MissedFailureForm(),
            "reported": valid,
        }
        return render(request, "plant/asset.html#missed-failure", context, status=200 if valid else 400)
    if not valid:
        return _render_asset(request, asset, missed_form=form, status=400)
    messages.success(request, "Thank you: the failure was recorded and will be used to check the model.")
    return redirect(asset)


@require_GET
@login_required
def asset_chart(request: HttpRequest, pk: int) -> JsonResponse:
    asset = get_asset_for_user(request, pk)
    form, span = _chart_range(request, asset)
    if form.is_bound and not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    figure = asset_figure(_sensors(asset), span, asset.site.timezone)
    # Windows of the range that a model did not score (models_registry.ScoringGap), so a flat score line
    # is never mistaken for a healthy one.
    gaps = asset.scoring_gaps.overlapping(since=span.start, until=span.end)[:SCORING_GAPS_SHOWN]
    return JsonResponse({**figure, "scoring_gaps": [_gap_json(gap) for gap in gaps]})


def _gap_json(gap: ScoringGap) -> dict:
    return {
        "model_version": str(gap.model_version),
        "start": gap.start.isoformat(),
        "end": gap.end.isoformat(),
        "reason": gap.reason,
        "reason_label": gap.get_reason_display(),
        "created_at": gap.created_at.isoformat(),
    }


def _site_zone(site: Site) -> ZoneInfo:
    try:
        return ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
