"""The fleet sweep's fast paths: a chunk of healthy assets costs a fixed number of queries, not some per
asset, and the bulk readings read gives exactly the timestamps the ORM gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert, Score
from alerts.services import ScoredWindow, apply_scores
from alerts.services.lifecycle import assets_with_active_alert
from plant.series import read_readings
from alerts.scoring import score_assets
from plant.models import Reading
from tests.conftest import T0, make_asset
from tests.scoring.conftest import START_S, fault, ingest, vibration_model

pytestmark = pytest.mark.django_db


def sweep_queries(assets) -> int:
    with CaptureQueriesContext(connection) as captured:
        score_assets([a.pk for a in assets])
    return len(captured.captured_queries)


def test_a_chunk_of_healthy_assets_costs_the_same_queries_whatever_its_size(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(6)]
    vibration_model(assets[0].asset_type)
    vibration_model(assets[0].asset_type, shadow=True, name="pump-vib-2", weight=2.0)
    for asset in assets:
        ingest(asset, START_S, 120)

    two, six = sweep_queries(assets[:2]), sweep_queries(assets[2:])

    assert Score.objects.filter(asset__in=assets).count() == 6 * 2 * len(range(30, 120, 10))
    assert six == two


def test_a_sick_asset_in_a_healthy_chunk_still_opens_its_alert(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(3)]
    champion = vibration_model(assets[0].asset_type)
    for i, asset in enumerate(assets):
        ingest(asset, START_S, 900, vibration=fault(START_S + 300, START_S + 420) if i == 1 else None)

    score_assets([a.pk for a in assets])

    assert list(Alert.objects.values_list("asset_id", "model_version_id")) == [(assets[1].pk, champion.pk)]


def test_apply_scores_skips_a_healthy_asset_of_the_chunk_without_a_query_but_updates_an_active_alert(site):
    healthy, sick = make_asset(site, tag="p-1"), make_asset(site, tag="p-2")
    champion = vibration_model(healthy.asset_type)
    ingest(sick, START_S, 900, vibration=fault(START_S + 300, START_S + 900, ramp_s=1))
    score_assets([sick.pk])
    alert = Alert.objects.get(asset=sick)
    active = assets_with_active_alert(champion, [healthy.pk, sick.pk])
    assert active == {sick.pk}
    end = T0 + timedelta(seconds=2000)
    calm = [ScoredWindow(end=end, score=7.0, x=None, flagged={})]  # between clear (5) and open (10)

    with CaptureQueriesContext(connection) as captured:
        assert apply_scores(healthy, champion, calm, with_active=active) == []
    assert len(captured.captured_queries) == 0

    Score.objects.create(asset=sick, model_version=champion, window_end=end, score=30.0)
    apply_scores(sick, champion, [ScoredWindow(end=end, score=30.0, x=None, flagged={})], with_active=active)
    alert.refresh_from_db()
    assert alert.peak_score == 30.0 and alert.last_seen_at == end


def test_the_bulk_readings_read_gives_the_orm_timestamps_exactly_sorted_by_sensor_then_time(site):
    asset = make_asset(site)
    sensors = list(asset.sensors.order_by("pk"))
    odd = [T0 + timedelta(seconds=s, microseconds=us) for s, us in [(3, 123457), (1, 999999), (2, 1)]]
    Reading.objects.bulk_create(
        [Reading(sensor=sensor, ts=ts, value=float(i), quality=i % 3) for sensor in sensors[:2] for i, ts in
         enumerate(odd)]
    )  # fmt: skip

    sid, ts, values, quality = read_readings([s.pk for s in sensors], T0, T0 + timedelta(seconds=3))

    expected = sorted(
        Reading.objects.filter(sensor__in=sensors, ts__lte=T0 + timedelta(seconds=3)).values_list(
            "sensor_id", "ts", "value", "quality"
        )
    )
    assert sid.tolist() == [row[0] for row in expected]
    assert ts.tolist() == [row[1].timestamp() for row in expected]  # bit-identical floats
    assert values.tolist() == [row[2] for row in expected]
    assert quality.tolist() == [row[3] for row in expected]
    later = read_readings(
        [s.pk for s in sensors],
        T0 + timedelta(seconds=1, microseconds=999999),
        T0 + timedelta(seconds=9),
        include_start=False,
    )
    beyond = Reading.objects.filter(sensor__in=sensors, ts__gt=odd[1]).order_by("sensor_id", "ts")
    assert later[1].tolist() == [ts.timestamp() for ts in beyond.values_list("ts", flat=True)]
