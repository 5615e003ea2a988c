"""Technicians' pages: the live alert board, an alert's detail with its charts, and the feedback buttons."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from alerts.asset_panels import past_alerts
from alerts.charts import chart_sensors, sensor_figure, shap_figure
from alerts.forms import MissedFailureForm
from alerts.models import Alert
from alerts.services import (
    ExplanationUnavailable,
    FeedbackError,
    FeedbackForbidden,
    alerts_for_user,
    board_alerts,
    can_give_verdict,
    current_verdict,
    explain_peak,
    normal_ranges,
    record_feedback,
    record_missed_failure,
    undo_verdict,
)
from alerts.choices import FeedbackKind
from alerts.consumers import moved_to_lane
from alerts.services.board import (
    alert_level,
    decorate,
    explained_at,
    feature_lines,
    role_meta,
    similar_before,
    why_lines,
)
from alerts.services.overrides import effective_thresholds
from detection.explain import ExplanationError
from detection.runtime import ModelRuntimeError
from plant.access import get_asset_for_user, get_or_404, is_engineer
from plant.models import Asset
from plant.params import ParamError, is_digits, parse_id, shown, text
from plant.views import render_asset, site_form

WS_PATH = "/ws/alerts/"


def _get_alert_for_user(request: HttpRequest, pk: int, *, detail: bool = False) -> Alert:
    """The alert if it belongs to one of the user's sites (shadow alerts never do); 404 otherwise."""
    alerts: QuerySet[Alert] = alerts_for_user(request.user).select_related("asset__site", "asset__asset_type")
    if detail:
        alerts = alerts.select_related("model_version")
    return get_or_404(alerts, "alert", pk=pk)


def _asset_filter(request: HttpRequest) -> Asset | None:
    raw = text(request.GET, "asset")
    if not raw:
        return None
    try:
        pk = parse_id("asset", raw)
    except ParamError:
        raise ValueError(f"asset must be an asset id, not {shown(raw, 20)}") from None
    return get_asset_for_user(request, pk)


@require_GET
@login_required
def board(request: HttpRequest) -> HttpResponse:
    """Open, acknowledged and snoozed alerts of the user's sites; an htmx request gets only the list."""
    try:
        asset = _asset_filter(request)
    except ValueError as exc:  # a ParamError too
        return HttpResponseBadRequest(str(exc))
    cards = board_alerts(request.user, asset_id=asset.pk if asset else None)
    context = {
        "alerts": [alert for alert in cards if not alert.in_work],
        "in_work": [alert for alert in cards if alert.in_work],
        "asset_filter": asset,
        "ws_path": WS_PATH,
        "next": "board",
    }
    if request.htmx:  # the re-sync: both lanes (the in-work lane out of band)
        return render(request, "alerts/board.html#alert-list", {**context, "lanes_oob": True})
    return render(request, "alerts/board.html", context)


# Sections that apps above alerts add to the alert page, each rendering its own HTML for the request and the
# alert ("" for nothing), handed in from their AppConfig.ready(): "after_verdict" (handoff: the alert's work
# orders and the "Create work order" button) or at the "end" (notify: the alert's delivery log).
AlertSection = Callable[[HttpRequest, Alert], str]
_ALERT_SECTIONS: dict[str, list[AlertSection]] = {"after_verdict": [], "end": []}


def provide_alert_section(section: AlertSection, place: str = "end") -> None:
    """Register a section of the alert page at ``place`` (idempotent)."""
    if section not in _ALERT_SECTIONS[place]:
        _ALERT_SECTIONS[place].append(section)


@require_GET
@login_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alert = _get_alert_for_user(request, pk, detail=True)
    asset = alert.asset
    version = alert.model_version
    ranges = normal_ranges(version)
    roles = role_meta([asset.asset_type_id]).get(asset.asset_type_id, {})
    level = alert_level(alert, version, effective_thresholds(version, asset.pk))
    peak_error = ""
    if request.GET.get("window") == "peak" and alert.explanation and alert.peak_window_end != alert.opened_at:
        try:
            explain_peak(alert)
        except (ExplanationUnavailable, ExplanationError, ModelRuntimeError) as exc:
            peak_error = f"The peak window could not be explained: {exc}"
    which = "peak" if request.GET.get("window") == "peak" and alert.peak_explanation else "opening"
    explanation = alert.peak_explanation if which == "peak" else alert.explanation
    lines = feature_lines(explanation, ranges, roles, level)
    why = why_lines(explanation, ranges, roles, level, top=None)
    sensors = list(asset.sensors.select_related("role").order_by("role__key", "key"))
    current = current_verdict(alert)
    alert.similar_id = similar_before(asset, alert.kind, alert.dominant_role, alert.opened_at).first()
    decorate([alert], level)
    explained_score = (explanation or {}).get("score")
    context = {
        "alert": alert,
        "asset": asset,
        "site": asset.site,
        "version": version,
        "why": why,
        "lines": lines,
        "level": level,
        "which": which,
        "peak_error": peak_error,
        "explained_at": explained_at(explanation),
        "explained_unusual": level.unusual(explained_score),
        "explanation": explanation,
        "sensor_figure": sensor_figure(
            alert,
            # A sensor fault's evidence is that sensor's readings and their flags.
            [s for s in sensors if s.pk == alert.sensor_id]
            if alert.sensor_id
            else chart_sensors(sensors, why),
            asset.site.timezone,
        ),
        "shap_figure": shap_figure(explanation, lines),
        "events": list(alert.events.select_related("actor")),
        "feedback_rows": list(alert.feedback.select_related("user").order_by("created_at", "pk")),
        "current": current,
        "can_verdict": can_give_verdict(alert, request.user, current),
        "is_engineer": is_engineer(request.user),
        "next": "detail",
        "sections_after_verdict": [section(request, alert) for section in _ALERT_SECTIONS["after_verdict"]],
        "sections": [section(request, alert) for section in _ALERT_SECTIONS["end"]],
    }
    return render(request, "alerts/detail.html", context)


@require_POST
@login_required
def feedback(request: HttpRequest, pk: int) -> HttpResponse:
    """One board button: ``action`` (e.g. "confirm:repaired") and an optional ``note``.

    htmx: on the board the card is swapped (or removed once the alert is closed), on the detail page the
    page refreshes; errors come back as the feedback form with the message (400, or 403). Without
    JavaScript: a redirect back, or an error page with the message.
    """
    alert = _get_alert_for_user(request, pk)
    next_page = "detail" if request.POST.get("next") == "detail" else "board"
    try:
        given = record_feedback(
            alert, request.user, request.POST.get("action", ""), request.POST.get("note", "")
        )
    except FeedbackForbidden as exc:
        return _feedback_error(request, alert, str(exc), next_page, status=403)
    except FeedbackError as exc:
        return _feedback_error(request, alert, str(exc), next_page, status=400)
    if request.htmx:
        if next_page == "detail":
            response = HttpResponse("")
            response["HX-Refresh"] = "true"
            return response
        cards = board_alerts(request.user, ids=[alert.pk])
        if given.kind != FeedbackKind.VERDICT:
            body = (
                render_to_string(
                    "alerts/board.html#alert-card", {"alert": cards[0], "next": "board"}, request
                )
                if cards
                else ""
            )
            response = HttpResponse(body)
            response["HX-Retarget"] = f"#alert-{alert.pk}"
            response["HX-Reswap"] = "outerHTML"
            return response
        # A verdict: a confirmation with a 10-second undo at the top of the board; the card moves to the
        # in-work lane or leaves the board (out of band: the live socket may have done it already).
        card = (
            moved_to_lane(cards[0])
            if cards and cards[0].in_work
            else f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>'
        )
        toast = render_to_string(
            "alerts/board.html#verdict-done",
            {"alert": alert, "feedback": given, "undo_seconds": f"{settings.VIGIL_VERDICT_UNDO_S:g}"},
            request,
        )
        response = HttpResponse(toast + card)
        response["HX-Retarget"] = "#board-messages"
        response["HX-Reswap"] = "afterbegin"
        return response
    messages.success(request, f"Alert #{alert.pk} on {alert.asset.name}: saved.")
    if next_page == "detail":
        return redirect("alerts:detail", pk=alert.pk)
    return redirect("alerts:board")


@require_POST
@login_required
def undo(request: HttpRequest, pk: int, feedback_id: int) -> HttpResponse:
    """The confirmation's "Undo": take the verdict back within VIGIL_VERDICT_UNDO_S seconds (idempotent).

    htmx: the confirmation is replaced by what happened (400/403 with the message when it cannot be
    undone) and the board re-syncs; without JavaScript: a redirect to the board with the message.
    """
    alert = _get_alert_for_user(request, pk)
    try:
        message, status = undo_verdict(alert, request.user, feedback_id), 200
    except FeedbackForbidden as exc:
        message, status = str(exc), 403
    except FeedbackError as exc:
        message, status = str(exc), 400
    if request.htmx:
        body = render_to_string(
            "alerts/board.html#verdict-undone",
            {"alert": alert, "message": message, "error": status != 200},
            request,
        )
        response = HttpResponse(body, status=status)
        if status == 200:
            response["HX-Trigger"] = "verdict-undone"
        return response
    if status != 200:
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    messages.success(request, message)
    return redirect("alerts:board")


def _feedback_error(
    request: HttpRequest, alert: Alert, error: str, next_page: str, *, status: int
) -> HttpResponse:
    alert.refresh_from_db()
    if request.htmx and next_page == "board" and not board_alerts(request.user, ids=[alert.pk]):
        # The alert left the board meanwhile (a colleague's verdict closed it): the live socket removes its
        # card, and an error shown in the card would go with it. Say it at the top of the board instead.
        body = render_to_string(
            "alerts/board.html#verdict-undone",
            {"message": f"Not saved for {alert.asset.name} (#{alert.pk}): {error}.", "error": True},
            request,
        )
        response = HttpResponse(
            body + f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>', status=status
        )
        response["HX-Retarget"] = "#board-messages"
        response["HX-Reswap"] = "afterbegin"
        return response
    current = current_verdict(alert)
    context = {
        "alert": alert,
        "error": error,
        "next": next_page,
        "can_verdict": can_give_verdict(alert, request.user, current),
        "back_url": (
            reverse("alerts:detail", args=[alert.pk]) if next_page == "detail" else reverse("alerts:board")
        ),
    }
    template = "alerts/_feedback.html" if request.htmx else "alerts/feedback_error.html"
    return render(request, template, context, status=status)


def asset_panel(asset: Asset) -> dict:
    """alerts' part of the asset page (plant.views.render_asset): the missed-failure form."""
    return {"missed_form": MissedFailureForm()}


@require_GET
@login_required
def asset_past_alerts(request: HttpRequest, pk: int) -> HttpResponse:
    """A page of the asset's past alerts: the asset page's section for htmx ("Older alerts"), else the
    whole asset page showing that page."""
    asset = get_asset_for_user(request, pk)
    try:
        raw = text(request.GET, "page") or "1"
    except ParamError as exc:
        return HttpResponseBadRequest(str(exc))
    if not is_digits(raw) or len(raw) > 6 or int(raw) < 1:
        return HttpResponseBadRequest(f"page must be a page number (1, 2, …), not {shown(raw, 20)}")
    context = past_alerts(asset, int(raw))
    if request.htmx:
        return render(request, "plant/asset.html#past-alerts", {"asset": asset, **context})
    return render_asset(request, asset, extra_context=context)


@require_POST
@login_required
def asset_missed_failure(request: HttpRequest, pk: int) -> HttpResponse:
    """Report a failure that had no alert: a fault Label and a missed-failure Feedback (recall uses it)."""
    asset = get_asset_for_user(request, pk)
    form = site_form(MissedFailureForm, request.POST, asset.site)
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
        return render_asset(request, asset, extra_context={"missed_form": form}, status=400)
    messages.success(request, "Thank you: the failure was recorded and will be used to check the model.")
    return redirect(asset)
