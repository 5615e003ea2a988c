"""Hand-off in the engineering console, site-scoped like every admin: webhook endpoints (the secret typed
once, stored encrypted, never shown back), their delivery log with manual redelivery, the site's CMMS
connection (its outcome token shown once, like a gateway's) and the work orders."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import mark_safe

from handoff.models import CmmsConnection, WebhookDelivery, WebhookEndpoint, WorkOrder
from handoff.tasks import deliver_webhook_task
from handoff.webhooks import redeliver, set_secret
from plant.admin_scoping import SiteScopedAdmin
from plant.admin_tokens import issued_tokens_page
from plant.connections.secrets import encrypt

_SECRET_HELP = "Stored encrypted and never shown again; leave empty to keep the current one."


def _secret_field(label: str, help_text: str = _SECRET_HELP) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


@admin.display(description="URL", ordering="url")
def url_text(obj: CmmsConnection | WebhookEndpoint) -> str:
    """The URL as text: the admin lists a URLField as a link, and these URLs take POSTs only (clicking the
    demo CMMS's /demo/cmms/orders answered 405)."""
    return obj.url


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="HTTPS URL that receives the events."
    )
    secret = _secret_field(
        "signing secret",
        "The HMAC-SHA256 key the receiver verifies with (at least 16 characters). " + _SECRET_HELP,
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["site", "name", "url", "secret", "enabled"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if not secret and not (self.instance.pk and self.instance.secret_encrypted):
            raise forms.ValidationError("a new endpoint needs a signing secret")
        if secret and len(secret) < 16:
            raise forms.ValidationError("the signing secret must be at least 16 characters long")
        return secret


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(SiteScopedAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "site", url_text, "enabled"]
    list_filter = ["site", "enabled"]
    list_select_related = ["site"]
    search_fields = ["name", "url"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if form.cleaned_data.get("secret"):
            set_secret(obj, form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(SiteScopedAdmin):
    """The delivery log: read only, with "Redeliver" (same event id and body, fresh signature)."""

    site_path = "endpoint__site"
    list_display = [
        "created_at", "event_type", "alert_id", "endpoint", "status", "attempts", "last_status_code",
        "last_error", "delivered_at",
    ]  # fmt: skip
    list_filter = ["status", "event_type", "endpoint__site"]
    list_select_related = ["endpoint__site"]
    search_fields = ["=event_id", "=alert__id", "last_error"]
    readonly_fields = [
        "endpoint", "event_id", "event_type", "alert", "payload", "status", "attempts", "last_status_code",
        "last_error", "last_attempt_at", "delivered_at", "created_at",
    ]  # fmt: skip
    actions = ["redeliver_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Redeliver selected events", permissions=["change"])
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = redeliver(list(queryset.values_list("pk", flat=True)))
        for pk in ids:
            transaction.on_commit(lambda pk=pk: deliver_webhook_task.delay(pk), robust=True)
        self.message_user(request, f"Queued {len(ids)} delivery(ies) again.", messages.SUCCESS)


class CmmsConnectionForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        help_text="Generic: the URL work orders are POSTed to. Odoo: the server's base URL (…/jsonrpc is added).",
    )
    credential = _secret_field(
        "credential",
        "Generic: the bearer token Vigil sends. Odoo: the user's password or API key. " + _SECRET_HELP,
    )

    class Meta:
        model = CmmsConnection
        fields = [
            "site",
            "kind",
            "url",
            "credential",
            "odoo_database",
            "odoo_login",
            "auto_create",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind") == "odoo" and not (data.get("odoo_database") and data.get("odoo_login")):
            raise forms.ValidationError("an Odoo connection needs its database name and login")
        return data


@admin.register(CmmsConnection)
class CmmsConnectionAdmin(SiteScopedAdmin):
    form = CmmsConnectionForm
    list_display = ["site", "kind", url_text, "auto_create", "enabled", "inbound_token_hint"]
    list_filter = ["kind", "enabled"]
    list_select_related = ["site"]
    readonly_fields = ["inbound_token_hint"]
    actions = ["issue_outcome_token"]

    def save_model(self, request: HttpRequest, obj: CmmsConnection, form: Any, change: bool) -> None:
        if form.cleaned_data.get("credential"):
            obj.credential_encrypted = encrypt(form.cleaned_data["credential"])
        if not change:
            request._issued_cmms_token = obj.rotate_inbound_token()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: CmmsConnection, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = getattr(request, "_issued_cmms_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, [(obj, token)], "CMMS connection added")

    @admin.action(description="Issue new outcome token", permissions=["change"])
    def issue_outcome_token(self, request: HttpRequest, queryset: QuerySet[CmmsConnection]) -> HttpResponse:
        issued = []
        for connection in queryset.select_related("site"):
            token = connection.rotate_inbound_token()
            connection.save(update_fields=["inbound_token_hash", "inbound_token_hint"])
            issued.append((connection, token))
        return self._token_page(request, issued, "New CMMS outcome tokens")

    def _token_page(
        self, request: HttpRequest, issued: list[tuple[CmmsConnection, str]], title: str
    ) -> HttpResponse:
        return issued_tokens_page(
            self,
            request,
            issued,
            title=title,
            intro=mark_safe(  # a constant text with markup, no user input
                "Copy each token now and configure it in the CMMS: it sends it as <code>Authorization: Bearer"
                " &lt;token&gt;</code> with each work-order outcome (<code>POST"
                " /api/v1/work-orders/&lt;id&gt;/outcome</code>). It is shown on this page only (only its hash"
                " is kept)."
            ),
            columns=[("Site", lambda connection: connection.site), ("CMMS", lambda c: c.get_kind_display())],
            empty="No connection was selected.",
            back="Back to the CMMS connections",
        )


@admin.register(WorkOrder)
class WorkOrderAdmin(SiteScopedAdmin):
    site_path = "alert__asset__site"
    list_display = [
        "pk", "alert_id", "status", "outcome", "external_id", "trigger", "attempts", "last_error", "created_at",
        "closed_at",
    ]  # fmt: skip
    list_filter = ["status", "outcome", "trigger"]
    list_select_related = ["alert"]
    search_fields = ["external_id", "findings"]
    readonly_fields = [
        "alert", "connection", "uid", "trigger", "requested_by", "status", "external_id", "attempts",
        "last_error", "outcome", "findings", "outcome_source", "corrected", "feedback", "created_at",
        "sent_at", "closed_at",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created from the alert page or by a confirmed fault
