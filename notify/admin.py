"""Notifications in the engineering console: channels (with "send test"), routing rules, on-call shifts,
quiet hours, and the delivery log (with "send again"), all scoped to the user's sites.

A channel's Apprise URL typed in the form is stored encrypted and never rendered back, as a connection's
password (plant.connections.secrets).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from detection.wording import duration_text
from notify.choices import DeliveryStatus
from notify.delivery import redeliver, send_test
from notify.models import Channel, DeliveryAttempt, Notification, QuietHours, Rule, Shift
from notify.services import has_next_tier, queue_send
from plant.admin_scoping import ScopedTabularInline, SiteScopedAdmin
from plant.connections.secrets import encrypt


class ChannelForm(forms.ModelForm):
    url = forms.CharField(
        label="Apprise URL",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=(
            "e.g. mailtos://user:password@example.com?to=oncall@example.com, slack://…, ntfy://…, "
            "json://host/path, or vigil://&lt;site slug&gt;/&lt;box&gt; for the inbox page. Stored encrypted and never "
            "shown again; leave empty to keep the current one."
        ),
    )
    clear_url = forms.BooleanField(required=False, help_text="Remove the stored URL.")

    class Meta:
        model = Channel
        fields = ["site", "name", "url", "clear_url", "url_env", "enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        stored = self.instance.url_encrypted and not data.get("clear_url")
        if not (data.get("url") or data.get("url_env") or stored):
            raise forms.ValidationError(
                "Give the channel an Apprise URL or an environment variable naming one."
            )
        return data


@admin.register(Channel)
class ChannelAdmin(SiteScopedAdmin):
    form = ChannelForm
    list_display = ["name", "site", "enabled", "url_stored", "last_delivery"]
    list_filter = ["site", "enabled"]
    list_select_related = ["site"]
    search_fields = ["name"]
    readonly_fields = ["url_stored", "delivery_log"]
    actions = ["send_test_message"]

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = list(ChannelForm.Meta.fields)
        fields.insert(fields.index("url"), "url_stored")
        return fields + (["delivery_log"] if obj is not None else [])

    @admin.display(description="URL")
    def url_stored(self, obj: Channel) -> str:
        if obj.url_env:
            return f"read from ${obj.url_env}"
        return "stored (encrypted)" if obj.url_encrypted else "none"

    @admin.display(description="last delivery")
    def last_delivery(self, obj: Channel) -> str:
        last = obj.notifications.order_by("-created_at", "-pk").first()
        return f"{last.get_status_display()} ({last.created_at:%Y-%m-%d %H:%M})" if last else "—"

    @admin.display(description="delivery log")
    def delivery_log(self, obj: Channel) -> str:
        return format_html(
            '<a href="{}?channel__id__exact={}">{} message(s)</a>',
            reverse("admin:notify_notification_changelist"),
            obj.pk,
            obj.notifications.count(),
        )

    def save_model(self, request: HttpRequest, obj: Channel, form: Any, change: bool) -> None:
        if form.cleaned_data.get("clear_url"):
            obj.url_encrypted = ""
        elif form.cleaned_data.get("url"):
            obj.url_encrypted = encrypt(form.cleaned_data["url"])
        super().save_model(request, obj, form, change)

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset.select_related("site"):
            sent = send_test(channel)
            if sent.status == DeliveryStatus.SENT:
                self.message_user(request, f"{channel.name}: test message sent.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{channel.name}: test message failed: {sent.last_error}", messages.ERROR
                )


@admin.register(Rule)
class RuleAdmin(SiteScopedAdmin):
    list_display = [
        "name",
        "site",
        "tier",
        "min_severity",
        "category",
        "asset",
        "channel",
        "escalation",
        "enabled",
    ]
    list_filter = ["site", "tier", "min_severity", "enabled"]
    list_select_related = ["site", "asset", "channel"]
    search_fields = ["name"]

    @admin.display(description="Escalate after", ordering="escalate_after")
    def escalation(self, obj: Rule) -> str:
        return duration_text(obj.escalate_after.total_seconds()) if obj.escalate_after else "—"

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.enabled and obj.escalate_after and not has_next_tier(obj.site_id, obj.tier):
            self.message_user(
                request,
                f"{obj.site} has no enabled tier-{obj.tier + 1} rule, so nobody is told when an alert of "
                f"“{obj.name}” is still open after {duration_text(obj.escalate_after.total_seconds())}: add one (e.g. to the supervisor).",
                messages.WARNING,
            )


@admin.register(Shift)
class ShiftAdmin(SiteScopedAdmin):
    list_display = ["site", "tier", "week_days", "start", "end", "channel"]
    list_filter = ["site", "tier"]
    list_select_related = ["site", "channel"]

    @admin.display(description="Days", ordering="days")
    def week_days(self, obj: Shift) -> str:
        return obj.days_text


@admin.register(QuietHours)
class QuietHoursAdmin(SiteScopedAdmin):
    list_display = ["site", "start", "end", "max_severity"]
    list_filter = ["site"]
    list_select_related = ["site"]


class DeliveryAttemptInline(ScopedTabularInline):
    model = DeliveryAttempt
    fields = ["at", "ok", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(SiteScopedAdmin):
    """The delivery log: every message, its status, its attempts with their reasons."""

    site_path = "channel__site"
    list_display = [
        "created_at",
        "alert",
        "kind",
        "tier",
        "channel",
        "status",
        "attempts",
        "sent_at",
        "last_error",
    ]
    list_filter = ["status", "kind", "channel__site", "channel"]
    list_select_related = ["channel", "alert__asset"]
    search_fields = ["=alert__id", "title"]
    raw_id_fields = ["alert", "digest"]
    readonly_fields = [
        "alert", "channel", "kind", "tier", "status", "title", "body", "created_at", "send_after",
        "next_attempt_at", "attempts", "sent_at", "last_error", "digest",
    ]  # fmt: skip
    inlines = [DeliveryAttemptInline]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Send again (failed or not sent)", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        chosen = redeliver(list(queryset.values_list("pk", flat=True)))
        queue_send(chosen)
        self.message_user(request, f"{len(chosen)} message(s) queued again.", messages.SUCCESS)
