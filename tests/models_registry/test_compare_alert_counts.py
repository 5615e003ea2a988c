"""The compare page counts the champion's alerts once: the table's recorded alerts and the follow-through
note's alerts are the model's own (alerts.comparison_source.version_alerts), and the table says how many of
its recorded alerts were shown to operators — exactly the note's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.comparison_source import recorded_episodes
from alerts.services import record_feedback

from models_registry.services import promote
from tests.alerts.builders import make_alert
from tests.models_registry.conftest import make_version
from tests.models_registry.test_compare_follow_through import _compare_follow_through


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
    assert "Observed on the champion's 2 alert(s) shown to operators" in html
    if mode == "recorded":  # the table's count of the champion's alerts, the same two
        assert len(comparison.champion.episodes) == 2
        assert 'id="champion-alerts">2<' in html and 'id="champion-shown">2<' in html


def test_a_champion_s_recorded_alerts_from_its_shadow_days_are_not_read_as_the_note_s(
    client, engineer, technician, asset
):
    """A champion's recorded alerts include those it raised in shadow before its promotion, and one held in
    a maintenance window; the follow-through note counts only those shown to operators. Both read "real
    alerts" (3 in the table, 1 in the note): the page now names what each count is and shows the shown
    ones beside the recorded ones."""
    champion = make_version(asset.asset_type)
    make_alert(asset, champion, age_min=4 * 24 * 60, state="auto_closed", is_shadow=True)  # before promotion
    promote(champion, reason="after its shadow days")
    held = make_alert(asset, champion, age_min=3 * 24 * 60, state="suppressed")  # never shown
    type(held).objects.filter(pk=held.pk).update(state="auto_closed", closed_at=held.opened_at)
    shown = make_alert(asset, champion, age_min=2 * 24 * 60)
    record_feedback(shown, technician, "confirm:repaired", now=shown.opened_at + timedelta(hours=1))
    challenger = make_version(asset.asset_type)
    client.force_login(engineer)
    comparison, html = _compare_follow_through(client, challenger)
    assert [e.shown for e in comparison.champion.episodes] == [False, False, True]
    assert comparison.champion.shown_alerts == comparison.observed["alerts"] == 1
    assert 'id="champion-alerts">3<' in html and 'id="champion-shown">1<' in html
    assert "Observed on the champion's 1 alert(s) shown to operators" in html
    assert "raised in shadow before its promotion (never shown)" in html
    assert "real alert" not in html


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
