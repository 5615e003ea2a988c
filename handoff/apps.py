from __future__ import annotations

from django.apps import AppConfig


class HandoffConfig(AppConfig):
    """Signed webhooks and work orders to a CMMS: the layer above alerts (it reads alert events and writes
    verdicts through alerts' feedback service; alerts knows nothing of it but the page sections handed in here)."""

    name = "handoff"
    verbose_name = "Hand-off (webhooks, work orders)"

    def ready(self) -> None:
        from alerts.health_views import provide_health_section
        from alerts.services.board import provide_card_actions
        from alerts.views import provide_alert_section
        from handoff import dispatch, panels
        from handoff.openapi import handoff_part
        from handoff.tasks import deliver_webhook_task, send_work_order_task
        from handoff.work_orders import provide_sender
        from plant.openapi import provide_openapi_part

        # Looked up at call time: tests replace the tasks' delay.
        dispatch.provide_deliverer(lambda pk: deliver_webhook_task.delay(pk))
        provide_sender(
            lambda pk, after_s: send_work_order_task.apply_async((pk,), countdown=after_s)
            if after_s
            else send_work_order_task.delay(pk)
        )
        dispatch.connect()
        provide_openapi_part(handoff_part)
        provide_alert_section(panels.alert_section, place="after_verdict")
        provide_health_section(panels.health_section)
        provide_card_actions(panels.card_actions)
