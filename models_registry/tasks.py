"""Celery tasks of the registry: training and retraining, on the default queue (scoring's tasks are the
alerts app's, alerts.tasks)."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.contrib.auth import get_user_model

from models_registry.retrain import execute_run
from models_registry.services import TrainingError, train_and_register
from plant.models import AssetType

logger = logging.getLogger(__name__)

# Training and retraining: acknowledged when done (a lost worker's run is delivered again), an hour at most.
TRAINING_TASK = {"acks_late": True, "ignore_result": True, "time_limit": 3600, "soft_time_limit": 3300}


@shared_task(**TRAINING_TASK)
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


@shared_task(**TRAINING_TASK)
def retrain_model_task(run_id: int) -> int | None:
    """Run a queued RetrainRun (models_registry.retrain.execute_run); returns the candidate's id, if any.

    Idempotent: the run is claimed with a compare-and-set, so a redelivery of a run that is done or being
    worked on does nothing (a run left "running" by a lost worker becomes claimable after a while).
    """
    run = execute_run(run_id)
    if run is None:
        logger.info("retrain_model_task: run %s is not claimable (done, running or gone)", run_id)
        return None
    return run.result_id
