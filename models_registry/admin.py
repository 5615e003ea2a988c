"""The engineers' console for models: list with metrics, upload, promote / shadow / roll back, download.

Versions, incidents and retraining runs belong to an asset type, not a site: every engineer sees them, but
only an engineer of every site with assets of the type may change what those sites run (the services check
it). Per-asset baselines are scoped to the user's sites (plant.admin_scoping)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from detection.runtime import higher_is_worse
from models_registry.choices import ModelKind, ModelStatus
from models_registry.models import ModelIncident, ModelStatusChange, ModelVersion
from models_registry.quarantine import clear_quarantine
from models_registry.services import ModelRejected, current_champion, may_move_versions, type_and_kind
from plant.admin_scoping import ScopedTabularInline, SiteScopedAdmin
from plant.models import AssetType, check_period_order

KEY_METRICS = ("pr_auc", "precision", "recall", "f1", "false_alarm_rate", "false_alarms_per_day")
MAX_BACKGROUND_ROWS = 100


def badge(label: str, colour: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;font-size:11px">{}</span>',
        colour,
        label,
    )


class ModelVersionUploadForm(forms.ModelForm):
    """Upload of an ONNX artifact trained elsewhere; the version number and sha256 are computed."""

    class Meta:
        model = ModelVersion
        fields = [
            "name",
            "kind",
            "asset_type",
            "onnx_file",
            "feature_spec",
            "output_spec",
            "open_threshold",
            "clear_threshold",
            "background",
            "metrics",
            "provenance",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["background"].required = True  # validation runs the model on these rows

    def clean_onnx_file(self):
        upload = self.cleaned_data["onnx_file"]
        if upload is not None and upload.size == 0:
            raise forms.ValidationError("The ONNX file is empty.")
        return upload

    def clean_feature_spec(self) -> list[str]:
        spec = self.cleaned_data["feature_spec"]
        if not isinstance(spec, list) or not spec or not all(isinstance(item, str) and item for item in spec):
            raise forms.ValidationError(
                'Give the ordered feature names as a JSON list of strings, e.g. ["a", "b"].'
            )
        if len(set(spec)) != len(spec):
            raise forms.ValidationError("Feature names must be unique.")
        return spec

    def clean_output_spec(self) -> dict[str, Any]:
        spec = self.cleaned_data["output_spec"] or {}
        if not isinstance(spec, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"name": "score", "direction": "higher"}.')
        return spec

    def clean_metrics(self) -> dict[str, Any]:
        value = self.cleaned_data["metrics"] or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object of metric names to numbers.")
        return value

    def clean_provenance(self) -> dict[str, Any]:
        value = self.cleaned_data["provenance"] or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        spec, background = data.get("feature_spec"), data.get("background")
        if isinstance(spec, list) and background is not None:
            rows = background if isinstance(background, list) else None
            if not rows or not all(
                isinstance(row, list)
                and len(row) == len(spec)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
                for row in rows
            ):
                self.add_error(
                    "background",
                    f"Give 1–{MAX_BACKGROUND_ROWS} reference rows as a JSON list of lists of "
                    f"{len(spec)} numbers.",
                )
            elif len(rows) > MAX_BACKGROUND_ROWS:
                self.add_error("background", f"At most {MAX_BACKGROUND_ROWS} rows.")
        open_t, clear_t = data.get("open_threshold"), data.get("clear_threshold")
        if open_t is not None and clear_t is not None:
            higher = higher_is_worse(data.get("output_spec"))
            if (clear_t > open_t) if higher else (clear_t < open_t):
                self.add_error(
                    "clear_threshold", "The clear threshold must lie on the normal side of the open one."
                )
        return data


class ModelStatusChangeInline(ScopedTabularInline):
    model = ModelStatusChange
    fields = ["at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-at", "-id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(SiteScopedAdmin):
    site_path = None
    list_display = [
        "name",
        "version",
        "kind_badge",
        "asset_type",
        "status_badge",
        "key_metrics",
        "latency",
        "created_at",
        "download_link",
    ]
    list_display_links = ["name", "version"]
    list_filter = ["status", "kind", "asset_type", ("quarantined_at", admin.EmptyFieldListFilter)]
    list_select_related = ["asset_type"]
    search_fields = ["name", "sha256"]
    date_hierarchy = "created_at"
    inlines = [ModelStatusChangeInline]
    actions = ["promote_selected", "shadow_selected", "rollback_selected", "clear_quarantine_selected"]
    readonly_on_change = [
        "name",
        "version",
        "kind",
        "asset_type",
        "status",
        "download_link",
        "sha256",
        "pretty_feature_spec",
        "pretty_output_spec",
        "open_threshold",
        "clear_threshold",
        "pretty_metrics",
        "pretty_provenance",
        "latency_ms",
        "validated_at",
        "quarantined_at",
        "created_by",
        "created_at",
    ]

    # --- list columns ---------------------------------------------------------------------------------

    @admin.display(description="Kind", ordering="kind")
    def kind_badge(self, obj: ModelVersion) -> str:
        choice = ModelKind(obj.kind)
        return badge(choice.label, choice.colour)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ModelVersion) -> str:
        choice = ModelStatus(obj.status)
        if obj.quarantined_at is not None:
            return format_html("{} {}", badge(choice.label, choice.colour), badge("Quarantined", "#b91c1c"))
        return badge(choice.label, choice.colour)

    @admin.display(description="Key metrics")
    def key_metrics(self, obj: ModelVersion) -> str:
        metrics = obj.metrics or {}
        shown = [(key, metrics[key]) for key in KEY_METRICS if isinstance(metrics.get(key), (int, float))][:3]
        return ", ".join(f"{key} {value:.3g}" for key, value in shown) or "—"

    @admin.display(description="Latency", ordering="latency_ms")
    def latency(self, obj: ModelVersion) -> str:
        return f"{obj.latency_ms:.3f} ms" if obj.latency_ms is not None else "not validated"

    @admin.display(description="ONNX")
    def download_link(self, obj: ModelVersion) -> str:
        if not obj.pk:
            return "—"
        url = reverse("admin:models_registry_modelversion_download", args=[obj.pk])
        return format_html('<a href="{}">download</a>', url)

    def _pretty(self, value: Any) -> str:
        return format_html("<pre style='margin:0'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))

    @admin.display(description="Feature spec")
    def pretty_feature_spec(self, obj: ModelVersion) -> str:
        return self._pretty(obj.feature_spec)

    @admin.display(description="Output spec")
    def pretty_output_spec(self, obj: ModelVersion) -> str:
        return self._pretty(obj.output_spec)

    @admin.display(description="Metrics")
    def pretty_metrics(self, obj: ModelVersion) -> str:
        return self._pretty(obj.metrics)

    @admin.display(description="Provenance")
    def pretty_provenance(self, obj: ModelVersion) -> str:
        return self._pretty(obj.provenance)

    # --- forms: upload on add, read-only afterwards ----------------------------------------------------

    def get_form(self, request: HttpRequest, obj: ModelVersion | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = ModelVersionUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None):
        if obj is None:
            return ModelVersionUploadForm.Meta.fields
        return self.readonly_on_change

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None):
        return self.readonly_on_change if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: ModelVersion | None):
        return self.inlines if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        # Alerts and history refer to versions; they are retired, never deleted.
        return False

    def save_model(
        self, request: HttpRequest, obj: ModelVersion, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            return  # nothing on an existing version is editable here; status moves go through actions
        upload = form.cleaned_data["onnx_file"]
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        obj.sha256 = digest.hexdigest()
        obj.version = (
            ModelVersion.objects.filter(name=obj.name).aggregate(top=Max("version"))["top"] or 0
        ) + 1
        obj.status = ModelStatus.CANDIDATE
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        ModelStatusChange.objects.create(
            version=obj,
            from_status="",
            to_status=ModelStatus.CANDIDATE,
            actor=request.user,
            reason="uploaded",
        )

    # --- actions ------------------------------------------------------------------------------------------

    # Promote, shadow and roll back change what every site of the type runs: the actions send the engineer
    # to the version's comparison page, which shows it against the champion and asks why before it moves
    # (models_registry.views._move), instead of moving at "Go" with no confirmation and no reason.

    def _to_compare_page(self, request: HttpRequest, version: ModelVersion, what: str) -> HttpResponse:
        self.message_user(
            request,
            f"{what}, check the comparison on this page and give a reason under Status to confirm. "
            "Nothing has changed yet.",
            messages.INFO,
        )
        return redirect(reverse("models_registry:compare", args=[version.pk]) + "#version-actions")

    def _one_version(self, request: HttpRequest, queryset: QuerySet, verb: str) -> ModelVersion | None:
        versions = list(queryset.select_related("asset_type")[:2])
        if len(versions) != 1:
            self.message_user(request, f"Select exactly one version to {verb}.", messages.WARNING)
            return None
        return versions[0]

    @admin.action(
        description="Promote to champion (compare, then confirm with a reason)", permissions=["change"]
    )
    def promote_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        version = self._one_version(request, queryset, "promote")
        return version and self._to_compare_page(request, version, f"To promote {version} to champion")

    @admin.action(description="Run in shadow (compare, then confirm with a reason)", permissions=["change"])
    def shadow_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        version = self._one_version(request, queryset, "run in shadow")
        return version and self._to_compare_page(request, version, f"To run {version} in shadow")

    @admin.action(
        description="Roll back the champion of the selected version's asset type and kind (compare, then "
        "confirm with a reason)",
        permissions=["change"],
    )
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        pairs = sorted(set(queryset.values_list("asset_type", "kind")))
        if len(pairs) != 1:
            self.message_user(
                request, "Select versions of one asset type and kind to roll back.", messages.WARNING
            )
            return None
        asset_type = AssetType.objects.get(pk=pairs[0][0])
        kind = ModelKind(pairs[0][1])
        champion = current_champion(asset_type, kind)
        if champion is None:
            self.message_user(
                request, f"{type_and_kind(asset_type, kind)}: no champion to roll back.", messages.WARNING
            )
            return None
        return self._to_compare_page(request, champion, f"To roll back {champion}")

    @admin.action(description="Re-validate and clear quarantine", permissions=["change"])
    def clear_quarantine_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for version in queryset.filter(quarantined_at__isnull=False):
            if not may_move_versions(request.user, version.asset_type_id):
                # Clearing a quarantine makes the version score again on every site of its type.
                self.message_user(
                    request,
                    f"{version}: not done — you are not a member of every site it runs on.",
                    messages.ERROR,
                )
                continue
            try:
                clear_quarantine(version, actor=request.user)
            except ModelRejected as exc:
                self.message_user(request, f"{version} is still quarantined — {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{version} passed validation and scores again.", messages.SUCCESS)

    # --- download -----------------------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<int:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="models_registry_modelversion_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        version = ModelVersion.objects.filter(pk=object_id).first()
        if version is None:
            raise Http404("No such model version.")
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        try:
            handle = version.onnx_file.open("rb")
        except (OSError, ValueError):
            raise Http404("The ONNX file of this version is missing from storage.") from None
        return FileResponse(handle, as_attachment=True, filename=f"{version.name}-v{version.version}.onnx")


@admin.register(ModelIncident)
class ModelIncidentAdmin(SiteScopedAdmin):
    """Run-time failures that quarantined a version; cleared through the model version's action."""

    site_path = None

    list_display = ["version", "kind", "at", "short_message", "resolved_at", "resolved_by"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter), "version__asset_type"]
    list_select_related = ["version", "resolved_by"]
    search_fields = ["version__name", "message"]
    readonly_fields = ["version", "kind", "at", "message", "resolved_at", "resolved_by"]

    @admin.display(description="Message")
    def short_message(self, obj: ModelIncident) -> str:
        return obj.message[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


from models_registry.models import RetrainRun  # noqa: E402  (appended with the retrain feature)


@admin.register(RetrainRun)
class RetrainRunAdmin(SiteScopedAdmin):
    """Retraining runs, read-only: they are written by models_registry.retrain and shown at /models/."""

    site_path = None

    list_display = ("id", "asset_type", "kind", "status", "stage", "percent", "requested_by", "created_at")
    list_filter = ("status", "kind", "asset_type")
    readonly_fields = [field.name for field in RetrainRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


from detection.baseline import BaselineError  # noqa: E402  (appended with per-asset baselines)
from models_registry import baseline as baselines  # noqa: E402  (appended with per-asset baselines)
from models_registry.models import AssetBaseline  # noqa: E402


class AssetBaselineForm(forms.ModelForm):
    """Recalibrate an asset from a period of normal running, as its page's button does (every mode the
    versions in use need, and the asset's thresholds of its robust versions)."""

    model_name = forms.CharField(
        required=False,
        label="Only the features of model",
        help_text="Optional model name; by default every feature of the sensors the asset has (serves every "
        "model).",
    )

    class Meta:
        model = AssetBaseline
        fields = ["asset", "start", "end"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        asset, start, end = data.get("asset"), data.get("start"), data.get("end")
        if asset is None or start is None or end is None:
            return data
        try:
            check_period_order(start, end)
        except forms.ValidationError as exc:
            self.add_error(None, exc)
            return data
        names = None
        if data.get("model_name"):
            version = ModelVersion.objects.filter(name=data["model_name"]).order_by("-version").first()
            if version is None or version.asset_type_id != asset.asset_type_id:
                raise forms.ValidationError(f"No model {data['model_name']!r} for {asset.asset_type}.")
            names = list(version.feature_spec)
        try:
            # What the asset page's button stores (baselines.recalibrate), run through once without keeping
            # anything so that whatever it would refuse (the period, a version that cannot score it) is a
            # form error, not a failure when the console saves.
            baselines.recalibrate(asset, start, end, feature_names=names, dry_run=True)
        except BaselineError as exc:
            raise forms.ValidationError(str(exc)) from None
        self.feature_names = names
        return data


def _become(obj: AssetBaseline, row: AssetBaseline) -> None:
    """Make the admin's unsaved ``obj`` the stored ``row`` (its add view reports and links the object)."""
    for field in AssetBaseline._meta.concrete_fields:
        setattr(obj, field.attname, getattr(row, field.attname))
    obj._state.adding = False


@admin.register(AssetBaseline)
class AssetBaselineAdmin(SiteScopedAdmin):
    """Per-asset baselines: add = calibrate from a period; rows are history, never edited."""

    site_path = "asset__site"

    list_display = [
        "asset",
        "mode",
        "source",
        "is_current",
        "start",
        "end",
        "window_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["is_current", "mode", "source", "asset__asset_type"]
    list_select_related = ["asset", "created_by"]
    search_fields = ["asset__tag", "asset__name"]
    actions = ["recalibrate_selected"]

    def get_form(self, request: HttpRequest, obj: AssetBaseline | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = AssetBaselineForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: AssetBaseline | None = None):
        if obj is None:
            return ["asset", "start", "end", "model_name"]
        return [field.name for field in AssetBaseline._meta.fields if field.name != "id"]

    def get_readonly_fields(self, request: HttpRequest, obj: AssetBaseline | None = None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AssetBaseline, form: Any, change: bool) -> None:
        if change:
            return  # history is not editable
        # The asset page's recalibration (every mode in use and the asset's thresholds of its robust
        # versions); the page then shows the first row it stored.
        done = baselines.recalibrate(
            obj.asset, obj.start, obj.end, actor=request.user, feature_names=form.feature_names
        )
        _become(obj, done.baselines[0])

    @admin.action(
        description="Recalibrate over the same period (from the readings now stored)", permissions=["change"]
    )
    def recalibrate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The asset page's recalibration over each row's period and features: every mode in use and the
        # asset's thresholds of its robust versions (calibrating the row's mode alone left a robust
        # version's asset on the version's thresholds, made with the calibration it replaced).
        for row in queryset.select_related("asset__asset_type"):
            try:
                done = baselines.recalibrate(
                    row.asset, row.start, row.end, actor=request.user, feature_names=list(row.feature_names)
                )
            except BaselineError as exc:
                self.message_user(request, f"{row.asset}: {exc}", messages.ERROR)
            else:
                made = f"; thresholds set for {len(done.thresholds)} version(s)" if done.thresholds else ""
                self.message_user(
                    request,
                    f"{row.asset}: recalibrated from {done.baselines[0].window_count} windows{made}.",
                    messages.SUCCESS,
                )
