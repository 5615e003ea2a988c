"""Due marks: ingestion marks assets due in its transaction and wakes a scorer without a task per batch."""

from __future__ import annotations

from datetime import timedelta
from threading import current_thread
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from alerts.models import ScoringDue
from alerts.scheduling import mark_due, wait_for_enqueues
from alerts.scoring import score_assets
from alerts.tasks import score_asset_task, sweep_due_assets_task
from plant.ingest import hooks
from plant.ingest.hooks import bulk_load
from plant.models import Reading
from tests.conftest import make_asset
from tests.scoring.conftest import START_S, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def publish_inline(settings):
    # These tests observe the publish right after commit; the background path has its own test below.
    settings.VIGIL_SCORING_ENQUEUE_IN_BACKGROUND = False


def test_ingest_marks_each_asset_that_received_readings_due_and_bumps_its_seq(site, asset):
    idle = make_asset(site, tag="p-102")
    ingest(asset, START_S, 30)
    ingest(asset, START_S + 30, 30)

    mark = ScoringDue.objects.get(asset=asset)
    assert mark.due and mark.seq == 2 and mark.marked_at is not None
    assert not ScoringDue.objects.filter(asset=idle).exists()


def test_a_batch_of_only_duplicates_marks_nothing(asset):
    ingest(asset, START_S, 30)
    ScoringDue.objects.filter(asset=asset).update(due=False)

    result = ingest(asset, START_S, 30)

    assert result.accepted == 0
    assert not ScoringDue.objects.get(asset=asset).due


def test_an_asset_gets_one_task_when_it_becomes_due_not_one_per_batch(
    asset, django_capture_on_commit_callbacks
):
    with mock.patch.object(score_asset_task, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            ingest(asset, START_S, 30)
        with django_capture_on_commit_callbacks(execute=True):
            ingest(asset, START_S + 30, 30)
    assert delay.call_args_list == [mock.call(asset.pk)]


def test_by_default_the_publish_runs_off_the_request_thread(
    asset, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_SCORING_ENQUEUE_IN_BACKGROUND = True
    threads = []
    with mock.patch.object(score_asset_task, "delay", side_effect=lambda _: threads.append(current_thread())):
        with django_capture_on_commit_callbacks(execute=True):
            ingest(asset, START_S, 30)
        wait_for_enqueues()
    assert len(threads) == 1
    assert threads[0] is not current_thread() and threads[0].name.startswith("vigil-enqueue")


def test_an_asset_due_for_long_without_a_recent_task_is_woken_again(asset):
    mark_due([asset.pk])
    long_ago = timezone.now() - timedelta(minutes=5)
    ScoringDue.objects.filter(asset=asset).update(enqueued_at=long_ago)

    assert mark_due([asset.pk]) == [asset.pk]
    assert mark_due([asset.pk]) == []


def test_a_broker_outage_leaves_the_marks_and_the_readings_in_place(
    asset, django_capture_on_commit_callbacks
):
    with mock.patch.object(score_asset_task, "delay", side_effect=ConnectionError("redis down")) as delay:
        with django_capture_on_commit_callbacks(execute=True):
            result = ingest(asset, START_S, 30)
    assert delay.called
    assert result.accepted == 30 * asset.sensors.count()
    assert ScoringDue.objects.get(asset=asset).due


def test_the_sweep_sends_tasks_only_for_marks_older_than_the_sweep_age(site, asset, settings):
    settings.VIGIL_SCORING_SWEEP_AGE_S = 5
    fresh = make_asset(site, tag="p-102")
    mark_due([asset.pk, fresh.pk])
    old = timezone.now() - timedelta(seconds=60)
    ScoringDue.objects.filter(asset=asset).update(marked_at=old, enqueued_at=old)

    with mock.patch.object(score_asset_task, "delay") as delay:
        sent = sweep_due_assets_task.apply().get()

    assert sent == 1
    assert delay.call_args_list == [mock.call(asset.pk)]
    assert ScoringDue.objects.get(asset=asset).enqueued_at > old


def test_a_mark_that_moved_while_scoring_stays_due(asset):
    ingest(asset, START_S, 60)
    real_read = score_assets.__globals__["_score_type"]

    def ingest_meanwhile(*args, **kwargs):
        mark_due([asset.pk])  # data arrived while the scorer worked
        return real_read(*args, **kwargs)

    from tests.scoring.conftest import vibration_model

    vibration_model(asset.asset_type)
    with mock.patch("alerts.scoring._score_type", side_effect=ingest_meanwhile):
        report = score_assets([asset.pk])

    assert report.still_due == [asset.pk]
    assert ScoringDue.objects.get(asset=asset).due


def test_a_bulk_load_marks_assets_due_but_sends_no_task(asset, django_capture_on_commit_callbacks):
    # plant's bulk_load (dataset loads, the demo seed) tells the hook not to wake anything: the mark is
    # written with the readings and the sweep sends the task later.
    with mock.patch.object(score_asset_task, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True), bulk_load():
            ingest(asset, START_S, 30)
    assert not delay.called
    assert ScoringDue.objects.get(asset=asset).due


def test_without_a_readings_stored_hook_an_ingest_stores_nothing(asset, monkeypatch):
    # Readings that no scorer would ever be told about must not be acknowledged: the ingest fails and its
    # transaction (readings included) rolls back.
    monkeypatch.setattr(hooks, "_hook", None)

    with pytest.raises(ImproperlyConfigured, match="provide_readings_stored"):
        ingest(asset, START_S, 30)

    assert not Reading.objects.filter(sensor__asset=asset).exists()
    assert not ScoringDue.objects.exists()
