"""The compare page counts the champion's alerts once: the table's recorded alerts and the follow-through
note's "real alerts" are the same alerts, the model's own (alerts.comparison_source.version_alerts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.comparison_source import recorded_episodes

from models_registry.services import promote
from tests.alerts.builders import make_alert
from tests.models_registry.conftest import make_version


@pytest.mark.parametrize("mode", ["recorded", "backtest"])
def test_the_follow_through_note_counts_the_alerts_the_table_counts(client, engineer, asset, mode):
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    challenger = make_version(asset.asset_type)
    for days in (4, 3):
        make_alert(asset, champion, age_min=days * 24 * 60, state="resolved")
    # The sensor-fault rules' "check sensor X" alert carries the champion's version but is not its alert.
    sensor = asset.sensors.first()
    make_alert(
        asset, champion, age_min=2 * 24 * 60, kind="sensor_fault", category="sensor_fault", sensor=sensor
    )
    client.force_login(engineer)
    now = timezone.localtime()
    query = {
        "start": (now - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "mode": mode,
    }
    response = client.get(f"/models/{challenger.pk}/compare/", query)
    comparison, html = response.context["comparison"], response.content.decode()
    assert comparison.observed["alerts"] == 2, "was 3: the sensor rule's alert counted as the champion's"
    assert "Observed on the champion's 2 real alert(s)" in html
    if mode == "recorded":  # the table's count of the champion's alerts, the same two
        assert len(comparison.champion.episodes) == 2
        assert 'id="champion-alerts">2<' in html


def test_the_recorded_alerts_are_read_in_a_number_of_queries_that_does_not_grow_with_them(asset):
    # The alert level of each recorded alert reads its asset's type: without it joined, two queries an alert.
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    start, end = timezone.now() - timedelta(days=10), timezone.now() + timedelta(hours=1)
    counts = []
    for days in (6, 5, 4, 3, 2):
        make_alert(asset, champion, age_min=days * 24 * 60, state="resolved")
        fresh = type(asset).objects.get(pk=asset.pk)  # as the comparison hands them in
        with CaptureQueriesContext(connection) as queries:
            episodes = recorded_episodes(champion, [fresh], start, end, shadow=False)
        counts.append(len(queries))
        assert len(episodes) == 7 - days
    assert counts[-1] == counts[0], counts
