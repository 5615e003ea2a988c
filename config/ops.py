"""Operations endpoints for the people who run Vigil (issue 17, item 5), and the heartbeat they read.

- ``GET /healthz``: liveness — the web process answers; no dependency is asked (200 always).
- ``GET /readyz``: readiness — the database answers, Redis answers, beat ticked within
  ``VIGIL_READY_HEARTBEAT_S`` (its scheduler, :class:`HeartbeatScheduler`, stamps Redis at every tick),
  every Celery queue was served by a worker within the same limit (beat sends ``ops_heartbeat`` to each
  queue every ``VIGIL_OPS_HEARTBEAT_S``; a worker that consumes the queue records when it ran it, so a
  stale queue while beat ticks means no worker serves it, and with beat stopped every queue goes stale
  and the answer names beat), the scoring
  lag (the oldest asset waiting to be scored) and the oldest explanation still pending. 200 when every
  check passes, else 503; JSON either way, each check with ``ok`` and what it measured.

Both are unauthenticated (a load balancer asks them) and reveal no data beyond ages and counts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from alerts.choices import ExplanationStatus
from alerts.models import Alert, ScoringDue
from config.celery import app
from plant.api import api_json

HEARTBEAT_KEY = "vigil:ops:heartbeat:{queue}"  # value: "<ran at> <sent by beat at>" (epoch seconds)
BEAT_KEY = "vigil:ops:beat"  # value: when beat last ticked (epoch seconds)

logger = logging.getLogger(__name__)


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's default scheduler (the schedule file of ``--schedule``) that also stamps BEAT_KEY in
    Redis at each tick (at most once a second): /readyz tells a stopped beat from a stopped worker.
    Beat ticks at least every VIGIL_OPS_HEARTBEAT_S, the period of its ``ops-heartbeats`` entry."""

    _stamped = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.time()
        if now - self._stamped >= 1.0:
            try:
                with self.app.pool.acquire(block=True) as conn:
                    conn.default_channel.client.set(BEAT_KEY, str(now), ex=86_400)
                self._stamped = now
            except Exception as exc:  # Redis down: beat's own sends fail and retry the same way
                logger.warning("beat could not record its tick in Redis: %s", exc)
        return super().tick(*args, **kwargs)


def queues() -> list[str]:
    """The Celery queues Vigil uses (settings.CELERY_TASK_QUEUES)."""
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


@app.task(name="config.ops.ops_heartbeat", ignore_result=True)
def ops_heartbeat(queue: str, sent_at: float) -> None:
    """Run by a worker of ``queue``: record that the queue is served (and when beat sent this)."""
    with app.pool.acquire(block=True) as conn:
        client = conn.default_channel.client
        client.set(HEARTBEAT_KEY.format(queue=queue), f"{time.time()} {sent_at}", ex=86_400)


@app.task(name="config.ops.send_heartbeats_task", ignore_result=True)
def send_heartbeats_task() -> None:
    """Beat's job: one heartbeat task per queue, stamped with when beat sent it."""
    now = time.time()
    for queue in queues():
        ops_heartbeat.apply_async(args=(queue, now), queue=queue, expires=settings.VIGIL_OPS_HEARTBEAT_S * 2)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return api_json({"status": "ok"})


def _check(name: str, fn) -> dict[str, Any]:
    try:
        return {"name": name, **fn()}
    except Exception as exc:  # a dependency down is the answer here, never a 500
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _redis_and_queues() -> list[dict[str, Any]]:
    limit = settings.VIGIL_READY_HEARTBEAT_S
    checks = []
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        client = conn.default_channel.client
        client.ping()
        checks.append({"name": "redis", "ok": True})
        now = time.time()
        beat = client.get(BEAT_KEY)
        beat_age = None if beat is None else now - float(beat.decode())
        beat_ok = beat_age is not None and beat_age <= limit
        checks.append(
            {"name": "beat", "ok": beat_ok}
            | ({"ticked_s_ago": round(beat_age, 1)} if beat_age is not None else {})
            | (
                {}
                if beat_ok
                else {
                    "error": (
                        "beat has never ticked"
                        if beat_age is None
                        else f"beat has not ticked for {beat_age:.0f} s (limit {limit:g} s)"
                    )
                    + ": start exactly one `celery -A config beat` (no queue gets its heartbeat without it)"
                }
            )
        )
        for queue in queues():
            raw = client.get(HEARTBEAT_KEY.format(queue=queue))
            if raw is None:
                checks.append({"name": f"queue:{queue}", "ok": False, "error": "no worker has served it yet"})
                continue
            ran, sent = (float(part) for part in raw.decode().split())
            age = now - ran
            checks.append(
                {
                    "name": f"queue:{queue}",
                    "ok": age <= limit,
                    "served_s_ago": round(age, 1),
                    "beat_sent_s_ago": round(now - sent, 1),
                    **(
                        {}
                        if age <= limit
                        else {
                            "error": f"no worker ran its heartbeat for {age:.0f} s (limit {limit:g} s): "
                            + (
                                f"no worker serves '{queue}' (start one with -Q {queue})"
                                if beat_ok
                                else "beat is down, so no heartbeat was sent"
                            )
                        }
                    ),
                }
            )
    return checks


def _scoring_lag() -> dict[str, Any]:
    oldest = (
        ScoringDue.objects.filter(due=True).order_by("marked_at").values_list("marked_at", flat=True).first()
    )
    lag = 0.0 if oldest is None else (timezone.now() - oldest).total_seconds()
    return {"ok": lag <= settings.VIGIL_READY_MAX_SCORING_LAG_S, "oldest_due_s": round(lag, 1)}


def _explanations() -> dict[str, Any]:
    oldest = (
        Alert.objects.filter(explanation_status=ExplanationStatus.PENDING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    age = 0.0 if oldest is None else (timezone.now() - oldest).total_seconds()
    return {"ok": age <= settings.VIGIL_READY_MAX_EXPLANATION_S, "oldest_pending_s": round(age, 1)}


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    checks = [_check("database", _database)]
    try:
        checks += _redis_and_queues()
    except Exception as exc:
        checks.append({"name": "redis", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
    if checks[0]["ok"]:
        checks += [_check("scoring_lag", _scoring_lag), _check("explanations", _explanations)]
    ready = all(check["ok"] for check in checks)
    return api_json(
        {"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503
    )
