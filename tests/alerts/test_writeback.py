"""Alert state written back to the plant: every state change queues the asset's whole state for the
site's write-back connections (after commit, never inside scoring), and the bridge publishes it as a
retained MQTT message that any client subscribing later still sees."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiomqtt
import orjson
import pytest
from asgiref.sync import sync_to_async
from django import db
from django.utils import timezone

from alerts.writeback import record_write_back, write_back_assets
from plant.connections import bridge
from plant.connections.bridge import WRITTEN_KEPT, _mark_written
from plant.models import Connection, WriteBack
from tests.alerts.builders import explanation_for, make_alert
from tests.brokers import mosquitto  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def fresh_write_back_assets():
    """The per-process cache of write-back assets outlives a test's rolled-back rows: start and end empty."""
    write_back_assets.forget()
    yield
    write_back_assets.forget()


@pytest.fixture
def write_back_connection(site):
    return Connection.objects.create(site=site, name="hmi", endpoint="mqtt://127.0.0.1:1", write_back=True)


def test_a_state_change_queues_the_asset_state_after_commit(
    asset, champion, trained, write_back_connection, django_capture_on_commit_callbacks, settings
):
    settings.VIGIL_PUBLIC_URL = "https://vigil.example"
    with django_capture_on_commit_callbacks(execute=True):
        alert = make_alert(asset, champion, severity="high", explanation=explanation_for(champion, trained))
    row = WriteBack.objects.get()
    assert row.connection == write_back_connection and row.asset == asset and row.published_at is None
    payload = row.payload
    assert payload["state"] == "open" and payload["severity"] == "high" and payload["severity_code"] == 3
    assert payload["text"] == f"{asset.name} Vibration alert, high"
    assert payload["top_sensor_text"] and payload["top_sensor"]
    assert payload["link"] == f"https://vigil.example/alerts/{alert.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        alert.transition("resolved", reason="fixed")
    assert WriteBack.objects.latest("id").payload["state"] == "normal"


def test_nothing_is_queued_without_a_write_back_connection(
    asset, champion, django_capture_on_commit_callbacks
):
    Connection.objects.create(site=asset.site, name="reader", endpoint="mqtt://b", write_back=False)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    assert not WriteBack.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_the_bridge_publishes_the_state_as_a_retained_message(mosquitto, settings, request):  # noqa: F811
    settings.VIGIL_BRIDGE_STATUS_S = 0.1
    site = await sync_to_async(request.getfixturevalue)("site")
    asset = await sync_to_async(request.getfixturevalue)("asset")

    def prepare():
        connection = Connection.objects.create(
            site=site,
            name="hmi",
            endpoint=mosquitto.endpoint,
            write_back=True,
            options={"writeback_prefix": "plant/vigil"},
        )
        record_write_back(asset.pk)  # the asset has no active alert: "normal"
        WriteBack.objects.create(
            connection=connection, asset=asset, payload={"state": "open", "severity": "high"}
        )
        db.connection.close()
        return Connection.objects.select_related("site").get(pk=connection.pk)

    connection = await sync_to_async(prepare, thread_sensitive=False)()
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge([connection], stop))

    def published() -> bool:
        try:
            return not WriteBack.objects.filter(published_at__isnull=True).exists()
        finally:
            db.connection.close()

    async with asyncio.timeout(15):
        while not await sync_to_async(published, thread_sensitive=False)():
            await asyncio.sleep(0.05)
    stop.set()
    await task
    # A client that subscribes afterwards still gets the asset's latest state (retained), once.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe("plant/vigil/#", qos=1)
        async with asyncio.timeout(5):
            message = await anext(client.messages)
    assert message.topic.value == f"plant/vigil/{site.slug}/{asset.tag}/alert" and message.retain
    assert orjson.loads(message.payload) == {"state": "open", "severity": "high"}


def test_a_failing_write_back_never_undoes_the_state_change(
    asset, champion, write_back_connection, django_capture_on_commit_callbacks, monkeypatch
):
    def broken(asset_id):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr("alerts.writeback.record_write_back", broken)
    with django_capture_on_commit_callbacks(execute=True):
        alert = make_alert(asset, champion)
    alert.refresh_from_db()
    assert alert.state == "open" and not WriteBack.objects.exists()


def test_written_states_are_marked_and_old_ones_deleted(asset, write_back_connection):
    old = WriteBack.objects.create(
        connection=write_back_connection,
        asset=asset,
        payload={},
        published_at=timezone.now() - WRITTEN_KEPT * 2,
    )
    new = WriteBack.objects.create(connection=write_back_connection, asset=asset, payload={})
    _mark_written([new.pk])
    assert not WriteBack.objects.filter(pk=old.pk).exists()
    new.refresh_from_db()
    assert new.published_at is not None and timezone.now() - new.published_at < timedelta(minutes=1)
