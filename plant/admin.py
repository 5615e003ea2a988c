"""The plant engineers' console (Django admin) for every plant model.

Non-superusers see and pick only objects of the sites they are members of, like on the pages.
Readings are read-only here and listed without full counts or sorting, because the table holds
millions of rows.
"""

from __future__ import annotations

import secrets

from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.functional import cached_property

from plant.access import sees_every_site
from plant.admin_scoping import ScopedChoicesMixin, ScopedTabularInline, SiteScopedAdmin
from plant.admin_tokens import issued_tokens_page
from plant.choices import QualityFlag
from plant.connections import admin as connections_admin  # noqa: F401 (registers Connection, PointMapping)
from plant.models import Asset, AssetType, Gateway, Label, Reading, Sensor, SensorRole, Site, SiteMembership
from plant.params import is_digits


class SiteMembershipInline(ScopedTabularInline):
    model = SiteMembership
    extra = 1


@admin.register(Site)
class SiteAdmin(SiteScopedAdmin):
    site_path = ""
    list_display = ["name", "slug", "timezone", "shift_starts", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [SiteMembershipInline]

    def save_model(self, request: HttpRequest, obj: Site, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        if not change and not sees_every_site(request.user):
            obj.members.add(request.user)  # otherwise the engineer who created it could not see it


class SensorRoleInline(ScopedTabularInline):
    model = SensorRole
    extra = 1
    fields = ["key", "label", "unit", "required"]


@admin.register(AssetType)
class AssetTypeAdmin(SiteScopedAdmin):
    site_path = None  # asset types are shared by every site
    list_display = ["name", "slug", "window_s", "step_s"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [SensorRoleInline]


class SensorInline(ScopedTabularInline):
    model = Sensor
    extra = 0
    fields = ["key", "role", "unit", "valid_min", "valid_max", "sample_period_s"]
    show_change_link = True


@admin.register(Asset)
class AssetAdmin(SiteScopedAdmin):
    list_display = ["name", "tag", "site", "asset_type", "criticality", "is_active"]
    list_filter = ["site", "asset_type", "criticality", "is_active"]
    list_select_related = ["site", "asset_type"]
    search_fields = ["name", "tag"]
    inlines = [SensorInline]


@admin.register(Sensor)
class SensorAdmin(SiteScopedAdmin):
    site_path = "asset__site"
    list_display = ["key", "asset", "role", "unit", "valid_min", "valid_max", "sample_period_s"]
    list_filter = ["asset__site", "role__asset_type", "role__key"]
    list_select_related = ["asset", "role", "role__asset_type"]
    search_fields = ["key", "asset__name", "asset__tag"]
    raw_id_fields = ["asset"]


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Gateway)
class GatewayAdmin(SiteScopedAdmin):
    """Tokens are shown once, on the page that answers the add or "issue new token" request, and nowhere
    else: not in a message (the messages cookie is signed, not encrypted), the session or the log."""

    list_display = ["name", "site", "token_hint", "created_at", "last_seen_at", "active"]
    list_filter = ["site", RevokedFilter]
    list_select_related = ["site"]
    search_fields = ["name", "token_hint"]
    readonly_fields = ["token_hint", "created_at", "last_seen_at", "revoked_at"]
    actions = ["revoke_selected", "issue_new_token"]

    @admin.display(boolean=True, description="active")
    def active(self, obj: Gateway) -> bool:
        return obj.is_active

    def get_fields(self, request: HttpRequest, obj: Gateway | None = None) -> list[str]:
        if obj is None:
            return ["site", "name"]
        return ["site", "name", "token_hint", "created_at", "last_seen_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: Gateway, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        # A random placeholder satisfies the unique hash column until rotate() mints the real token.
        obj.token_hash = secrets.token_hex(32)
        super().save_model(request, obj, form, change)
        # Kept on this request object only, for response_add to show.
        request._issued_gateway_token = obj.rotate()  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: Gateway, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = getattr(request, "_issued_gateway_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, [(obj, token)], "Gateway added")

    @admin.action(description="Revoke selected gateways", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} gateway{'s' if count != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Issue new token", permissions=["change"])
    def issue_new_token(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> HttpResponse:
        issued = [(gateway, gateway.rotate()) for gateway in queryset.select_related("site")]
        return self._token_page(request, issued, "New gateway tokens")

    def _token_page(
        self, request: HttpRequest, issued: list[tuple[Gateway, str]], title: str
    ) -> HttpResponse:
        return issued_tokens_page(
            self,
            request,
            issued,
            title=title,
            intro=(
                "Copy each token now and configure it on its gateway: it is shown on this page only and cannot"
                " be shown again (only its hash is kept)."
            ),
            columns=[("Gateway", lambda gateway: gateway.name), ("Site", lambda gateway: gateway.site)],
            empty="No gateway was selected.",
            back="Back to the gateways",
        )


@admin.register(Label)
class LabelAdmin(SiteScopedAdmin):
    site_path = "asset__site"
    list_display = ["asset", "kind", "fault_type", "reason", "start", "end", "source", "author"]
    list_filter = ["kind", "source", "asset__site"]
    list_select_related = ["asset", "author"]
    search_fields = ["asset__name", "asset__tag", "fault_type", "reason", "note"]
    date_hierarchy = "start"
    raw_id_fields = ["asset", "author"]


class QualityFilter(admin.SimpleListFilter):
    title = "quality"
    parameter_name = "quality"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("clean", "Clean"), ("flagged", "Any flag")] + [(str(int(f)), f.label) for f in QualityFlag]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        value = self.value()
        if value == "clean":
            return queryset.filter(quality=0)
        if value == "flagged":
            return queryset.filter(quality__gt=0)
        if value and is_digits(value) and int(value) in {int(f) for f in QualityFlag}:
            return queryset.annotate(bit=F("quality").bitand(int(value))).filter(bit__gt=0)
        return queryset


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL an unfiltered reading list uses the planner's row estimate instead of COUNT(*)."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if connection.vendor == "postgresql" and query is not None and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [Reading._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count


@admin.register(Reading)
class ReadingAdmin(SiteScopedAdmin):
    site_path = "sensor__asset__site"
    list_display = ["sensor", "ts", "value", "flags"]
    list_filter = [QualityFilter]
    list_select_related = ["sensor"]
    raw_id_fields = ["sensor"]
    ordering = ["-pk"]  # the primary key index; sorting by ts would sort the whole table
    sortable_by: list[str] = []
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    @admin.display(description="quality")
    def flags(self, obj: Reading) -> str:
        return ", ".join(QualityFlag.names_of(obj.quality)) or "clean"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Reading | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Reading | None = None) -> bool:
        return False


# Django's user and group pages, with the console's checked choices (their groups and permissions fields
# refused a 30-digit id with a 500 on SQLite; plant.forms.BoundedModelMultipleChoiceField via ScopedChoicesMixin).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(ScopedChoicesMixin, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(ScopedChoicesMixin, auth_admin.GroupAdmin):
    pass
