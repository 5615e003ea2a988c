"""Celery tasks of hand-off, on the ``outbound`` queue (settings.CELERY_TASK_ROUTES): a slow or failing
receiver holds only this queue's worker, never scoring. Each task takes an id, re-reads the row and does
nothing when there is nothing left to do, so a task run twice sends nothing twice (the receiver gets the
same Idempotency-Key in any case)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from handoff.choices import DeliveryStatus, WorkOrderStatus
from handoff.models import WebhookDelivery, WorkOrder
from handoff.webhooks import deliver, retry_delay, stale_deliveries
from handoff.work_orders import poll_outcomes, send_work_order, stale_work_orders

logger = logging.getLogger(__name__)

RETRYING = dict(
    bind=True, acks_late=True, ignore_result=True, max_retries=None, soft_time_limit=60, time_limit=90
)


@shared_task(**RETRYING)
def deliver_webhook_task(self, delivery_id: int) -> bool | None:
    """Send one webhook delivery; after a failure that left it "retrying", try again after an exponential
    backoff (``retry_delay`` of its attempts: VIGIL_WEBHOOK_BACKOFF_S doubling, capped). The row decides,
    not the task's own retry count, so a redelivery gets the full VIGIL_WEBHOOK_MAX_ATTEMPTS again."""
    ok = deliver(delivery_id)
    if ok is False:
        attempts = (
            WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.RETRYING)
            .values_list("attempts", flat=True)
            .first()
        )
        if attempts is not None:
            logger.info("webhook delivery %s failed (attempt %s); retrying", delivery_id, attempts)
            raise self.retry(countdown=retry_delay(attempts))
    return ok


@shared_task(**RETRYING)
def send_work_order_task(self, order_id: int) -> bool | None:
    """Send one work order to its CMMS; while it stays pending after a failure (fewer than
    VIGIL_CMMS_MAX_ATTEMPTS attempts), try again with the webhooks' backoff."""
    ok = send_work_order(order_id)
    if ok is False:
        attempts = (
            WorkOrder.objects.filter(pk=order_id, status=WorkOrderStatus.PENDING)
            .values_list("attempts", flat=True)
            .first()
        )
        if attempts is not None:
            raise self.retry(countdown=retry_delay(attempts))
    return ok


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def poll_work_orders_task() -> int:
    """Beat: read the outcome of the sent work orders of polled CMMSs (Odoo)."""
    return poll_outcomes()


# A delivery or work order not attempted this long after it was written lost its task.
STALE_AFTER = timedelta(minutes=5)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_outbound_task() -> int:
    """Beat: queue again the deliveries and work orders whose task was lost (broker down at commit time);
    the receiver sees the same Idempotency-Key, so a duplicate is harmless."""
    deliveries, orders = stale_deliveries(STALE_AFTER), stale_work_orders(STALE_AFTER)
    for pk in deliveries:
        deliver_webhook_task.delay(pk)
    for pk in orders:
        send_work_order_task.delay(pk)
    return len(deliveries) + len(orders)
