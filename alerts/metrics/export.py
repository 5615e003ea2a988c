"""CSV out: the metric rows (same numbers as the JSON API) and the per-alert export, streamed in chunks.

The alert export pages through the alerts by primary key (keyset, ``EXPORT_CHUNK`` rows a query), so a
large export holds one chunk in memory, on any database and under WSGI or ASGI alike.

CSV injection (OWASP): every text cell that starts with ``= + - @``, a tab or a carriage return is written
with a leading ``'`` so a spreadsheet shows it as text instead of running it as a formula; names, tags and
labels are typed by users. Cells the app writes from numbers, booleans and times stay as they are, so a
negative count or a time stays a number for the spreadsheet (they are never a formula: ``-3`` or
``2026-09-01T00:00:00+00:00`` cannot call anything). Every CSV Vigil writes for people goes through
``cell``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from asgiref.sync import sync_to_async

from alerts.choices import AlertState, FalseAlarmReason
from alerts.models import Alert
from alerts.metrics.params import MetricsQuery
from alerts.metrics.facts import alert_facts
from alerts.metrics.queries import in_range
from alerts.metrics.rows import API_FIELDS, MetricsRow

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_CHUNK = 2000
EXPORT_COLUMNS = (
    "id",
    "site",
    "asset",
    "model_version",
    "opened_at",
    "first_ack_at",
    "verdict",
    "verdict_at",
    "reason",
    "action",
    "closed_at",
    "auto_closed",
    "suppressed",
)
REASON_COLUMNS = tuple(f"false_alarms_{reason}" for reason in FalseAlarmReason.values)


def cell(value: Any) -> str:
    """CSV text of a value: empty for None, ISO 8601 (UTC) for times, repr-exact numbers, and text that a
    spreadsheet would read as a formula prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _lines(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def metrics_csv(rows: Sequence[MetricsRow]) -> str:
    """The API's rows as CSV: its columns, then one count column per false-alarm reason."""
    header = [*API_FIELDS, *REASON_COLUMNS]
    body = [
        [
            *(getattr(row, name) for name in API_FIELDS),
            *(row.false_alarms_by_reason.get(r, 0) for r in FalseAlarmReason.values),
        ]
        for row in rows
    ]
    return _lines([header, *body])


def export_alerts(site_ids: Collection[int], query: MetricsQuery) -> Iterator[str]:
    """The header, then one CSV block per chunk of alerts (every visible alert of the query's range and
    site, suppressed ones included and flagged), oldest id first."""
    yield _lines([EXPORT_COLUMNS])
    alerts = in_range(
        Alert.objects.filter(is_shadow=False, asset__site_id__in=list(site_ids)), query, "opened_at"
    )
    last = 0
    while True:
        chunk = alert_facts(
            alerts.filter(pk__gt=last).order_by("pk")[:EXPORT_CHUNK], shown_only=False, order_by="id"
        )
        if not chunk:
            return
        last = chunk[-1].pk
        yield _lines(
            (a.pk, a.site_slug, a.asset_tag, a.model_label, a.opened_at, a.first_human_at, a.verdict,
             a.verdict_at, a.verdict_reason or None, a.verdict_action or None, a.closed_at,
             a.state == AlertState.AUTO_CLOSED, a.suppressed)
            for a in chunk
        )  # fmt: skip


async def aiter_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    """The same chunks for an ASGI server: each query runs in the sync thread, the loop stays free."""
    done = object()
    while (part := await sync_to_async(next)(chunks, done)) is not done:
        yield part
