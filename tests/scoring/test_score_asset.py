"""score_asset_task: every complete window since the last stored one, for champion and shadows, once."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from alerts.models import Alert, AlertEvent, Score
from alerts.scoring import score_assets
from alerts.tasks import score_asset_task
from alerts.models import ScoringDue
from tests.conftest import T0
from tests.scoring.conftest import START_S, fault, ingest, vibration_model

pytestmark = pytest.mark.django_db


def ends_of(asset, version) -> list[float]:
    return [
        end.timestamp()
        for end in Score.objects.filter(asset=asset, model_version=version)
        .order_by("window_end")
        .values_list("window_end", flat=True)
    ]


def test_it_stores_one_score_per_complete_window_for_the_champion_and_every_shadow(asset):
    champion = vibration_model(asset.asset_type)
    shadow = vibration_model(asset.asset_type, shadow=True, name="pump-vib-2", weight=2.0)
    ingest(asset, START_S, 600)

    report = score_assets([asset.pk])

    expected = [START_S + s for s in range(30, 600, 10)]  # half-covered first window, then every 10 s
    assert ends_of(asset, champion) == expected
    assert ends_of(asset, shadow) == expected
    assert report.stored == {champion.pk: len(expected), shadow.pk: len(expected)}
    champion_scores = np.array(
        Score.objects.filter(model_version=champion).order_by("window_end").values_list("score", flat=True)
    )
    shadow_scores = np.array(
        Score.objects.filter(model_version=shadow).order_by("window_end").values_list("score", flat=True)
    )
    assert np.allclose(champion_scores, 2.0, atol=0.1)
    assert np.allclose(shadow_scores, 2 * champion_scores, rtol=1e-5)


def test_the_next_run_continues_after_the_last_stored_window_with_no_gap(asset):
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 600)
    score_assets([asset.pk])
    ingest(asset, START_S + 600, 300)

    report = score_assets([asset.pk])

    assert report.stored == {champion.pk: 30}
    ends = ends_of(asset, champion)
    assert np.all(np.diff(ends) == 10.0)
    assert ends[-1] == START_S + 890


def test_a_window_is_only_scored_once_every_sensor_has_reached_its_end(asset):
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 600)
    lagging = asset.sensors.get(role__key="pressure")
    from plant.models import Reading

    Reading.objects.filter(sensor=lagging, ts__gt=T0 + timedelta(seconds=500)).delete()

    score_assets([asset.pk])

    assert ends_of(asset, champion)[-1] == START_S + 500


def test_a_rerun_stores_nothing_twice_and_changes_no_alert(asset):
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 900, vibration=fault(START_S + 300, START_S + 420))
    score_assets([asset.pk])
    scores, alerts, events = Score.objects.count(), list(Alert.objects.values()), AlertEvent.objects.count()

    again = score_assets([asset.pk])
    score_asset_task.apply(args=[asset.pk])

    assert again.stored == {}
    assert Score.objects.count() == scores
    assert list(Alert.objects.values()) == alerts
    assert AlertEvent.objects.count() == events
    assert Alert.objects.filter(model_version=champion).count() == 1


def test_an_injected_fault_opens_one_alert_that_auto_closes_after_it_ends(asset):
    champion = vibration_model(asset.asset_type)
    shadow = vibration_model(asset.asset_type, shadow=True, name="pump-vib-2")
    for minute in range(15):  # scored minute by minute, as a live stream would be
        ingest(asset, START_S + 60 * minute, 60, vibration=fault(START_S + 300, START_S + 420))
        score_assets([asset.pk])

    visible = Alert.objects.get(is_shadow=False)
    assert visible.model_version == champion
    assert visible.state == "auto_closed"
    assert visible.category == "machine_fault"
    assert START_S + 300 < visible.opened_at.timestamp() < START_S + 420
    would_be = Alert.objects.get(is_shadow=True)
    assert would_be.model_version == shadow


def test_the_task_clears_the_due_mark_it_claimed(asset):
    vibration_model(asset.asset_type)
    ingest(asset, START_S, 120)
    assert ScoringDue.objects.get(asset=asset).due

    score_asset_task.apply(args=[asset.pk])

    mark = ScoringDue.objects.get(asset=asset)
    assert not mark.due
    assert mark.scored_seq == mark.seq


def test_a_first_run_looks_back_at_most_the_lookback(asset, settings):
    settings.VIGIL_SCORING_LOOKBACK_S = 300
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 1200)

    score_assets([asset.pk])

    ends = ends_of(asset, champion)
    assert ends[0] == START_S + 900  # the first window end inside the look-back (latest 1199 − 300)
    assert ends[-1] == START_S + 1190


def test_an_asset_without_a_champion_or_shadow_scores_nothing_and_is_released(asset):
    ingest(asset, START_S, 120)

    report = score_assets([asset.pk])

    assert Score.objects.count() == 0
    assert report.still_due == []
    assert not ScoringDue.objects.get(asset=asset).due
