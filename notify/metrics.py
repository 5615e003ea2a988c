"""Notification metrics for the alert health page: time from a message to the first human answer per
channel, and escalations per period. Computed from the delivery log and the alert events (rows, never
counters), over the page's sites and dates."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from alerts.health_views import delay_text
from alerts.metrics import MetricsQuery
from alerts.metrics.params import period_label
from alerts.metrics.rows import median
from alerts.models import AlertEvent
from notify.choices import ALERT_MESSAGES, DeliveryStatus, MessageKind
from notify.models import Channel, Notification

ANSWERED = ("acknowledged", "snoozed", "resolved")
NOT_ANSWERED = "no message answered yet"


@dataclass
class ChannelRow:
    channel: Channel
    sent: int = 0
    failed: int = 0
    answered: int = 0
    median_s: float | None = None
    mean_s: float | None = None


def alert_messages(site_ids: list[int], query: MetricsQuery) -> list[Notification]:
    """The alert messages (opened, escalated, got worse) of the page's sites and dates (one statement)."""
    window = Q(channel__site_id__in=site_ids if query.site is None else [query.site.pk])
    if query.since():
        window &= Q(created_at__gte=query.since())
    if query.until():
        window &= Q(created_at__lt=query.until())
    return list(
        Notification.objects.filter(window, kind__in=ALERT_MESSAGES)
        .select_related("channel__site")
        .order_by("channel_id", "pk")
    )


def channel_rows(messages: list[Notification]) -> list[ChannelRow]:
    """Per channel: alert messages sent, how many were answered by a person after they went out
    (acknowledged, snoozed or given a verdict: the first event with a person as actor), and the median
    and mean time from the message to that answer."""
    answers: dict[int, list[Any]] = {}
    sent_alerts = {m.alert_id for m in messages if m.sent_at is not None}
    if sent_alerts:
        for alert_id, at in (
            AlertEvent.objects.filter(alert_id__in=sent_alerts, actor__isnull=False, to_state__in=ANSWERED)
            .order_by("at")
            .values_list("alert_id", "at")
        ):
            answers.setdefault(alert_id, []).append(at)
    rows: dict[int, ChannelRow] = {}
    waits: dict[int, list[float]] = {}
    for message in messages:
        row = rows.setdefault(message.channel_id, ChannelRow(message.channel))
        if message.status == DeliveryStatus.FAILED:
            row.failed += 1
        if message.sent_at is None:
            continue
        row.sent += 1
        after = [at for at in answers.get(message.alert_id, []) if at >= message.sent_at]
        if after:
            row.answered += 1
            waits.setdefault(message.channel_id, []).append((after[0] - message.sent_at).total_seconds())
    for pk, values in waits.items():
        rows[pk].median_s = median(values)
        rows[pk].mean_s = sum(values) / len(values)
    return sorted(rows.values(), key=lambda r: (r.channel.site.name, r.channel.name))


def escalations_by_period(messages: list[Notification], period: str) -> list[tuple[str, int]]:
    """Escalations (alert × tier reached, however many channels were told) per period, newest first."""
    seen: dict[tuple[int, int], Any] = {}
    for message in messages:
        if message.kind == MessageKind.ESCALATED:
            key = (message.alert_id, message.tier)
            seen[key] = min(message.created_at, seen.get(key, message.created_at))
    counts = Counter(period_label(at, period) for at in seen.values())
    return sorted(counts.items(), reverse=True)


def health_section(request: HttpRequest, site_ids: list[int], query: MetricsQuery) -> SafeString:
    """The notifications section of the alert health page (handed to alerts in NotifyConfig.ready)."""
    messages = alert_messages(site_ids, query)
    rows = channel_rows(messages)
    return render_to_string(
        "notify/_health.html",
        {
            "rows": [
                (
                    row,
                    delay_text(row.median_s, row.answered, "median", NOT_ANSWERED),
                    delay_text(row.mean_s, row.answered, "mean", NOT_ANSWERED),
                )
                for row in rows
            ],
            "escalations": escalations_by_period(messages, query.period),
            "query_period": query.period,
        },
        request,
    )
