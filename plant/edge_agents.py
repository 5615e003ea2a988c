"""Edge agents as the server sees them: heartbeats (queue depth, oldest unsent item, drops, models in use).

An agent posts ``POST /api/v1/edge/heartbeat`` with its gateway's token (plant.api): one ``EdgeAgent`` row
per gateway keeps the latest report, and each drop the agent reports becomes an ``EdgeDrop`` row (at most
once: the agent resends drops it has not seen acknowledged). ``edge_time`` is the one check of an agent's
epoch timestamps, used by the alert events endpoint too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from plant.ingest.service import accepted_age_s
from plant.models import EdgeAgent, EdgeDrop, Gateway


class EdgeReportError(ValueError):
    """A field of an agent's report that is missing or wrong; the message names it."""


def edge_time(value: Any, name: str, now: datetime | None = None) -> datetime:
    """An agent's epoch-seconds timestamp as an aware datetime; EdgeReportError unless it is a finite
    number within VIGIL_INGEST_MAX_AGE_DAYS back and VIGIL_INGEST_MAX_FUTURE_S ahead of the server's clock."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EdgeReportError(f"{name} must be epoch seconds (a finite number), got {str(value)[:40]!r}")
    now = now or timezone.now()
    try:
        moment = datetime.fromtimestamp(float(value), tz=dt_timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise EdgeReportError(f"{name} {value!r} is not a representable time") from None
    if moment > now + timedelta(seconds=settings.VIGIL_INGEST_MAX_FUTURE_S):
        raise EdgeReportError(f"{name} {moment.isoformat()} is in the future (server time {now.isoformat()})")
    # The ingest's own bound (VIGIL_INGEST_MAX_AGE_DAYS): an edge time is accepted exactly when its readings are.
    if moment < oldest_accepted(now):
        raise EdgeReportError(
            f"{name} {moment.isoformat()} is more than {settings.VIGIL_INGEST_MAX_AGE_DAYS} days old"
        )
    return moment


def oldest_accepted(now: datetime) -> datetime:
    """The oldest time a gateway's reading (or an agent's report) is still accepted at ``now``: the ingest's
    limit (``plant.ingest.service.accepted_age_s``) back. A reading timed before it can never reach the server
    any more."""
    return now - timedelta(seconds=accepted_age_s())


def check_storable(value: Any, name: str) -> Any:
    """``value`` (a parsed JSON value) unchanged; EdgeReportError naming the field when a string in it, a key
    or a value at any depth, holds a NUL character: PostgreSQL stores none in text nor in jsonb (a 500).
    Every edge report is checked before any of it is written; a walk, not recursion, for deep nesting."""
    stack: list[tuple[str, Any]] = [(name, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise EdgeReportError(f"{where} contains a NUL character")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    raise EdgeReportError(f"{where} has a key with a NUL character: {key[:40]!r}")
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return value


def _count(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EdgeReportError(f"queue.{name} must be a non-negative integer")
    return value


def record_heartbeat(gateway: Gateway, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Store an agent's heartbeat; returns what was recorded. EdgeReportError names a wrong field (nothing
    is stored then: a heartbeat is small and the agent sends the next one soon)."""
    check_storable(payload, "heartbeat")
    now = timezone.now()
    queue = payload.get("queue") or {}
    if not isinstance(queue, Mapping):
        raise EdgeReportError("queue must be an object")
    models_in_use = payload.get("models") or {}
    if not isinstance(models_in_use, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 100 and len(v) <= 64
        for k, v in models_in_use.items()
    ):
        raise EdgeReportError("models must map asset tags to model sha256 strings")
    oldest = queue.get("oldest_ts")
    fields = {
        "agent_version": str(payload.get("agent_version") or "")[:40],
        "last_contact_at": now,
        "models_in_use": dict(models_in_use),
        "queue_readings": _count(queue, "readings"),
        "queue_events": _count(queue, "events"),
        "oldest_unsent_at": None if oldest is None else edge_time(oldest, "queue.oldest_ts", now),
        "queue_bytes": _count(queue, "bytes_used"),
        "queue_max_bytes": _count(queue, "max_bytes"),
        "dropped_total": _count(queue, "dropped_total"),
        "local_alerts_24h": _count(payload, "local_alerts_24h"),
    }
    drops = payload.get("drops") or []
    if not isinstance(drops, list) or len(drops) > 10_000:
        raise EdgeReportError("drops must be a list (at most 10000)")
    rows = []
    for i, drop in enumerate(drops):
        if not isinstance(drop, Mapping):
            raise EdgeReportError(f"drops[{i}] must be an object")
        count = drop.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise EdgeReportError(f"drops[{i}].count must be a positive integer")
        rows.append(
            EdgeDrop(
                gateway=gateway,
                at=edge_time(drop.get("at"), f"drops[{i}].at", now),
                count=count,
                first_ts=edge_time(drop.get("first_ts"), f"drops[{i}].first_ts", now),
                last_ts=edge_time(drop.get("last_ts"), f"drops[{i}].last_ts", now),
            )
        )
    with transaction.atomic():
        EdgeAgent.objects.update_or_create(gateway=gateway, defaults=fields)
        EdgeDrop.objects.bulk_create(rows, ignore_conflicts=True)
        Gateway.objects.filter(pk=gateway.pk).update(last_seen_at=now)
    return {"recorded": True, "drops": len(rows)}
