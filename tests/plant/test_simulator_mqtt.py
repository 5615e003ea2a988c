"""The demo's MQTT devices: what the simulator publishes (JSON and Sparkplug B) is what the seeded demo
connection maps, so the bridge stores it for the right sensors; the other pumps still go to the API."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django import db
from paho.mqtt.client import CallbackAPIVersion, Client

from connectivity.mqtt import parse_endpoint, rebirth_payload

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


def test_the_simulated_sparkplug_node_is_born_and_answers_a_rebirth_request(mosquitto):  # noqa: F811
    """The bridge asks every Sparkplug B node for a rebirth when it connects and waits for its NBIRTH;
    the demo's node published DBIRTHs only and ignored the request, so the demo's site page showed the
    MQTT connection's error 'no answer to 7 rebirth requests … (node offline, or no Node
    Control/Rebirth)' for as long as it ran."""
    topics: list[str] = []
    subscribed = threading.Event()
    _, host, port = parse_endpoint(mosquitto.endpoint)
    host_app = Client(CallbackAPIVersion.VERSION2, client_id="test-host")
    host_app.on_subscribe = lambda *_: subscribed.set()
    host_app.on_message = lambda client, userdata, message: (
        "/NCMD/" in message.topic or topics.append(message.topic)  # what the node publishes
    )
    host_app.connect(host, port)
    host_app.loop_start()
    host_app.subscribe("spBv1.0/demo-plant/+/edge-1/#", qos=1)
    host_app.subscribe("spBv1.0/demo-plant/+/edge-1", qos=1)
    assert subscribed.wait(5)

    sensors = {"demo-plant.p-104.flow": ("p-104", "flow")}
    devices = MqttDevices(mosquitto.endpoint, "demo-plant", sensors, set(), {"p-104"})

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(topics) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        devices.send(["demo-plant.p-104.flow"] * 2, [T, T + 1], [5.0, 5.1])
        wait_for(3)
        assert topics[:3] == [
            "spBv1.0/demo-plant/NBIRTH/edge-1",
            "spBv1.0/demo-plant/DBIRTH/edge-1/p-104",
            "spBv1.0/demo-plant/DDATA/edge-1/p-104",
        ]
        # A host's rebirth request: the next batch is led by the node's and its device's births again.
        host_app.publish("spBv1.0/demo-plant/NCMD/edge-1", rebirth_payload(T), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not devices.rebirth_asked.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        devices.send(["demo-plant.p-104.flow"] * 2, [T + 2, T + 3], [5.2, 5.3])
        wait_for(6)
        assert topics[3:6] == [
            "spBv1.0/demo-plant/NBIRTH/edge-1",
            "spBv1.0/demo-plant/DBIRTH/edge-1/p-104",
            "spBv1.0/demo-plant/DDATA/edge-1/p-104",
        ]
        # Without a request, no new birth (within the simulator's periodic REBIRTH_S).
        devices.send(["demo-plant.p-104.flow"], [T + 4], [5.4])
        wait_for(7)
        assert topics[6:] == ["spBv1.0/demo-plant/DDATA/edge-1/p-104"]
    finally:
        devices.close()
        host_app.loop_stop()
        host_app.disconnect()
