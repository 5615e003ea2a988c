"""Celery tasks of the notifications, all on the ``notify`` queue: one send per message, and the beat
sweep (escalations due, quiet hours over, flood digests, sends whose task was lost)."""

from __future__ import annotations

from celery import shared_task

from notify.delivery import lost_sends, send_notification
from notify.services import escalate_due, provide_sender, release_held, reroute_worse, send_digests


# Queues are routed in settings (CELERY_TASK_ROUTES: "notify"), as every Vigil task's.
@shared_task(acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90, max_retries=0)
def send_notification_task(notification_id: int) -> None:
    """Send one message; a failed try queues the next one after its backoff (the sweep catches a lost one)."""
    pause = send_notification(notification_id)
    if pause is not None:
        send_notification_task.apply_async((notification_id,), countdown=pause)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=120, time_limit=180)
def sweep_notifications_task() -> dict[str, int]:
    """Beat's job: route again alerts that got worse, escalate, release held messages, send digests,
    re-queue lost sends (idempotent: each step claims its rows by compare-and-set)."""
    worse = reroute_worse()
    escalated = escalate_due()
    released = release_held()
    digests = send_digests()
    lost = lost_sends()
    for pk in lost:
        send_notification_task.delay(pk)
    return {
        "worse": len(worse),
        "escalated": len(escalated),
        "released": len(released),
        "digests": len(digests),
        "lost": len(lost),
    }


def queue_notification(notification_id: int) -> None:
    send_notification_task.delay(notification_id)


provide_sender(queue_notification)
