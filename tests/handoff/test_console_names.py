"""Names the console shows for rows (breadcrumbs, titles, select boxes, messages) use words, not keys."""

from __future__ import annotations

import uuid
from datetime import time

from handoff.models import WebhookDelivery, WebhookEndpoint, WorkOrder
from notify.models import QuietHours
from plant.models import Site


def test_a_work_order_a_delivery_and_quiet_hours_are_named_in_words():
    order = WorkOrder(pk=7, alert_id=3, status="sent")
    assert str(order) == "Work order #7 for alert #3: Sent to the CMMS"
    event = uuid.uuid4()
    delivery = WebhookDelivery(
        endpoint=WebhookEndpoint(site=Site(name="North"), name="hook", url="https://hook.example/"),
        event_id=event,
        event_type="alert.verdict",
        status="retrying",
    )
    assert str(delivery).endswith(": Failed, will retry") and "retrying" not in str(delivery)
    quiet = QuietHours(site=Site(name="North"), start=time(22), end=time(6), max_severity="medium")
    assert str(quiet) == "North: 22:00–06:00 (up to medium)"
