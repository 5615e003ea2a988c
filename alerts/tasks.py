"""Celery tasks of the alerts app (routed to the "explain" queue by settings.CELERY_TASK_ROUTES)."""

from __future__ import annotations

import logging

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from alerts.choices import ExplanationStatus
from alerts.models import Alert
from alerts.services import complete_explanation, mark_explanation_failed

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
    """Re-queue explanations still pending after VIGIL_EXPLANATION_SWEEP_AFTER_S.

    An alert opens "pending" when its explanation could not be computed in the scoring transaction; the
    task that completes it is queued after commit, and is lost if the broker was down at that moment. This
    beat sweep finds such alerts and queues their task again (the task is idempotent). Returns how many.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.VIGIL_EXPLANATION_SWEEP_AFTER_S)
    stale = list(
        Alert.objects.filter(explanation_status=ExplanationStatus.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:500]
    )
    for alert_id in stale:
        complete_explanation_task.delay(alert_id)
    if stale:
        logger.info("re-queued %s pending explanation(s)", len(stale))
    return len(stale)
