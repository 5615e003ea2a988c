"""Connections and point mappings in the engineering console (registered from plant.admin).

A password typed in the form is stored encrypted and never rendered back (the field is always empty;
left empty it keeps the stored one). Each connection page links to the CSV export and import of its
mappings; the bridge's last report on the connection is shown read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from plant.admin_scoping import SiteScopedAdmin
from connectivity.mapping_csv import MappingFileError
from plant.connections.mappings import export_csv, import_csv
from plant.connections.secrets import set_password
from plant.models import Connection, ConnectionState, PointMapping


class ConnectionForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again; leave empty to keep the current one.",
    )
    clear_password = forms.BooleanField(required=False, help_text="Remove the stored password.")

    class Meta:
        model = Connection
        fields = [
            "site", "name", "protocol", "endpoint", "username", "password", "clear_password", "password_env",
            "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify", "interval_s", "options",
            "enabled", "write_back",
        ]  # fmt: skip


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a 'sensor' column and the protocol's address columns.")


def _moment(at: Any) -> str:
    return "time unknown" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


def _last_error_line(state: ConnectionState) -> str:
    """The last error with its time, in plain words with the raw text after them (``last_error_words``, as
    the site page); one the connection has since got past (``error_resolved``, the rule the site page
    follows) says so and when."""
    words = state.last_error_words()
    error = f"{words} (detail: {state.last_error})" if words else state.last_error
    resolved = state.error_resolved()
    if resolved is None:
        return f"last error ({_moment(state.last_error_at)}): {error}"
    verb, at = resolved
    return f"past error ({_moment(state.last_error_at)}, before it {verb} at {_moment(at)}): {error}"


@admin.register(Connection)
class ConnectionAdmin(SiteScopedAdmin):
    form = ConnectionForm
    list_display = ["name", "site", "protocol", "endpoint", "enabled", "write_back", "status"]
    list_filter = ["site", "protocol", "enabled"]
    list_select_related = ["site", "state"]
    search_fields = ["name", "endpoint"]
    readonly_fields = ["password_stored", "bridge_status", "mapping_links"]
    actions = ["enable_selected", "disable_selected"]

    def get_fields(self, request: HttpRequest, obj: Connection | None = None) -> list[str]:
        fields = list(ConnectionForm.Meta.fields)
        fields.insert(fields.index("password"), "password_stored")
        return fields + (["mapping_links", "bridge_status"] if obj is not None else [])

    @admin.display(description="password")
    def password_stored(self, obj: Connection) -> str:
        if obj.password_env:
            return f"read from ${obj.password_env}"
        return "stored (encrypted)" if obj.password_encrypted else "none"

    @admin.display(description="status")
    def status(self, obj: Connection) -> str:
        return obj.status_text()

    @admin.display(description="bridge status")
    def bridge_status(self, obj: Connection) -> str:
        state = ConnectionState.objects.filter(connection=obj).first()
        if state is None:
            return "The bridge has not reported on this connection yet."
        counts = f"messages {state.messages}, stored {state.stored}, refused {state.rejected}, errors {state.errors}"
        if counted := state.counted_text():
            counts += f" ({counted})"
        lines = [obj.status_text(state), counts]
        if state.last_error:
            lines.append(_last_error_line(state))
        if obj.write_back:
            waiting = obj.write_backs.filter(published_at__isnull=True).count()
            lines.append(f"alert states waiting to be written back: {waiting}")
        return format_html("<br>".join(["{}"] * len(lines)), *lines)

    @admin.display(description="point mappings")
    def mapping_links(self, obj: Connection) -> str:
        return format_html(
            '{} mapping(s): <a href="{}">list</a> · <a href="{}">export CSV</a> · <a href="{}">import CSV</a>',
            obj.mappings.count(),
            reverse("admin:plant_pointmapping_changelist") + f"?connection__id__exact={obj.pk}",
            reverse("admin:plant_connection_mappings_export", args=[obj.pk]),
            reverse("admin:plant_connection_mappings_import", args=[obj.pk]),
        )

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        if form.cleaned_data.get("clear_password"):
            set_password(obj, "")
        elif form.cleaned_data.get("password"):
            set_password(obj, form.cleaned_data["password"])
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable selected connections", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"Enabled {count} connection(s).", messages.SUCCESS)

    @admin.action(description="Disable selected connections", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} connection(s).", messages.SUCCESS)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/mappings.csv",
                wrap(self.mappings_export),
                name="plant_connection_mappings_export",
            ),
            path(
                "<int:pk>/mappings/import/",
                wrap(self.mappings_import),
                name="plant_connection_mappings_import",
            ),
            *super().get_urls(),
        ]

    def _connection(self, request: HttpRequest, pk: int, change: bool) -> Connection:
        connection = self.get_queryset(request).filter(pk=pk).first()
        if connection is None:
            raise Http404("No such connection.")
        allowed = self.has_change_permission if change else self.has_view_permission
        if not allowed(request, connection):
            raise PermissionDenied
        return connection

    def mappings_export(self, request: HttpRequest, pk: int) -> HttpResponse:
        connection = self._connection(request, pk, change=False)
        response = HttpResponse(export_csv(connection), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{connection.site.slug}-{connection.pk}-mappings.csv"'
        )
        return response

    def mappings_import(self, request: HttpRequest, pk: int) -> HttpResponse:
        connection = self._connection(request, pk, change=True)
        form = ImportForm(request.POST or None, request.FILES or None)
        result = None
        status = 200
        if request.method == "POST":
            if form.is_valid():
                try:
                    result = import_csv(connection, form.cleaned_data["file"].read())
                except MappingFileError as exc:
                    form.add_error("file", str(exc))
            if not form.is_valid() or result is None:
                status = 400
            elif not result.errors:
                self.message_user(
                    request,
                    f"{result.created} mapping(s) created, {result.updated} updated.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:plant_connection_change", args=[connection.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import point mappings of {connection.name}",
            "opts": self.opts,
            "connection": connection,
            "form": form,
            "result": result,
            "changelist_url": reverse("admin:plant_connection_changelist"),
        }
        return TemplateResponse(request, "admin/plant/connection/import.html", context, status=status)


@admin.register(PointMapping)
class PointMappingAdmin(SiteScopedAdmin):
    site_path = "connection__site"
    list_display = ["sensor", "connection", "address_text", "stale_since"]
    list_filter = ["connection__site", "connection"]
    list_select_related = ["sensor", "connection"]
    search_fields = ["sensor__key", "connection__name"]
    raw_id_fields = ["sensor"]

    @admin.display(description="address")
    def address_text(self, obj: PointMapping) -> str:
        return ", ".join(f"{k}={v}" for k, v in (obj.address or {}).items())
