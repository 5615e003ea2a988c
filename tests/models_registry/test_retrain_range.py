"""Training and retraining build windows where readings are, not over the calendar from the oldest reading:
a stored reading from 1970 among normal data changes nothing, and readings too many for one run fail with
a message naming the span and the limit instead of being attempted."""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from models_registry.training_data import load_training_windows
from models_registry.models import RetrainRun
from models_registry.retrain import execute_run
from detection import features
from plant.models import Reading
from tests.models_registry.retrain_history import build_history

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


@pytest.fixture
def history(site, technician):
    return build_history(site, technician)


def store_reading_at_epoch(history) -> None:
    sensor = history.assets["p-101"].sensors.order_by("pk").first()
    Reading.objects.create(sensor=sensor, ts=EPOCH, value=1.0, quality=0)


def test_a_reading_from_1970_leaves_the_training_windows_unchanged(history):
    before = load_training_windows(history.asset_type)
    store_reading_at_epoch(history)

    after = load_training_windows(history.asset_type)

    assert after.start == EPOCH  # the readings' range, as provenance reports it
    assert np.array_equal(after.ends, before.ends) and np.array_equal(after.asset_ids, before.asset_ids)
    assert np.array_equal(after.X, before.X, equal_nan=True)
    assert np.array_equal(after.labels, before.labels)


def test_retrain_from_feedback_with_no_start_succeeds_with_a_reading_from_1970(history):
    store_reading_at_epoch(history)
    out = StringIO()

    call_command("retrain", "--asset-type", history.asset_type.slug, "--kind", "anomaly", stdout=out)

    run = RetrainRun.objects.get()
    assert run.status == "succeeded" and run.result is not None, run.error
    assert "windows requested" not in out.getvalue()


def test_readings_too_many_for_one_run_fail_the_retrain_and_training_naming_the_span_and_limit(
    history, monkeypatch
):
    store_reading_at_epoch(history)
    monkeypatch.setattr(features, "MAX_WINDOWS", 500)
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")

    finished = execute_run(run.pk)

    assert finished.status == "failed" and finished.percent == 15  # "Building feature windows"
    assert "more than the 500 a training run may build" in finished.error
    assert "from 1970-01-01 00:00 to 2026-03-02" in finished.error
    assert "choose a later start" in finished.error
    with pytest.raises(CommandError, match=r"more than the 500 a training run may build"):
        call_command("train_model", "--asset-type", history.asset_type.slug, "--kind", "anomaly")
