"""Engineers' console for alerts: read-mostly lists with coloured badges; state changes go through events.

Every admin is scoped to the user's sites through its asset (plant.admin_scoping)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from alerts.models import Alert, AlertEvent, MaintenanceWindow, NoiseAction, Score, ThresholdOverride
from plant.admin_scoping import ScopedTabularInline, SiteScopedAdmin


def badge(label: str, colour: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;font-size:11px">{}</span>',
        colour,
        label,
    )


class AlertEventInline(ScopedTabularInline):
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ["at", "from_state", "to_state", "kind", "actor", "reason"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(SiteScopedAdmin):
    site_path = "asset__site"
    list_display = [
        "id",
        "asset",
        "kind",
        "state_badge",
        "category_badge",
        "severity_badge",
        "opened_at",
        "window_count",
        "is_shadow",
    ]
    list_filter = ["state", "category", "severity", "kind", "is_shadow", "asset__site"]
    search_fields = ["asset__name", "asset__tag"]
    date_hierarchy = "opened_at"
    list_select_related = ["asset"]
    inlines = [AlertEventInline]
    readonly_fields = [field.name for field in Alert._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # alerts come from scoring only

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Alert) -> str:
        return badge(obj.get_state_display(), obj.state_choice.colour)

    @admin.display(description="category", ordering="category")
    def category_badge(self, obj: Alert) -> str:
        return badge(obj.get_category_display(), obj.category_choice.colour)

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Alert) -> str:
        return badge(obj.get_severity_display(), obj.severity_choice.colour)


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(SiteScopedAdmin):
    site_path = "asset__site"
    list_display = ["asset", "start", "end", "reason", "created_by"]
    list_filter = ["asset__site"]
    readonly_fields = ["created_by"]

    def save_model(self, request, obj: MaintenanceWindow, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Score)
class ScoreAdmin(SiteScopedAdmin):
    site_path = "asset__site"
    list_display = ["asset", "model_version", "window_end", "score"]
    list_filter = ["model_version"]
    list_select_related = ["asset", "model_version"]
    readonly_fields = ["asset", "model_version", "window_end", "score", "flagged"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ThresholdOverride)
class ThresholdOverrideAdmin(SiteScopedAdmin):
    """Read-only: overrides are applied and undone from the noise page, which records a NoiseAction."""

    site_path = "asset__site"

    list_display = [
        "asset",
        "model_version",
        "open_threshold",
        "clear_threshold",
        "active",
        "created_by",
        "created_at",
    ]
    list_filter = ["active", "asset__site"]
    list_select_related = ["asset", "model_version", "created_by"]
    readonly_fields = [field.name for field in ThresholdOverride._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(NoiseAction)
class NoiseActionAdmin(SiteScopedAdmin):
    """The audit trail of noise suggestions applied and undone."""

    site_path = "asset__site"

    list_display = ["at", "kind_badge", "asset", "model_version", "dominant_role", "user", "note"]
    list_filter = ["kind", "asset__site"]
    list_select_related = ["asset", "model_version", "user"]
    readonly_fields = [field.name for field in NoiseAction._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="action", ordering="kind")
    def kind_badge(self, obj: NoiseAction) -> str:
        return badge(obj.get_kind_display(), obj.kind_choice.colour)
