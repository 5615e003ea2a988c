"""A backlog longer than one run's look-back (a broker outage with fast data) is scored completely, in
bounded chunks, each window exactly once; past VIGIL_SCORING_MAX_BACKLOG_S the skipped span is a ScoringGap."""

from __future__ import annotations

import logging
from datetime import timedelta
from datetime import timezone as dt_timezone
from unittest import mock

import numpy as np
import pytest
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.timezone import localtime

from alerts.models import Alert, AlertEvent, Score
from alerts import scoring
from alerts.choices import GapReason
from alerts.models import ScoringGap
from alerts.scoring import score_assets
from alerts.tasks import score_asset_task, score_assets_task
from alerts.models import ScoringDue
from tests.conftest import make_asset, make_user
from tests.scoring.conftest import START_S, fault, ingest, vibration_model

pytestmark = pytest.mark.django_db

HOUR = 3600


def ends_of(asset, version) -> list[float]:
    rows = Score.objects.filter(asset=asset, model_version=version).order_by("window_end")
    return [end.timestamp() for end in rows.values_list("window_end", flat=True)]


def assert_each_window_once(asset, version, expected: list[float]) -> None:
    per_end = (
        Score.objects.filter(asset=asset, model_version=version)
        .values("window_end")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(per_end) == []
    assert ends_of(asset, version) == expected


def run_worker(first_asset_id: int, limit: int = 50) -> int:
    """Run score_asset_task like a worker would: every task it enqueues runs next, until none is left."""
    queue = [first_asset_id]
    runs = 0
    with mock.patch.object(score_asset_task, "delay", side_effect=queue.append):
        while queue and runs < limit:
            score_asset_task.apply(args=[queue.pop(0)])
            runs += 1
    assert not queue, f"still enqueueing after {limit} runs"
    return runs


@pytest.fixture
def read_spans(monkeypatch) -> list[float]:
    """Seconds of readings each scoring run read (the range query's width)."""
    spans: list[float] = []
    real = scoring.read_readings

    def spy(sensor_ids, begin, end, **kwargs):
        spans.append((end - begin).total_seconds())
        return real(sensor_ids, begin, end, **kwargs)

    monkeypatch.setattr(scoring, "read_readings", spy)
    return spans


def test_a_seven_hour_backlog_is_scored_completely_in_bounded_chunks_every_window_once(
    asset, settings, read_spans
):
    settings.VIGIL_SCORING_LOOKBACK_S = 6 * HOUR
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 600)
    score_assets([asset.pk])
    # The outage: 7 h of 1 Hz readings stored, no scoring task delivered.
    ingest(asset, START_S + 600, 7 * HOUR)
    read_spans.clear()

    runs = run_worker(asset.pk)

    last = START_S + 600 + 7 * HOUR - 1
    assert_each_window_once(asset, champion, [START_S + s for s in range(30, int(last - START_S) + 1, 10)])
    assert runs == 2  # 6 h, then the last hour: the task re-enqueued itself once
    # One chunk per run, plus the first window's lead-in and the sensor-fault step's context before it
    # (alerts.services.sensor_faults.readings_from: that step reads the same read).
    lead_in = 60 + settings.VIGIL_SENSOR_FAULT_SPAN_S + (settings.VIGIL_ALERT_CLEAR_WINDOWS + 1) * 10
    assert max(read_spans) <= 6 * HOUR + lead_in
    mark = ScoringDue.objects.get(asset=asset)
    assert not mark.due and mark.scored_seq == mark.seq
    assert not ScoringGap.objects.exists()


def test_a_backlog_scored_in_chunks_opens_and_closes_the_same_alerts_as_one_pass(site, settings):
    chunked, single = make_asset(site, tag="p-chunked"), make_asset(site, tag="p-single")
    champion = vibration_model(chunked.asset_type)
    settings.VIGIL_SCORING_LOOKBACK_S = 600
    # Faults that straddle the 600 s chunk boundaries of the catch-up.
    faults = [(START_S + 1150, START_S + 1290), (START_S + 2350, START_S + 2700)]

    def vibration(t: np.ndarray) -> np.ndarray:
        return sum(fault(a, b)(t) - 2.0 for a, b in faults) + 2.0

    for asset in (chunked, single):
        ingest(asset, START_S, 600)
        score_assets([asset.pk])
        ingest(asset, START_S + 600, 3600, vibration=vibration)

    assert run_worker(chunked.pk) > 5
    settings.VIGIL_SCORING_LOOKBACK_S = 6 * HOUR
    assert run_worker(single.pk) == 1

    def alerts(asset) -> list[tuple]:
        return list(
            Alert.objects.filter(asset=asset)
            .order_by("opened_at")
            .values_list(
                "state",
                "opened_at",
                "first_window_start",
                "last_seen_at",
                "peak_score",
                "peak_window_end",
                "window_count",
                "severity",
                "dominant_role",
            )
        )

    def events(asset) -> list[tuple]:
        return list(
            AlertEvent.objects.filter(alert__asset=asset)
            .order_by("alert__opened_at", "pk")
            .values_list("from_state", "to_state", "reason")
        )

    assert len(alerts(single)) == 2
    assert alerts(chunked) == alerts(single)
    assert events(chunked) == events(single)
    assert ends_of(chunked, champion) == ends_of(single, champion)


def test_a_backlog_past_the_limit_is_recorded_as_a_gap_and_the_windows_after_it_are_scored(
    asset, settings, caplog
):
    settings.VIGIL_SCORING_LOOKBACK_S = HOUR
    settings.VIGIL_SCORING_MAX_BACKLOG_S = 2 * HOUR
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 600)
    score_assets([asset.pk])
    ingest(asset, START_S + 600, 3 * HOUR)

    with caplog.at_level(logging.WARNING, logger="alerts.scoring"):
        runs = run_worker(asset.pk)

    latest = START_S + 600 + 3 * HOUR - 1  # every sensor's last reading
    limit = latest - 2 * HOUR
    gap = ScoringGap.objects.get()
    assert (gap.asset, gap.model_version, gap.reason) == (asset, champion, GapReason.BACKLOG_LIMIT)
    assert gap.start.timestamp() == START_S + 590  # the last window scored before the backlog
    assert gap.end.timestamp() == limit
    after = [START_S + s for s in range(int(limit - START_S) // 10 * 10 + 10, int(latest - START_S) + 1, 10)]
    before = [START_S + s for s in range(30, 600, 10)]
    assert_each_window_once(asset, champion, before + after)
    assert runs == 2  # the two hours after the gap, an hour per run
    assert "not scored" in caplog.text and asset.tag in caplog.text


def test_a_chunk_without_a_scorable_window_does_not_stall_the_catch_up(asset, settings):
    settings.VIGIL_SCORING_LOOKBACK_S = 900
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 600)
    score_assets([asset.pk])
    ingest(asset, START_S + 2 * HOUR, 600)  # nothing for almost two hours, then data again

    runs = run_worker(asset.pk)

    assert runs == 9  # 7 chunks across the hole, then the new data
    first = START_S + 2 * HOUR + 30
    assert ends_of(asset, champion)[-57:] == [first + 10 * i for i in range(57)]
    assert not ScoringDue.objects.get(asset=asset).due


def test_the_fleet_task_sends_the_rest_of_a_backlog_on_in_another_chunk_task(site, settings):
    settings.VIGIL_SCORING_LOOKBACK_S = 900
    assets = [make_asset(site, tag=f"p-{i}") for i in range(3)]
    champion = vibration_model(assets[0].asset_type)
    for asset in assets:
        ingest(asset, START_S, 600)
    score_assets([a.pk for a in assets])
    ingest(assets[1], START_S + 600, 1800)  # only this one has a backlog longer than a chunk
    ingest(assets[2], START_S + 600, 300)

    with mock.patch.object(score_assets_task, "delay") as delay:
        score_assets_task.apply(args=[[a.pk for a in assets]])

    assert delay.call_args_list == [mock.call([assets[1].pk])]
    assert ScoringDue.objects.get(asset=assets[1]).due
    score_assets_task.apply(args=[[assets[1].pk]])
    assert ends_of(assets[1], champion)[-1] == START_S + 2390
    assert ends_of(assets[2], champion)[-1] == START_S + 890


@pytest.fixture
def gap(asset):
    champion = vibration_model(asset.asset_type)
    end = timezone.now() - timedelta(days=1)
    return ScoringGap.objects.create(
        asset=asset,
        model_version=champion,
        start=end - timedelta(hours=30),
        end=end,
        reason=GapReason.BACKLOG_LIMIT,
    )


def test_the_asset_page_lists_its_recent_scoring_gaps(client, technician, asset, gap):
    client.force_login(technician)

    page = client.get(asset.get_absolute_url()).content.decode()

    assert 'id="scoring-gaps"' in page and f'data-gap="{gap.pk}"' in page
    assert localtime(gap.start).strftime("%Y-%m-%d %H:%M") in page


def test_the_asset_page_times_its_scoring_gaps_on_the_sites_clock(client, technician, asset, gap):
    asset.site.timezone = "Asia/Kolkata"  # +05:30: the server's UTC can never read the same
    asset.site.save(update_fields=["timezone"])
    client.force_login(technician)

    page = client.get(asset.get_absolute_url()).content.decode()

    gap_line = page.split(f'data-gap="{gap.pk}">', 1)[1].split("</li>", 1)[0]
    assert localtime(gap.start, asset.site.zone).strftime("%Y-%m-%d %H:%M") in gap_line
    assert localtime(gap.start, dt_timezone.utc).strftime("%Y-%m-%d %H:%M") not in gap_line


def test_the_chart_json_lists_the_gaps_of_its_range(client, technician, asset, gap):
    client.force_login(technician)

    inside = client.get(asset.get_absolute_url() + "chart.json", {"range": "7d"}).json()
    before = client.get(asset.get_absolute_url() + "chart.json", {"range": "6h"}).json()

    assert inside["scoring_gaps"] == [
        {
            "model_version": str(gap.model_version),
            "start": gap.start.isoformat(),
            "end": gap.end.isoformat(),
            "reason": "backlog_limit",
            "reason_label": GapReason.BACKLOG_LIMIT.label,
            "created_at": gap.created_at.isoformat(),
        }
    ]
    assert before["scoring_gaps"] == []


def test_the_health_page_counts_the_gaps_of_the_users_sites_only(client, engineer, other_site, gap):
    client.force_login(engineer)
    page = client.get(reverse("alerts:health")).content.decode()
    assert "1 span not scored" in page and f'data-gap="{gap.pk}"' in page

    other_engineer = make_user("olga", "engineer", other_site)
    client.force_login(other_engineer)
    page = client.get(reverse("alerts:health")).content.decode()
    assert 'id="scoring-gaps"' not in page
