"""The comparison page's observed follow-through is the health page's, for the same alerts: one definition
of the per-alert facts (alerts.metrics.facts), one window (VIGIL_FOLLOW_THROUGH_HOURS)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.services import record_feedback
from models_registry.services import promote
from tests.alerts.builders import make_alert
from tests.models_registry.conftest import make_version


def _health_follow_through(client) -> float:
    rows = client.get("/alerts/health/").context["report"].rows
    due = sum(row.due for row in rows)
    return sum(row.followed for row in rows) / due


def _compare_follow_through(client, challenger):
    now = timezone.localtime()
    query = {
        "start": (now - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "mode": "recorded",
    }
    response = client.get(f"/models/{challenger.pk}/compare/", query)
    return response.context["comparison"], response.content.decode()


# The false alarm got its verdict 30 h after it was shown: late for a 24 h window, in time for 48 h.
@pytest.mark.parametrize(("hours", "expected", "false_alarm_rate"), [(24, 0.5, 0.0), (48, 1.0, 1.0)])
def test_the_compare_page_and_the_health_page_report_the_same_follow_through(
    client, settings, engineer, technician, asset, hours, expected, false_alarm_rate
):
    settings.VIGIL_FOLLOW_THROUGH_HOURS = hours
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    challenger = make_version(asset.asset_type)
    quick = make_alert(asset, champion, age_min=4 * 24 * 60)
    record_feedback(quick, technician, "confirm:repaired", now=quick.opened_at + timedelta(hours=1))
    slow = make_alert(asset, champion, age_min=3 * 24 * 60)
    record_feedback(slow, technician, "false_alarm:sensor_glitch", now=slow.opened_at + timedelta(hours=30))
    make_alert(asset, champion, age_min=60)  # still inside its window: not late yet, on both pages
    client.force_login(engineer)

    comparison, html = _compare_follow_through(client, challenger)
    assert _health_follow_through(client) == expected
    assert comparison.observed["overall"] == expected
    assert f"overall {expected:.2f}" in html
    assert comparison.observed["rates"] == {"true": 1.0, "false_alarm": false_alarm_rate}
    # in words, not the rates' keys ("true 1.00, falsealarm 1.00")
    assert f"confirmed faults 1.00, false alarms {false_alarm_rate:.2f}" in html and "falsealarm" not in html
    assert f"within {hours} h" in comparison.follow_through_model


def test_a_confirmed_data_link_or_sensor_alert_counts_in_the_overall_rate_not_in_the_confirmed_faults(
    client, engineer, technician, asset
):
    # The comparison applies the "true" rate to a version's alerts on machine-fault labels: a confirmed
    # "Check the data link" alert (no label) or "Check the sensor" alert is the gate's call, not one of them.
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    challenger = make_version(asset.asset_type)
    machine = make_alert(asset, champion, age_min=4 * 24 * 60)
    record_feedback(machine, technician, "confirm:repaired", now=machine.opened_at + timedelta(hours=1))
    for category in ("data_link", "sensor_fault"):  # both answered late: 30 h after they were shown
        routed = make_alert(asset, champion, age_min=3 * 24 * 60, category=category)
        action = "confirm:sensor_replaced" if category == "sensor_fault" else "confirm:repaired"
        record_feedback(routed, technician, action, now=routed.opened_at + timedelta(hours=30))
    client.force_login(engineer)

    comparison, html = _compare_follow_through(client, challenger)
    assert _health_follow_through(client) == pytest.approx(1 / 3), "the operators answered 1 of 3 in time"
    assert comparison.observed["overall"] == pytest.approx(1 / 3)
    assert comparison.observed["rates"] == {"true": 1.0}, "was 1/3: the late link and sensor fixes"
    assert comparison.observed["counts"] == {"true": 1, "sensor_or_data_link": 2}
    assert "confirmed faults 1.00." in html and "sensor_or_data_link" not in html


def test_a_first_champion_with_real_alerts_does_not_read_as_having_none(client, engineer, technician, asset):
    """The estimate is based on the other version's real alerts; a first champion has no previous one. Its
    page read 'No real alerts in the period' beside the real alerts it raised (found in the demo)."""
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    alert = make_alert(asset, champion, age_min=4 * 24 * 60)
    record_feedback(alert, technician, "confirm:repaired", now=alert.opened_at + timedelta(hours=1))
    client.force_login(engineer)

    comparison, html = _compare_follow_through(client, champion)
    assert comparison.observed == {}
    assert "shown to operators in the period, so no follow-through" not in html
    assert (
        "There is no previous champion, so no alerts of one shown to operators to base an estimate on."
        in html
    )
