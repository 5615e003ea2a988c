"""Due marks: which assets have readings that no scorer has looked at yet.

Ingestion (plant.ingest, below alerts) reports the assets it stored readings for through the hook
alerts.tasks.readings_stored, registered in AlertsConfig.ready(); it calls `mark_due(asset_ids)` inside
the transaction that stored the readings: the marks commit or roll back with the readings, so "stored but
never scored" cannot happen. After the commit, scoring tasks are enqueued for the assets that need one.
Celery is only a wake-up call: when Redis is down the enqueue fails, is logged, and the marks stay in the
database for `sweep_due_assets_task` to pick up.

Enqueue throttling (no task per batch per asset): an asset gets a task when it becomes due, or when it is
already due but its last task was sent more than `VIGIL_SCORING_REENQUEUE_S` ago (that task may have been
lost). A gateway posting every second therefore costs one task per asset per scoring run, not one per
batch: a scorer that finds the mark moved while it worked enqueues the follow-up itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.models import ScoringDue

logger = logging.getLogger(__name__)

# After a failed publish, skip enqueue attempts for a while: ingestion must stay fast while Redis is down.
_broker_down_until = 0.0
_publisher: ThreadPoolExecutor | None = None
_publisher_lock = threading.Lock()
# Sends one scoring task for an asset id: passed in by alerts.tasks, which defines the task and itself
# needs enqueue_scoring (so this module cannot import it).
Send = Callable[[int], object]
_MARK_CHUNK = 1000


def mark_due(asset_ids: Iterable[int]) -> list[int]:
    """Mark the assets due (call inside the ingest transaction); returns the ids that need a task.

    One `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` whatever the number of assets (PostgreSQL and
    SQLite alike): a missing row is created due and woken; an existing one gets its seq bumped
    (compare-and-set for the scorers), keeps the time it first became due, and is woken when it was not
    due or its last task is older than VIGIL_SCORING_REENQUEUE_S. Each row is read and written under its
    lock, so two concurrent batches cannot both wake the same asset.
    """
    ids = sorted({int(asset_id) for asset_id in asset_ids})
    if not ids:
        return []
    adapt = connection.ops.adapt_datetimefield_value
    moment = timezone.now()
    now, cutoff = adapt(moment), adapt(moment - timedelta(seconds=settings.VIGIL_SCORING_REENQUEUE_S))
    wake: list[int] = []
    with connection.cursor() as cursor:
        # Chunks keep SQLite under its bound-variable limit; ascending ids keep the row-lock order fixed.
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = ids[start : start + _MARK_CHUNK]
            params = [value for asset_id in chunk for value in (asset_id, now, now)]
            cursor.execute(_mark_due_sql(len(chunk)), [*params, cutoff, now])
            # A woken row is the only one whose enqueued_at is this call's `now` (new rows are woken too).
            wake.extend(asset_id for asset_id, woken in cursor.fetchall() if woken)
    return sorted(wake)


def _mark_due_sql(n: int) -> str:
    meta = ScoringDue._meta
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    asset, seq, due, marked_at, enqueued_at, scored_seq = (
        qn(meta.get_field(name).column)
        for name in ("asset", "seq", "due", "marked_at", "enqueued_at", "scored_seq")
    )
    rows = ", ".join(["(%s, 1, TRUE, %s, %s, 0)"] * n)
    return (
        f"INSERT INTO {table} AS t ({asset}, {seq}, {due}, {marked_at}, {enqueued_at}, {scored_seq})"
        f" VALUES {rows} ON CONFLICT ({asset}) DO UPDATE SET"
        f" {seq} = t.{seq} + 1, {due} = TRUE,"
        f" {marked_at} = CASE WHEN t.{due} THEN t.{marked_at} ELSE EXCLUDED.{marked_at} END,"
        f" {enqueued_at} = CASE WHEN NOT t.{due} OR t.{enqueued_at} IS NULL OR t.{enqueued_at} < %s"
        f" THEN EXCLUDED.{enqueued_at} ELSE t.{enqueued_at} END"
        f" RETURNING {asset}, {enqueued_at} = %s"
    )


def enqueue_after_commit(asset_ids: list[int], send: Send) -> None:
    """Enqueue the assets' scoring tasks once the current transaction commits (none if it rolls back)."""
    if asset_ids:
        transaction.on_commit(lambda: _enqueue_soon(asset_ids, send))


def _enqueue_soon(asset_ids: list[int], send: Send) -> None:
    # With Redis down a publish blocks for its connect timeout and one retry (~2 s): off the request
    # thread, a gateway's POST never waits for the broker. One thread keeps publishes in order.
    if not settings.VIGIL_SCORING_ENQUEUE_IN_BACKGROUND:
        enqueue_scoring(asset_ids, send)
        return
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-enqueue")
    _publisher.submit(enqueue_scoring, asset_ids, send)


def wait_for_enqueues(timeout: float = 10.0) -> None:
    """Block until every background publish submitted so far has run (tests, orderly shutdown)."""
    if _publisher is not None:
        _publisher.submit(lambda: None).result(timeout=timeout)


def enqueue_scoring(asset_ids: Iterable[int], send: Send) -> int:
    """Send one scoring task per asset with `send`; returns how many were sent. Never raises: a broker
    outage is logged and left to the sweep, since the marks are already committed."""
    global _broker_down_until
    ids = list(asset_ids)
    if not ids or settings.VIGIL_SCORING_ENQUEUE is False:
        return 0
    if time.monotonic() < _broker_down_until:
        return 0
    sent = 0
    try:
        for asset_id in ids:
            send(asset_id)
            sent += 1
    except Exception as exc:  # kombu/redis raise many types; none of them may fail an ingest
        _broker_down_until = time.monotonic() + settings.VIGIL_SCORING_BROKER_BACKOFF_S
        logger.warning(
            "could not enqueue scoring for %d asset(s) (%s: %s); the due marks stay for the sweep",
            len(ids) - sent,
            type(exc).__name__,
            str(exc)[:200],
        )
    return sent


def reset_broker_backoff() -> None:
    """Forget a recorded broker outage (tests, and the sweep once it has published successfully)."""
    global _broker_down_until
    _broker_down_until = 0.0


def due_asset_ids(older_than_s: float, limit: int) -> list[int]:
    """Assets due for longer than `older_than_s` whose last task (if any) is that old too: the missed ones."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        ScoringDue.objects.filter(due=True, marked_at__lt=cutoff)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff))
        .order_by("marked_at")
        .values_list("asset_id", flat=True)[:limit]
    )


def note_enqueued(asset_ids: list[int]) -> None:
    """Record that the assets' scoring tasks were just sent (the throttle and the sweep read it)."""
    if asset_ids:
        ScoringDue.objects.filter(asset_id__in=asset_ids).update(enqueued_at=timezone.now())
