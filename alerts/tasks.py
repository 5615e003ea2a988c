"""Celery tasks of the alerts app: scoring and the due-mark sweep on the "scoring" queue, explanations on
the "explain" queue (routed by settings.CELERY_TASK_ROUTES); and the ingest hook that marks assets due and
wakes their scoring (readings_stored, registered in AlertsConfig.ready())."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from alerts.choices import ExplanationStatus
from alerts.metrics.closed import refresh_closed_periods
from alerts.models import Alert, EdgeEvent
from alerts.scheduling import (
    due_asset_ids,
    enqueue_after_commit,
    enqueue_scoring,
    mark_due,
    note_enqueued,
    reset_broker_backoff,
)
from alerts.scoring import score_assets
from alerts.services import complete_explanation, mark_explanation_failed, readings_arrived
from plant.edge_agents import oldest_accepted
from plant.models import EdgeAgent

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=180,
)
def complete_explanation_task(self, alert_id: int) -> str | None:
    """Attach the explanation of a pending alert's opening window, rebuilt from its readings.

    Idempotent: an alert that is gone or no longer pending is left alone. Errors are retried with backoff;
    after the last retry the alert is marked "explanation failed".
    """
    try:
        return complete_explanation(alert_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            mark_explanation_failed(alert_id, f"{type(exc).__name__}: {exc}")
            return "failed"
        logger.info("alert #%s: explanation attempt %s failed: %s", alert_id, self.request.retries + 1, exc)
        raise


@shared_task(ignore_result=True)
def sweep_pending_explanations_task() -> int:
    """Re-queue explanations still pending after VIGIL_EXPLANATION_SWEEP_AFTER_S, and those of edge alerts
    awaiting readings that have arrived since, whose agent has reported since they were last looked at that
    it holds nothing from before the decision, or that are older than the server accepts readings.

    An alert opens "pending" when its explanation could not be computed in the scoring transaction; the
    task that completes it is queued after commit, and is lost if the broker was down at that moment. An
    edge alert "awaiting" its window's readings is explained by the scorer when it scores that window; this
    covers a window the scorer never scores (older than its backlog limit) or failed to explain there (the
    task then retries, and fails for good if the model does), and readings that will never come (the task
    marks them lost: ``alerts.services.edge_readings``). The task is idempotent. Returns how many.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.VIGIL_EXPLANATION_SWEEP_AFTER_S)
    pending = Alert.objects.filter(explanation_status=ExplanationStatus.PENDING, created_at__lt=cutoff)
    # The tests are correlated subqueries: asked of the few awaiting alerts only, not of every alert. A
    # report of the agent after the alert's last look (the task stamps updated_at) that says it sent
    # everything up to the decision: only such a report can change what the task finds. One that says it
    # still holds older readings (a backlog after an outage, reported every heartbeat) changes nothing, and
    # re-queueing on it would re-run every such alert each sweep and fill the sweep's 500 with them.
    reported = EdgeEvent.objects.filter(
        EdgeAgent.sent_up_to(
            OuterRef("opened_at"), reported_after=OuterRef("updated_at"), path="gateway__edge_agent__"
        ),
        alert=OuterRef("pk"),
    )
    awaiting = Alert.objects.filter(
        explanation_status=ExplanationStatus.AWAITING, created_at__lt=cutoff
    ).filter(readings_arrived() | Exists(reported) | Q(opened_at__lt=oldest_accepted(now)))
    stale = list(pending.order_by("created_at").values_list("pk", flat=True)[:500])
    stale += list(awaiting.order_by("created_at").values_list("pk", flat=True)[: 500 - len(stale)])

    for alert_id in stale:
        complete_explanation_task.delay(alert_id)
    if stale:
        logger.info("re-queued %s pending explanation(s)", len(stale))
    return len(stale)


# Scoring tasks are idempotent: a lost worker's task is delivered again (acks_late + reject_on_worker_lost),
# and a failed one is retried with exponential backoff.
SCORING_DELIVERY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
}


@shared_task(**SCORING_DELIVERY, time_limit=300, soft_time_limit=270, retry_backoff_max=60, max_retries=6)
def score_asset_task(asset_id: int) -> None:
    """Score the asset's new windows for every version in use (alerts.scoring.score_assets).

    Idempotent, so a redelivery after a SIGKILL (acks_late + reject_on_worker_lost) stores and applies
    nothing twice. An asset that received data while it was scored, or whose backlog was longer than one
    run's chunk, is enqueued again.
    """

    report = score_assets([asset_id])
    if report.backlogged:
        logger.info("score_asset_task: asset %s has a backlog; scored one chunk, enqueued the rest", asset_id)
    if report.still_due:
        note_enqueued(report.still_due[: enqueue_scoring(report.still_due, send_scoring)])


@shared_task(**SCORING_DELIVERY, time_limit=600, soft_time_limit=570, max_retries=3)
def score_assets_task(asset_ids: list[int]) -> None:
    """score_asset_task for a chunk of assets in one run: one readings query, one onnxruntime batch per
    version. Used for fleet-wide catch-up (the scoring benchmark), where per-asset overhead dominates.
    Assets with a backlog longer than one run's chunk are sent on in another such task (their due marks
    stay set, so the sweep covers a lost one)."""

    report = score_assets(asset_ids)
    if report.backlogged and settings.VIGIL_SCORING_ENQUEUE is not False:
        try:
            score_assets_task.delay(report.backlogged)
        except Exception as exc:  # kombu/redis raise many types; the marks wait for the sweep
            logger.warning("score_assets_task: could not enqueue the backlog's next chunk: %s", exc)
        else:
            note_enqueued(report.backlogged)


@shared_task(ignore_result=True, time_limit=600, soft_time_limit=570)
def refresh_closed_metrics_task() -> dict[str, int]:
    """Store the metrics of every closed period not stored yet or marked dirty by a late verdict (beat,
    ``VIGIL_METRICS_REFRESH_S``), so the health page and the metrics API read them instead of counting
    every alert again (alerts.metrics.closed); how many months and weeks were counted."""
    return refresh_closed_periods()


@shared_task(ignore_result=True, time_limit=120, soft_time_limit=110)
def sweep_due_assets_task() -> int:
    """Enqueue scoring for assets due for a while without a recent task (lost while Redis was down, or
    a worker died with it). Beat runs it every 30 s with `expires`, so a backlog of sweeps never piles up."""

    ids = due_asset_ids(settings.VIGIL_SCORING_SWEEP_AGE_S, settings.VIGIL_SCORING_SWEEP_LIMIT)
    if not ids:
        return 0
    reset_broker_backoff()
    sent = enqueue_scoring(ids, send_scoring)
    note_enqueued(ids[:sent])
    if sent:
        logger.info("sweep_due_assets_task: enqueued scoring for %d missed asset(s)", sent)
    return sent


def send_scoring(asset_id: int) -> None:
    """Send one asset's scoring task (`.delay` is looked up at each call, so tests can patch it)."""
    score_asset_task.delay(asset_id)


def readings_stored(asset_ids: list[int], wake: bool) -> None:
    """plant's ingest hook (plant.ingest.hooks): mark the assets due in the ingest's transaction and,
    unless `wake` is False (a bulk load), enqueue the woken assets' scoring once it commits."""
    woken = mark_due(asset_ids)
    if wake:
        enqueue_after_commit(woken, send_scoring)
