"""Engineers' registry pages: model versions, retraining from feedback with live progress, and the
champion-vs-challenger comparison with shadow / promote / roll back. Technicians get 403."""

from __future__ import annotations


from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from models_registry.choices import ModelStatus, RetrainStatus
from models_registry.comparison import ComparisonError, compare, default_period
from detection.baseline import BaselineError
from models_registry.baseline import recalibrate, unsettled_words
from models_registry.edge_rollout import RolloutError, assign, decide, unserved
from models_registry.forms import EdgeAssignForm, PeriodForm, ReasonForm, RecalibrateForm, RetrainForm
from models_registry.models import EdgeAssignment, EdgeStage, ModelStatusChange, ModelVersion, RetrainRun
from models_registry.signing import public_key_pem
from models_registry.retrain import STAGES, RetrainError, report_words, start_retrain
from models_registry.services import (
    ModelRejected,
    RegistryError,
    check_may_move_versions,
    current_champion,
    may_move_versions,
    previous_champion,
    promote,
    rollback,
    rollback_refusal,
    shadow,
)
from plant.access import engineer_required, get_asset_for_user, site_ids_for_user
from plant.models import Asset, EdgeAgent
from plant.views import render_asset, site_form

RECENT_RUNS = 10


def _index_context(form: RetrainForm) -> dict:
    versions = list(
        ModelVersion.objects.select_related("asset_type").order_by("asset_type__name", "kind", "-pk")
    )
    runs = list(RetrainRun.objects.select_related("asset_type", "requested_by", "result")[:RECENT_RUNS])
    return {"versions": versions, "runs": runs, "form": form}


@require_GET
@engineer_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "models_registry/index.html", _index_context(RetrainForm()))


@require_POST
@engineer_required
def retrain_start(request: HttpRequest) -> HttpResponse:
    """Start a retrain run from the form; a bad form comes back with its errors (400)."""
    form = RetrainForm(request.POST)
    if form.is_valid():
        try:
            run = start_retrain(
                form.cleaned_data["asset_type"],
                form.cleaned_data["kind"],
                actor=request.user,
                since=form.cleaned_data["since"],
            )
        except RetrainError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("models_registry:run", pk=run.pk)
    return render(request, "models_registry/index.html", _index_context(form), status=400)


@require_GET
@engineer_required
def retrain_run(request: HttpRequest, pk: int) -> HttpResponse:
    """A run's page; an htmx request (the 1 s poll) gets only the progress partial."""
    run = get_object_or_404(RetrainRun.objects.select_related("asset_type", "requested_by", "result"), pk=pk)
    reached = [percent <= run.percent for _key, _label, percent in STAGES]
    failed = run.status == RetrainStatus.FAILED
    stopped_at = run.stage if failed and run.stage in {label for _key, label, _ in STAGES} else ""
    context = {
        "run": run,
        "report": report_words(run.report),
        # A failed run names the stage it stopped in (its badge already says "Failed").
        "stage_text": (f"while {stopped_at[0].lower()}{stopped_at[1:]}" if stopped_at else "")
        if failed
        else run.stage,
        "stages": [
            {
                "label": label,
                "done": run.status == "succeeded" or (done and label != run.stage),
                "current": label == run.stage and not failed,
                "failed": label == stopped_at,
            }
            for (_key, label, _percent), done in zip(STAGES, reached)
        ],
    }
    if request.htmx:
        return render(request, "models_registry/run.html#progress", context)
    return render(request, "models_registry/run.html", context)


@require_GET
@engineer_required
def version_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """A version against the champion (or, for the champion itself, against the previous one), counted on
    the assets of the user's sites only."""
    version = get_object_or_404(ModelVersion.objects.select_related("asset_type", "created_by"), pk=pk)
    champion = current_champion(version.asset_type, version.kind)
    if champion is not None and champion.pk == version.pk:
        champion = previous_champion(version.asset_type, version.kind, exclude=version)
        other_label = "Previous champion"
    else:
        other_label = "Champion"
    form = PeriodForm(request.GET or None)
    site_ids = site_ids_for_user(request.user)
    comparison, error, status = None, "", 200
    if form.is_bound and not form.is_valid():
        error, status = "; ".join(e for errors in form.errors.values() for e in errors), 400
    else:
        default_start, default_end = default_period(version, site_ids=site_ids)
        data = form.cleaned_data if form.is_bound else {}
        start, end = data.get("start") or default_start, data.get("end") or default_end
        if not form.is_bound:
            form = PeriodForm(
                initial={
                    "start": timezone.localtime(start).strftime("%Y-%m-%dT%H:%M"),
                    "end": timezone.localtime(end).strftime("%Y-%m-%dT%H:%M"),
                    "mode": "backtest",
                }
            )
        try:
            comparison = compare(
                version, champion, start, end, data.get("mode") or "backtest", site_ids=site_ids
            )
        except ComparisonError as exc:
            error, status = str(exc), 400
    history = list(
        ModelStatusChange.objects.filter(version__in=[v for v in (version, champion) if v is not None])
        .select_related("version", "actor")
        .order_by("-at", "-id")
    )
    provenance = version.provenance or {}
    may_move = may_move_versions(request.user, version.asset_type_id)
    refusal = rollback_refusal(version, champion) if version.status == ModelStatus.CHAMPION else ""
    context = {
        "version": version,
        "champion": champion,
        "other_label": other_label,
        "comparison": comparison,
        "form": form,
        "error": error,
        "history": history,
        "report": report_words(provenance.get("retrain_report")),
        "reason_form": ReasonForm(),
        "may_move": may_move,
        "can_shadow": may_move and version.status == ModelStatus.CANDIDATE,
        "can_promote": may_move and version.status in (ModelStatus.CANDIDATE, ModelStatus.SHADOW),
        # Only to a version a rollback may bring back (a previous champion retired on purpose is not one).
        "can_rollback": may_move and version.status == ModelStatus.CHAMPION and not refusal,
        "rollback_refusal": refusal,
    }
    return render(request, "models_registry/compare.html", context, status=status)


def _move(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("asset_type"), pk=pk)
    check_may_move_versions(request.user, version.asset_type_id)  # 403 before anything is read or said
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not done: {form.errors['reason'][0]}")
        return redirect("models_registry:compare", pk=version.pk)
    reason = form.cleaned_data["reason"]
    try:
        if action == "shadow":
            shadow(version, actor=request.user, reason=reason)
            messages.success(request, f"{version} now runs in shadow.")
        elif action == "promote":
            promote(version, actor=request.user, reason=reason)
            messages.success(request, f"{version} is now the champion.")
        else:
            if current_champion(version.asset_type, version.kind) != version:
                raise RegistryError(f"{version} is not the champion; only the champion can be rolled back")
            restored = rollback(version.asset_type, version.kind, actor=request.user, reason=reason)
            messages.success(request, f"Rolled back: {restored} is the champion again.")
            return redirect("models_registry:compare", pk=restored.pk)
    except (ModelRejected, RegistryError) as exc:
        messages.error(request, f"Not done: {exc}")
    return redirect("models_registry:compare", pk=version.pk)


@require_POST
@engineer_required
def version_shadow(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, "shadow")


@require_POST
@engineer_required
def version_promote(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, "promote")


@require_POST
@engineer_required
def version_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, "rollback")


@require_POST
@engineer_required
def asset_recalibrate(request: HttpRequest, pk: int) -> HttpResponse:
    """Recalibrate the asset from a period of normal running (models_registry.baseline.recalibrate): its
    calibration and, for each robust version in use, its thresholds. A refusal (a fault label in the
    period, too few usable windows) is shown on the asset page with the form (400)."""
    asset = get_asset_for_user(request, pk)
    form = site_form(RecalibrateForm, request.POST, asset.site)
    valid = form.is_valid()
    if valid:
        try:
            with timezone.override(asset.site.zone):  # its messages name times as the form took them
                done = recalibrate(
                    asset, form.cleaned_data["start"], form.cleaned_data["end"], actor=request.user
                )
        except BaselineError as exc:
            form.add_error(None, str(exc))
            valid = False
    if not valid:
        return render_asset(request, asset, extra_context={"calibrate_form": form}, status=400)
    counts = ", ".join(
        f"{row.get_mode_display().lower()} from {row.window_count} windows" for row in done.baselines
    )
    thresholds = "; ".join(
        f"{item.model_version}: open {item.open_threshold:.4g} ({item.get_source_display().lower()})"
        for item in done.thresholds
    )
    messages.success(
        request,
        f"Recalibrated {asset.tag}: {counts}." + (f" Thresholds: {thresholds}." if thresholds else ""),
    )
    if not done.in_use:
        messages.warning(
            request,
            f"No model in use on {asset.asset_type.name} scores against a per-asset calibration, so "
            f"{asset.tag}'s scores and alerts do not change: the calibration is kept for a version trained "
            "with per-asset baselines (train_model --per-asset-baseline).",
        )
    unsettled = {words for row in done.baselines for words in unsettled_words(asset, row.trends)}
    if unsettled:
        messages.warning(
            request,
            f"The period is not settled: {'; '.join(sorted(unsettled))}. Expect alerts that are not faults "
            "once the asset settles; choose a period of steady running.",
        )
    return redirect(asset)


# Versions an engineer may send to the edge: the current champion or a candidate/shadow being tried.
EDGE_ASSIGNABLE = (ModelStatus.CHAMPION, ModelStatus.SHADOW, ModelStatus.CANDIDATE)


# --- Edge agents and staged rollouts (issue 16) -----------------------------------------------------------


def _edge_context(request: HttpRequest, form: EdgeAssignForm | None = None) -> dict:
    sites = site_ids_for_user(request.user)
    assets = (
        Asset.objects.filter(site_id__in=sites).select_related("site", "asset_type").order_by("site", "tag")
    )
    versions = ModelVersion.objects.filter(
        asset_type__in=assets.values("asset_type"), status__in=EDGE_ASSIGNABLE
    ).select_related("asset_type")
    now = timezone.now()
    # Per (site, asset tag), from the asset's active rollout (the one its agent switched to): the version,
    # and the alert rate it was measured at in its shadow trial (per 24 h), to set beside the local rate the
    # agent reports (a shift is what a human should look at).
    switched_to: dict[tuple[int, str], ModelVersion] = {}
    expected: dict[tuple[int, str], float] = {}
    for row in (
        EdgeAssignment.objects.filter(asset__site_id__in=sites, stage=EdgeStage.ACTIVE)
        .select_related("asset", "version")
        .defer("bundle", "signature")
    ):
        key = (row.asset.site_id, row.asset.tag)
        switched_to[key] = row.version
        report = row.shadow_report or {}
        if report.get("hours"):
            expected[key] = 24.0 * float(report.get("alerts_candidate") or 0) / float(report["hours"])
    agent_rows = list(EdgeAgent.objects.filter(gateway__site_id__in=sites).select_related("gateway__site"))
    # An agent reports the sha256 of the ONNX file each asset runs (the model hash); the engineer knows
    # versions by name, so each is named by the version whose artifact it is, with the model hash beside it
    # as the rollouts show it (their bundle hash, of the signed file built per asset at assignment, is
    # another file's and is labelled so). When several versions share the artifact: the one the asset's
    # agent switched to (its active rollout), else the newest of the asset's type. A hash no version has (a
    # bundle built elsewhere) stays a hash, marked as not from this server.
    reported = {sha for agent in agent_rows for sha in agent.models_in_use.values()}
    type_of = {
        (site_id, tag): type_id
        for site_id, tag, type_id in Asset.objects.filter(site_id__in=sites).values_list(
            "site_id", "tag", "asset_type_id"
        )
    }
    by_sha: dict[str, list[ModelVersion]] = {}
    for version in ModelVersion.objects.filter(sha256__in=reported).order_by("-created_at"):
        by_sha.setdefault(version.sha256, []).append(version)
    agents = []
    for agent in agent_rows:
        site_id = agent.gateway.site_id
        rates = [expected[site_id, tag] for tag in agent.models_in_use if (site_id, tag) in expected]
        models_named = []
        for tag, sha in sorted(agent.models_in_use.items()):
            version = switched_to.get((site_id, tag))
            if version is None or version.sha256 != sha:
                candidates = by_sha.get(sha, [])
                same_type = [v for v in candidates if v.asset_type_id == type_of.get((site_id, tag))]
                version = (same_type or candidates or [None])[0]
            models_named.append({"tag": tag, "sha256": sha, "version": version})
        agents.append(
            {
                "agent": agent,
                "silent": agent.is_silent(now),
                "drops": list(agent.gateway.edge_drops.all()[:5]),
                "expected_24h": round(sum(rates), 1) if rates else None,
                "models": models_named,
            }
        )
    assignments = (
        EdgeAssignment.objects.filter(asset__site_id__in=sites)
        .select_related("asset__site", "version", "created_by", "decided_by")
        .defer("bundle")[:100]
    )
    return {
        "agents": agents,
        "assignments": assignments,
        "form": form or EdgeAssignForm(assets=assets, versions=versions),
        "public_key": public_key_pem(),
        "silent_after_s": settings.VIGIL_EDGE_SILENT_AFTER_S,
    }


@require_GET
@engineer_required
def edge(request: HttpRequest) -> HttpResponse:
    """The Edge page: agents (last contact, queue, drops, models), rollouts, and the assignment form."""
    return render(request, "models_registry/edge.html", _edge_context(request))


@require_POST
@engineer_required
def edge_assign(request: HttpRequest) -> HttpResponse:
    context = _edge_context(request)
    blank = context["form"]
    form = EdgeAssignForm(
        request.POST, assets=blank.fields["assets"].queryset, versions=blank.fields["version"].queryset
    )
    if form.is_valid():
        try:
            made = assign(
                form.cleaned_data["version"],
                form.cleaned_data["assets"],
                actor=request.user,
                shadow_hours=form.cleaned_data["shadow_hours"],
                auto_approve=form.cleaned_data["auto_approve"],
            )
        except RolloutError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{len(made)} assignment(s) made: the agents try them in shadow first.")
            idle = unserved(form.cleaned_data["assets"])
            if idle:
                messages.warning(
                    request,
                    f"No edge agent runs {', '.join(asset.tag for asset in idle)}: "
                    f"{'its assignment waits' if len(idle) == 1 else 'their assignments wait'} until an agent "
                    "of the site runs the asset (an agent's heartbeat lists the assets it runs, under Models "
                    "in the Agents table). Cancel it if that is not coming.",
                )
            return redirect("models_registry:edge")
    return render(request, "models_registry/edge.html", {**context, "form": form}, status=400)


@require_POST
@engineer_required
def edge_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or cancel an assignment in shadow (only one of the engineer's sites), with a typed reason as
    the version moves ask for (ReasonForm)."""
    assignment = get_object_or_404(
        EdgeAssignment.objects.defer("bundle"), pk=pk, asset__site_id__in=site_ids_for_user(request.user)
    )
    stage = {"approve": EdgeStage.APPROVED, "cancel": EdgeStage.CANCELLED}.get(request.POST.get("action", ""))
    if stage is None:
        messages.error(request, "Unknown action: approve or cancel.")
        return redirect("models_registry:edge")
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not done: {form.errors['reason'][0]}")
        return redirect("models_registry:edge")
    try:
        decide(assignment, stage, actor=request.user, reason=form.cleaned_data["reason"])
    except RolloutError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Assignment #{assignment.pk}: {EdgeStage(stage).label}.")
    return redirect("models_registry:edge")
