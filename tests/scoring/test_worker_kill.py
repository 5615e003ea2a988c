"""A worker dying mid-run loses nothing and duplicates nothing: its transaction rolls back and the
redelivered task (acks_late) finishes the work. The real SIGKILL of a Celery worker is exercised by
.ci/reliability_check.py; here the death is simulated at the worst points of a run."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from alerts.models import Alert, AlertEvent, Score
from alerts.scoring import score_assets
from alerts.tasks import score_asset_task
from alerts.models import ScoringDue
from tests.scoring.conftest import START_S, fault, ingest, vibration_model

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler in the scorer can swallow it."""


def test_a_death_after_the_scores_were_inserted_rolls_them_back_and_the_redelivery_completes(asset):
    champion = vibration_model(asset.asset_type)
    ingest(asset, START_S, 900, vibration=fault(START_S + 300, START_S + 420))

    with mock.patch("alerts.scoring.apply_scores", side_effect=WorkerKilled), pytest.raises(WorkerKilled):
        score_assets([asset.pk])
    assert not Score.objects.exists() and not Alert.objects.exists()
    assert ScoringDue.objects.get(asset=asset).due  # not acknowledged, still due

    score_asset_task.apply(args=[asset.pk])  # the redelivery

    ends = [e.timestamp() for e in Score.objects.order_by("window_end").values_list("window_end", flat=True)]
    assert ends == [START_S + s for s in range(30, 900, 10)]
    assert Alert.objects.filter(model_version=champion).count() == 1
    assert not ScoringDue.objects.get(asset=asset).due


def test_a_death_after_commit_but_before_the_ack_makes_the_redelivery_a_no_op(asset):
    vibration_model(asset.asset_type)
    ingest(asset, START_S, 900, vibration=fault(START_S + 300, START_S + 420))
    with (
        mock.patch("alerts.scoring._release", side_effect=WorkerKilled),
        pytest.raises(WorkerKilled),
    ):
        score_assets([asset.pk])
    snapshot = (
        Score.objects.count(),
        list(Alert.objects.values("pk", "state", "window_count", "peak_score")),
        AlertEvent.objects.count(),
    )

    score_asset_task.apply(args=[asset.pk])
    score_asset_task.apply(args=[asset.pk])

    assert snapshot == (
        Score.objects.count(),
        list(Alert.objects.values("pk", "state", "window_count", "peak_score")),
        AlertEvent.objects.count(),
    )
    assert Alert.objects.count() == 1
    assert not ScoringDue.objects.get(asset=asset).due


def test_deaths_at_every_stage_of_a_live_stream_leave_exactly_the_expected_windows(asset):
    vibration_model(asset.asset_type)
    rng = np.random.default_rng(5)
    for minute in range(15):
        ingest(asset, START_S + 60 * minute, 60, vibration=fault(START_S + 300, START_S + 420))
        if rng.random() < 0.5:
            # Inside the store transaction right after the insert (a healthy chunk calls no apply_scores),
            # or after the commit.
            target = ["alerts.scoring.assets_with_active_alert", "alerts.scoring._release"][minute % 2]
            with mock.patch(target, side_effect=WorkerKilled), pytest.raises(WorkerKilled):
                score_assets([asset.pk])
        score_asset_task.apply(args=[asset.pk])

    ends = [e.timestamp() for e in Score.objects.order_by("window_end").values_list("window_end", flat=True)]
    assert ends == [START_S + s for s in range(30, 900, 10)]
    assert Alert.objects.count() == 1
    assert Alert.objects.get().state == "auto_closed"
