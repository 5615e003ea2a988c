"""The demo's MQTT devices: what the simulator publishes (JSON and Sparkplug B) is what the seeded demo
connection maps, so the bridge stores it for the right sensors; the other pumps still go to the API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django import db

from demo.seed import DEMO_MQTT_JSON, DEMO_MQTT_SPARKPLUG, seed_demo, seed_demo_connection
from plant.connections import bridge
from plant.models import Reading
from plant.simulator_mqtt import MqttDevices, SplitSender
from tests.brokers import mosquitto  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)
T = 1_767_600_000.0


class FakeHttp:
    max_per_request = 20_000
    url = "http://vigil/api/v1/readings"
    totals = None

    def __init__(self) -> None:
        self.keys: list[str] = []

    def send(self, keys, ts, values) -> None:
        self.keys += keys.tolist()


async def call(function, *args):
    def run():
        try:
            return function(*args)
        finally:
            db.connection.close()

    return await sync_to_async(run, thread_sensitive=False)()


async def test_the_simulated_mqtt_pumps_reach_their_sensors_through_the_seeded_connection(
    mosquitto,  # noqa: F811
    settings,
    tmp_path,
):
    settings.VIGIL_SCORING_ENQUEUE = False
    settings.VIGIL_BRIDGE_STATUS_S = 0.1

    def seed():
        seed_demo(assets=4, credentials_path=tmp_path / "credentials.json")
        return seed_demo_connection(mosquitto.endpoint)

    connection = await call(seed)
    connection = await call(lambda: type(connection).objects.select_related("site").get(pk=connection.pk))
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge([connection], stop))
    await asyncio.sleep(1.5)  # subscribed

    tags = ["p-101", *DEMO_MQTT_JSON, *DEMO_MQTT_SPARKPLUG]
    roles = ["vibration", "flow"]
    sensors = {f"demo-plant.{tag}.{role}": (tag, role) for tag in tags for role in roles}
    devices = MqttDevices(
        mosquitto.endpoint, "demo-plant", sensors, set(DEMO_MQTT_JSON), set(DEMO_MQTT_SPARKPLUG)
    )
    http = FakeHttp()
    sender = SplitSender(http, devices)
    keys = np.array([key for _ in range(3) for key in sensors], dtype=object)
    ts = np.repeat(T + np.arange(3.0), len(sensors))
    sender.send(keys, ts, np.full(len(keys), 5.0))
    devices.close()

    def stored() -> dict[str, int]:
        rows = Reading.objects.filter(sensor__key__in=list(sensors)).values_list("sensor__key", flat=True)
        counts: dict[str, int] = {}
        for key in rows:
            counts[key] = counts.get(key, 0) + 1
        return counts

    mqtt_keys = {key for key, (tag, _) in sensors.items() if tag != "p-101"}
    async with asyncio.timeout(15):
        while (await call(stored)) != {key: 3 for key in mqtt_keys}:
            await asyncio.sleep(0.1)
    stop.set()
    await task
    assert sorted(set(http.keys)) == ["demo-plant.p-101.flow", "demo-plant.p-101.vibration"]
    assert sender.published == 3 * len(mqtt_keys)
