"""Celery tasks of the registry: training on the default queue; scoring and the due-mark sweep on the
scoring queue (routed by settings.CELERY_TASK_ROUTES)."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from models_registry.scoring import score_assets
from models_registry.services import TrainingError, train_and_register
from plant.models import AssetType
from plant.scheduling import due_asset_ids, enqueue_scoring, note_enqueued, reset_broker_backoff

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3300, ignore_result=True)
def train_model_task(
    asset_type_id: int,
    kind: str,
    start: str | None = None,
    end: str | None = None,
    name: str | None = None,
    actor_id: int | None = None,
) -> int | None:
    """Train and register a candidate; returns its id, or None when the asset type is gone or data is short.

    Re-running it after a lost worker registers another candidate, never a champion: nothing is promoted
    without a person, so at-least-once delivery is harmless.
    """
    asset_type = AssetType.objects.filter(pk=asset_type_id).first()
    if asset_type is None:
        logger.info("train_model_task: asset type %s no longer exists", asset_type_id)
        return None
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        version = train_and_register(
            asset_type,
            kind,
            start=datetime.fromisoformat(start) if start else None,
            end=datetime.fromisoformat(end) if end else None,
            name=name,
            actor=actor,
        )
    except TrainingError as exc:
        logger.warning("train_model_task: %s / %s not trained: %s", asset_type.slug, kind, exc)
        return None
    logger.info("train_model_task: registered %s (candidate)", version)
    return version.pk


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=300,
    soft_time_limit=270,
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=6,
)
def score_asset_task(asset_id: int) -> None:
    """Score the asset's new windows for every version in use (models_registry.scoring.score_assets).

    Idempotent, so a redelivery after a SIGKILL (acks_late + reject_on_worker_lost) stores and applies
    nothing twice. An asset that received data while it was scored, or whose backlog was longer than one
    run's chunk, is enqueued again.
    """

    report = score_assets([asset_id])
    if report.backlogged:
        logger.info("score_asset_task: asset %s has a backlog; scored one chunk, enqueued the rest", asset_id)
    if report.still_due:
        note_enqueued(report.still_due[: enqueue_scoring(report.still_due)])


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=600,
    soft_time_limit=570,
    autoretry_for=(Exception,),
    retry_backoff=2,
    max_retries=3,
)
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


@shared_task(ignore_result=True, time_limit=120, soft_time_limit=110)
def sweep_due_assets_task() -> int:
    """Enqueue scoring for assets due for a while without a recent task (lost while Redis was down, or
    a worker died with it). Beat runs it every 30 s with `expires`, so a backlog of sweeps never piles up."""

    ids = due_asset_ids(settings.VIGIL_SCORING_SWEEP_AGE_S, settings.VIGIL_SCORING_SWEEP_LIMIT)
    if not ids:
        return 0
    reset_broker_backoff()
    sent = enqueue_scoring(ids)
    note_enqueued(ids[:sent])
    if sent:
        logger.info("sweep_due_assets_task: enqueued scoring for %d missed asset(s)", sent)
    return sent


@shared_task(acks_late=True, ignore_result=True, time_limit=3600, soft_time_limit=3300)
def retrain_model_task(run_id: int) -> int | None:
    """Run a queued RetrainRun (models_registry.retrain.execute_run); returns the candidate's id, if any.

    Idempotent: the run is claimed with a compare-and-set, so a redelivery of a run that is done or being
    worked on does nothing (a run left "running" by a lost worker becomes claimable after a while).
    """
    from models_registry.retrain import execute_run

    run = execute_run(run_id)
    if run is None:
        logger.info("retrain_model_task: run %s is not claimable (done, running or gone)", run_id)
        return None
    return run.result_id
