"""Engineers' noise page: what technicians keep dismissing, the suggested fixes with their projections, and
the one-click (POST) actions that apply or undo them. Technicians get 403; other sites' groups are 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from alerts.models import ThresholdOverride
from alerts.services.noise import (
    NoiseError,
    NoiseKey,
    NoiseNotFound,
    Suggestion,
    apply_threshold,
    build_suggestion,
    clear_calibration,
    mark_calibration,
    suggestions,
    undo_threshold,
)
from plant.access import engineer_required, scope_to_sites, site_ids_for_user
from plant.models import Sensor

APPLY_CHOICES = ("threshold", "calibration")
T = TypeVar("T")


def _get_suggestion_for_user(request: HttpRequest, key: str) -> Suggestion:
    parsed = NoiseKey.parse(key)
    if parsed is None:
        raise Http404("No such noise suggestion.")
    try:
        return build_suggestion(parsed, site_ids_for_user(request.user))
    except NoiseNotFound as exc:
        raise Http404(str(exc)) from exc


@require_GET
@engineer_required
def noise(request: HttpRequest) -> HttpResponse:
    """Every noise group of the engineer's sites with its evidence, projections and actions, plus the
    thresholds overrides and calibration flags in force (which can be undone)."""
    overrides = scope_to_sites(ThresholdOverride.objects.filter(active=True), request.user, "asset__site")
    calibrating = scope_to_sites(Sensor.objects.filter(needs_calibration=True), request.user, "asset__site")
    context = {
        "suggestions": suggestions(site_ids_for_user(request.user)),
        "overrides": list(overrides.select_related("asset", "model_version", "created_by")),
        "calibrating": list(calibrating.select_related("asset", "role")),
        "settings_dismissals": settings.VIGIL_NOISE_DISMISSALS,
        "settings_days": settings.VIGIL_NOISE_PERIOD_DAYS,
    }
    return render(request, "alerts/noise.html", context)


@require_POST
@engineer_required
def noise_apply(request: HttpRequest, key: str) -> HttpResponse:
    """Apply one suggestion: ``what`` is "threshold" or "calibration". Idempotent."""
    what = request.POST.get("what", "")
    if what not in APPLY_CHOICES:
        return HttpResponseBadRequest(f"what must be one of {', '.join(APPLY_CHOICES)}, not {what[:30]!r}")
    suggestion = _get_suggestion_for_user(request, key)
    try:
        if what == "threshold":
            override, created = apply_threshold(suggestion, request.user)
            text = (
                f"{suggestion.asset.name}: open threshold {override.open_threshold:.4g}, clear "
                f"{override.clear_threshold:.4g} for {suggestion.version}."
                if created
                else f"{suggestion.asset.name} already has a threshold override for {suggestion.version}."
            )
        else:
            changed = mark_calibration(suggestion, request.user)
            text = (
                f"{suggestion.asset.name}: {suggestion.role_label} sensor marked for calibration."
                if changed
                else f"{suggestion.asset.name}: {suggestion.role_label} sensor was already marked."
            )
    except NoiseError as exc:
        return HttpResponseBadRequest(str(exc))
    messages.success(request, text)
    return redirect("alerts:noise")


@require_POST
@engineer_required
def noise_undo_threshold(request: HttpRequest, pk: int) -> HttpResponse:
    """Restore the model's thresholds for the override's asset. Idempotent."""
    return _undo(
        request, pk, undo_threshold, lambda o: f"{o.asset.name}: {o.model_version}'s thresholds apply again."
    )


@require_POST
@engineer_required
def noise_calibrated(request: HttpRequest, pk: int) -> HttpResponse:
    """The sensor was calibrated: clear its flag. Idempotent."""
    return _undo(request, pk, clear_calibration, lambda sensor: f"{sensor.key}: calibration flag cleared.")


def _undo(
    request: HttpRequest, pk: int, undo: Callable[[int, Any, list[int]], T], said: Callable[[T], str]
) -> HttpResponse:
    """Run an undo service on row `pk` of the engineer's sites (404 outside them) and say what it did."""
    try:
        done = undo(pk, request.user, site_ids_for_user(request.user))
    except NoiseNotFound as exc:
        raise Http404(str(exc)) from exc
    messages.success(request, said(done))
    return redirect("alerts:noise")
