"""Redis down: ingestion still answers 200 and stores readings and marks; the sweep catches up later."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from alerts.models import Score
from config.celery import app
from alerts.tasks import sweep_due_assets_task
from alerts.scheduling import wait_for_enqueues
from alerts.models import ScoringDue
from plant.models import Reading
from tests.scoring.conftest import vibration_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down():
    """Point Celery at a port where nothing listens, as when Redis has stopped."""
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url = "redis://127.0.0.1:9/0"
    app.conf.task_always_eager = False
    app._pool = None
    yield
    app.conf.broker_url, app.conf.task_always_eager = saved
    app._pool = None


def body(asset, start: float, seconds: int) -> bytes:
    base = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}
    readings = [
        {"sensor": sensor.key, "ts": start + i, "value": base[sensor.role.key] + 0.01 * (i % 7)}
        for sensor in asset.sensors.select_related("role")
        for i in range(seconds)
    ]
    return orjson.dumps({"readings": readings})


def test_ingestion_answers_200_and_keeps_the_marks_while_redis_is_down_then_the_sweep_catches_up(
    client, asset, gateway_token, broker_down, settings, django_capture_on_commit_callbacks
):
    champion = vibration_model(asset.asset_type)
    start = time.time() - 600
    headers = {"Authorization": f"Bearer {gateway_token}"}

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(
            "/api/v1/readings", body(asset, start, 300), content_type="application/json", headers=headers
        )
    with django_capture_on_commit_callbacks(execute=True):
        second = client.post(
            "/api/v1/readings",
            body(asset, start + 300, 300),
            content_type="application/json",
            headers=headers,
        )
    elapsed = time.monotonic() - started
    wait_for_enqueues()  # the failed publishes run on the background thread while Redis is still down

    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["accepted"] == second.json()["accepted"] == 300 * 4
    assert elapsed < 5.0  # a failed publish costs about a second, then the breaker skips further attempts
    assert Reading.objects.count() == 2400
    mark = ScoringDue.objects.get(asset=asset)
    assert mark.due and mark.seq == 2
    assert not Score.objects.exists()

    # Redis is back (eager mode stands in for broker + worker); the beat sweep finds the missed mark.
    app.conf.task_always_eager = True
    ScoringDue.objects.filter(asset=asset).update(
        marked_at=timezone.now() - timedelta(minutes=1), enqueued_at=timezone.now() - timedelta(minutes=1)
    )
    assert sweep_due_assets_task.apply().get() == 1

    assert Score.objects.filter(model_version=champion).count() == 57
    assert not ScoringDue.objects.get(asset=asset).due
