"""Celery tasks of the alerts app (routed to the "explain" queue by settings.CELERY_TASK_ROUTES)."""

from __future__ import annotations

import logging

from celery import shared_task

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
