"""Noise-control bits shown on other pages: the engineers' suggestion count on the board and the
"sensor under calibration" note on alert cards."""

from __future__ import annotations

from typing import Any

from django import template

from alerts.choices import AlertCategory
from alerts.models import Alert
from alerts.services.noise import noise_keys, under_calibration_roles
from plant.access import is_engineer, site_ids_for_user

register = template.Library()


@register.simple_tag(takes_context=True)
def noise_suggestion_count(context: template.Context) -> int:
    """How many noise groups the engineer's sites have (0 for anyone else): one aggregate query."""
    request = context.get("request")
    user = getattr(request, "user", None)
    # is_engineer's answer is kept on the user: the nav bar has already paid its query on this page.
    if user is None or not is_engineer(user):
        return 0
    return len(noise_keys(site_ids_for_user(user)))


@register.simple_tag(takes_context=True)
def under_calibration(context: template.Context, alert: Alert) -> bool:
    """Whether the alert's dominant sensor is marked for calibration. Only sensor issues can be (the
    lifecycle files them so), so machine-fault cards cost nothing; on the board the answer for every
    sensor-issue card is worked out with the first one, in one query, and kept on the alerts."""
    if alert.category != AlertCategory.SENSOR_FAULT or not alert.dominant_role:
        return False
    if not hasattr(alert, "_under_calibration"):
        batch: list[Any] = [
            a
            for a in context.get("alerts") or []
            if isinstance(a, Alert) and a.category == AlertCategory.SENSOR_FAULT
        ]
        if alert not in batch:
            batch.append(alert)
        marked = under_calibration_roles(batch)
        for item in [*batch, alert]:
            item._under_calibration = (item.asset_id, item.dominant_role) in marked
    return alert._under_calibration
