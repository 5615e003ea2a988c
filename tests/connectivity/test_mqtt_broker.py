"""connectivity.mqtt.run against a real mosquitto: samples reach the sink, QoS 1 messages are acknowledged
only after the sink returned, and a persistent session survives a broker restart."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import aiomqtt
import orjson
import pytest

from connectivity import mqtt, sparkplug_b_pb2
from connectivity.mqtt import sparkplug_payload
from bench.live_server import ROOT
from connectivity.points import ConnectionStatus, Sample, SampleStatus
from connectivity.protocols import ConnectionConfig
from tests.brokers import make_tls_files, mosquitto_tls  # noqa: F401 (fixture)

POINTS = {"p1.temp": mqtt.parse_point({"topic": "plant/p1", "value_path": "v", "ts_path": "t"})}


def config(broker, client_id: str = "vigil-test") -> ConnectionConfig:
    return ConnectionConfig(name="test", endpoint=broker.endpoint, interval_s=0.05, client_id=client_id)


async def publish(broker, values, topic: str = "plant/p1") -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for i in values:
            payload = orjson.dumps({"t": 1_767_600_000 + i, "v": float(i)}) if i >= 0 else b"garbage"
            await client.publish(topic, payload, qos=1)


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Collecting:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, samples: list[Sample]) -> None:
        await self.gate.wait()
        self.samples.extend(samples)


async def running(broker, sink, status, client_id="vigil-test"):
    task = asyncio.create_task(mqtt.run(config(broker, client_id), POINTS, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.1)  # subscribed
    return task


async def stop(task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task


async def test_published_values_reach_the_sink_and_bad_payloads_are_counted(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    task = await running(mosquitto, sink, status)
    await publish(mosquitto, [0, 1, -1, 2])
    await until(lambda: len(sink.samples) == 3)
    await stop(task)
    assert [s.value for s in sink.samples] == [0.0, 1.0, 2.0]
    assert sink.samples[1].ts == 1_767_600_001
    assert status.messages == 4 and status.errors == 1 and "payload is not JSON" in status.last_error


async def test_messages_are_acknowledged_only_after_the_sink_returned(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    sink.gate.clear()  # the database is "down": the sink does not return
    task = await running(mosquitto, sink, status)
    await publish(mosquitto, range(5))
    await until(lambda: status.messages == 5)
    await stop(task)  # the bridge dies holding 5 unacknowledged messages
    assert sink.samples == []

    sink.gate.set()
    status = ConnectionStatus()
    task = await running(mosquitto, sink, status)  # same client id: the persistent session
    await until(lambda: len(sink.samples) >= 5)
    await stop(task)
    assert sorted({s.value for s in sink.samples}) == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_queued_messages_survive_a_broker_restart(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    task = await running(mosquitto, sink, status)
    await stop(task)  # the session exists; the bridge is away
    await publish(mosquitto, range(20))
    await asyncio.to_thread(mosquitto.restart)
    task = await running(mosquitto, sink, ConnectionStatus())
    await until(lambda: len(sink.samples) >= 20)
    await stop(task)
    assert sorted({s.value for s in sink.samples}) == [float(i) for i in range(20)]


async def test_a_lost_broker_ends_run_with_an_error(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    task = await running(mosquitto, sink, status)
    await asyncio.to_thread(mosquitto.stop)
    async with asyncio.timeout(10):
        try:
            await task
        except aiomqtt.MqttError:
            pass
    assert not status.connected


async def test_a_tls_broker_is_read_with_its_ca_and_refused_without_it(mosquitto_tls, tmp_path):  # noqa: F811
    endpoint = f"mqtts://127.0.0.1:{mosquitto_tls.port}"
    good = ConnectionConfig(
        name="tls",
        endpoint=endpoint,
        ca_file=str(mosquitto_tls.tls["ca"]),
        interval_s=0.05,
        client_id="vigil-tls",
    )
    sink, status = Collecting(), ConnectionStatus()
    task = asyncio.create_task(mqtt.run(good, POINTS, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.1)
    async with aiomqtt.Client(
        "127.0.0.1",
        mosquitto_tls.port,
        tls_params=aiomqtt.TLSParameters(ca_certs=str(mosquitto_tls.tls["ca"])),
    ) as client:
        await client.publish("plant/p1", orjson.dumps({"t": 1_767_600_000, "v": 7.0}), qos=1)
    await until(lambda: len(sink.samples) == 1)
    await stop(task)
    # Another CA: the server's certificate does not verify, so run() fails instead of reading.
    other = tmp_path / "other"
    other.mkdir()
    wrong = ConnectionConfig(
        name="tls", endpoint=endpoint, ca_file=str(make_tls_files(other)["ca"]), client_id="x"
    )
    status = ConnectionStatus()
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with asyncio.timeout(10):
            await mqtt.run(wrong, POINTS, Collecting(), status)
    assert not status.connected


async def test_a_lone_message_is_stored_after_flush_ms_not_after_the_connection_interval(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    slow = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=30.0, client_id="vigil-lone")
    task = asyncio.create_task(mqtt.run(slow, POINTS, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.1)  # subscribed
    started = asyncio.get_running_loop().time()
    await publish(mosquitto, [7])
    await until(lambda: len(sink.samples) == 1, timeout=5)
    waited = asyncio.get_running_loop().time() - started
    await stop(task)
    assert waited < 1.0  # the default flush_ms (150 ms), not interval_s (30 s)


async def test_stopping_stores_and_acknowledges_what_was_received(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    held = ConnectionConfig(
        name="test", endpoint=mosquitto.endpoint, options={"flush_ms": 60_000}, client_id="vigil-drain"
    )
    task = asyncio.create_task(mqtt.run(held, POINTS, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.1)  # subscribed
    await publish(mosquitto, range(3))
    await until(lambda: status.messages == 3)
    assert sink.samples == []  # still batching (a minute)
    await stop(task)  # a restart for a changed mapping, or the bridge ending
    assert [s.value for s in sink.samples] == [0.0, 1.0, 2.0]

    # Acknowledged: the persistent session has nothing to send again.
    again = Collecting()
    task = asyncio.create_task(mqtt.run(held, POINTS, again, ConnectionStatus()))
    await asyncio.sleep(1.0)
    await stop(task)
    assert again.samples == []


@pytest.mark.parametrize("flush_ms", [0, -5, "fast", True, 60_001])
def test_a_bad_flush_ms_is_refused_naming_it(flush_ms):
    with pytest.raises(ValueError, match="flush_ms"):
        mqtt.parse_options({"flush_ms": flush_ms})


async def test_data_without_a_birth_asks_the_node_for_a_rebirth_and_resumes_after_it(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    point = mqtt.parse_point(
        {"format": "sparkplug", "group": "plant", "node": "edge1", "device": "pump2", "metric": "vibration"}
    )
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-spb")
    commands: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:  # the edge node, born before the bridge
        await node.subscribe("spBv1.0/plant/NCMD/edge1")

        async def listen() -> None:
            async for message in node.messages:
                commands.append(message)

        listener = asyncio.create_task(listen())
        task = asyncio.create_task(mqtt.run(cfg, {"p2.vib": point}, sink, status))
        # Once subscribed, the bridge asks every mapped node to be born again.
        await until(lambda: commands)
        request = sparkplug_b_pb2.Payload.FromString(commands[0].payload)
        assert [(m.name, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", True)]
        # A node that has not answered yet names its metrics by an alias nobody bound: counted, and not asked
        # again within REBIRTH_EVERY_S.
        await node.publish("spBv1.0/plant/DDATA/edge1/pump2", sparkplug_payload([(None, 1, 0.5)], 1), qos=1)
        await until(lambda: status.errors)
        assert sink.samples == [] and "no birth certificate" in status.last_error
        # The node is born again, and its data is read from then on.
        await node.publish("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([], 2_000), qos=1)
        await node.publish(
            "spBv1.0/plant/DBIRTH/edge1/pump2", sparkplug_payload([("vibration", 1, 0.6)], 2_000), qos=1
        )
        await node.publish(
            "spBv1.0/plant/DDATA/edge1/pump2", sparkplug_payload([(None, 1, 0.7)], 3_000), qos=1
        )
        await until(lambda: [s.value for s in sink.samples] == [0.6, 0.7])
        listener.cancel()
    await stop(task)
    assert status.errors == 1 and len(commands) == 1
    # The error is the node's, and its birth ended it (the site page shows it as past).
    assert status.last_error_resolved_at is not None and status.last_error_resolved_at >= status.last_error_at


async def test_a_devices_birth_ends_the_error_of_its_data_by_alias_but_the_node_is_asked_until_its_own(
    mosquitto, monkeypatch
):
    """A device reborn on its own (Sparkplug B: a device back online gets a DBIRTH without its node's NBIRTH)
    binds its aliases: the error its data by alias caused is over. A rebirth request is answered by the
    node's NBIRTH only, so the node is still asked until then."""
    monkeypatch.setattr(mqtt, "REBIRTH_EVERY_S", 3.0)
    sink, status = Collecting(), ConnectionStatus()
    point = mqtt.parse_point(
        {"format": "sparkplug", "group": "plant", "node": "edge1", "device": "pump2", "metric": "vibration"}
    )
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-dev")
    asked: list[float] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:
        await node.subscribe("spBv1.0/plant/NCMD/edge1")

        async def listen() -> None:
            async for _ in node.messages:
                asked.append(time.monotonic())

        listener = asyncio.create_task(listen())
        task = asyncio.create_task(mqtt.run(cfg, {"p2.vib": point}, sink, status))
        await until(lambda: asked)
        await node.publish("spBv1.0/plant/DDATA/edge1/pump2", sparkplug_payload([(None, 1, 0.5)], 1), qos=1)
        await until(lambda: "no birth certificate" in (status.last_error or ""))
        assert status.last_error.startswith("spBv1.0/plant/DDATA/edge1/pump2: metric alias 1 ")
        # Another device's birth says nothing of it.
        await node.publish(
            "spBv1.0/plant/DBIRTH/edge1/pump3", sparkplug_payload([("vibration", 1, 0.1)], 1_500), qos=1
        )
        await asyncio.sleep(0.2)
        assert status.last_error_resolved_at is None
        born = time.time()
        await node.publish(
            "spBv1.0/plant/DBIRTH/edge1/pump2", sparkplug_payload([("vibration", 1, 0.6)], 2_000), qos=1
        )
        await node.publish(
            "spBv1.0/plant/DDATA/edge1/pump2", sparkplug_payload([(None, 1, 0.7)], 3_000), qos=1
        )
        await until(lambda: [s.value for s in sink.samples][:2] == [0.6, 0.7])
        assert status.last_error_resolved_at is not None and born <= status.last_error_resolved_at
        assert "no birth certificate" in status.last_error
        # The node itself is asked again, and its silence is its own error, which no device's birth ends.
        await until(lambda: len(asked) > 1 and "no answer to 1 rebirth request" in status.last_error)
        assert status.last_error_resolved_at is None
        listener.cancel()
    await stop(task)


async def test_a_node_that_never_answers_a_rebirth_is_asked_again_on_a_schedule_and_named_on_the_status(
    mosquitto, monkeypatch
):
    # Before, a node that did not answer the rebirth request of the connect was never asked again unless it
    # sent data by an unknown alias, and nothing said it had not answered: its frozen values read as no data.
    monkeypatch.setattr(mqtt, "REBIRTH_EVERY_S", 0.3)
    monkeypatch.setattr(mqtt, "REBIRTH_RETRY_MAX_S", 1.0, raising=False)
    sink, status = Collecting(), ConnectionStatus()
    base = {"format": "sparkplug", "group": "plant", "node": "edge1", "device": "pump2"}
    points = {
        "p2.vib": mqtt.parse_point(base | {"metric": "vibration"}),
        "p2.cur": mqtt.parse_point(base | {"metric": "current"}),
    }
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-mute")
    asked: list[float] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:  # listens, never answers
        await node.subscribe("spBv1.0/plant/NCMD/edge1")

        async def listen() -> None:
            async for _ in node.messages:
                asked.append(time.monotonic())

        listener = asyncio.create_task(listen())
        task = asyncio.create_task(mqtt.run(cfg, points, sink, status))
        await until(lambda: len(asked) >= 4)  # on connecting, then after 0.3, 0.6 and 1.0 s
        # Its data by metric name is stored all the while; by an alias it cannot be named.
        await node.publish(
            "spBv1.0/plant/DDATA/edge1/pump2",
            sparkplug_payload([("vibration", None, 0.5), (None, 7, 9.0)], 1_767_600_000_000),
            qos=1,
        )
        await until(lambda: sink.samples and "no birth certificate" in (status.last_error or ""))
        await until(lambda: "no answer to 4 rebirth requests" in (status.last_error or ""))
        last = status.last_error
        assert status.last_error_resolved_at is None  # current while the node is silent
        # Born at last: no more requests, no more errors, and the last one is over since the birth.
        born = time.time()
        await node.publish("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([], 2_000), qos=1)
        await asyncio.sleep(0.2)
        assert born <= status.last_error_resolved_at <= time.time()
        requests, errors = len(asked), status.errors
        await asyncio.sleep(2.5)
        listener.cancel()
    await stop(task)
    gaps = [round(b - a, 1) for a, b in zip(asked, asked[1:])]
    assert gaps[:3] == pytest.approx([0.3, 0.6, 1.0], abs=0.25)  # doubling, up to the cap
    assert last.startswith("spBv1.0/plant/edge1: no answer to 4 rebirth requests since ")
    assert "its 2 mapped metrics are not held and its data by alias is dropped until it is born" in last
    assert last.endswith("; asked again in 1 s")
    assert sink.samples == [Sample("p2.vib", 1_767_600_000.0, 0.5)]
    assert (len(asked), status.errors) == (requests, errors)


# An edge node in its own process, as in a plant: it connects with its NDEATH as its MQTT will, publishes
# its birth certificate (one metric, "pressure", at the value given, dated by its clock, which it prints)
# and then nothing: the metric is frozen. Killing the process drops its connection, so the broker publishes the will.
EDGE_NODE = """
import sys, time
import paho.mqtt.client as paho
from connectivity.mqtt import sparkplug_payload
port, value = int(sys.argv[1]), float(sys.argv[2])
client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="edge-node-1")
client.will_set("spBv1.0/plant/NDEATH/edge1", sparkplug_payload([], int(time.time() * 1000)), qos=1)
client.connect("127.0.0.1", port, keepalive=60)
client.loop_start()
ts_ms = int(time.time() * 1000)
def on_message(client, userdata, message):  # a rebirth request: the birth certificate again, same value
    client.publish("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([("pressure", 1, value)], int(time.time() * 1000)), qos=1)
client.on_message = on_message
client.subscribe("spBv1.0/plant/NCMD/edge1", qos=0)
client.publish("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([("pressure", 1, value)], ts_ms), qos=1).wait_for_publish()
print(ts_ms / 1000, flush=True)
while True:
    time.sleep(1)
"""


def start_edge_node(broker, value: float) -> tuple[subprocess.Popen, float]:
    """The edge node's process, once its birth is published, and the birth's time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", EDGE_NODE, str(broker.port), str(value)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, float(proc.stdout.readline())


async def test_a_frozen_sparkplug_metric_is_held_while_its_node_lives_and_not_after_its_death(mosquitto):
    # Sparkplug B reports by exception: before sample-and-hold a frozen metric sent its birth value and then
    # nothing, a gap, though the node was alive and the value valid.
    sink, status = Collecting(), ConnectionStatus()
    point = mqtt.parse_point(
        {
            "format": "sparkplug",
            "group": "plant",
            "node": "edge1",
            "metric": "pressure",
            "sampling_interval_ms": "100",
        }
    )
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-hold")
    task = asyncio.create_task(mqtt.run(cfg, {"p1.pressure": point}, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.2)  # subscribed
    node, born = start_edge_node(mosquitto, 5.25)
    try:
        await until(lambda: len(sink.samples) >= 12)
        node.kill()  # no clean disconnect: the broker publishes the node's will, its NDEATH
        node.wait(10)
        killed = time.time()
        await until(lambda: any(s.status is SampleStatus.STALE for s in sink.samples))
        await asyncio.sleep(1.0)  # the node is dead: nothing may be held for this time
        await stop(task)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)
    values = [s for s in sink.samples if s.status is SampleStatus.GOOD]
    assert {s.value for s in values} == {5.25}
    assert values[0].ts == pytest.approx(born, abs=1e-3)
    # Held on the grid of the birth's time, from the birth's arrival on (within a period or two of its time).
    steps = [round((s.ts - born) * 10, 3) for s in values[1:]]
    assert steps[0] in (1.0, 2.0) and steps == [steps[0] + i for i in range(len(steps))]
    assert max(s.ts for s in values) < killed  # nothing held past the death
    death = next(i for i, s in enumerate(sink.samples) if s.status is SampleStatus.STALE)
    assert sink.samples[death + 1 :] == []
    # Its own rebirth request on connecting (no node was there to answer it), the birth and the death: held
    # values are no messages.
    assert status.messages == 3


async def test_a_node_born_before_the_bridge_is_asked_to_be_born_again_and_its_frozen_value_held(mosquitto):
    # A bridge restart (a deploy, a changed mapping) while the node's metric is frozen: without asking, the
    # node is unknown to the new connection until its next birth, and its frozen value reads as no data.
    node, _ = start_edge_node(mosquitto, 2.5)
    sink, status = Collecting(), ConnectionStatus()
    fields = {"format": "sparkplug", "group": "plant", "node": "edge1", "sampling_interval_ms": "100"}
    cfg = ConnectionConfig(
        name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-reborn"
    )
    try:
        task = asyncio.create_task(
            mqtt.run(cfg, {"p1.pressure": mqtt.parse_point(fields | {"metric": "pressure"})}, sink, status)
        )
        await until(lambda: len(sink.samples) >= 10)
        await stop(task)
    finally:
        node.kill()
        node.wait(10)
    assert {(s.value, s.status) for s in sink.samples} == {(2.5, SampleStatus.GOOD)}


async def test_a_sparkplug_metric_is_not_held_after_ndeath_nor_when_its_node_was_never_born(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    fields = {"format": "sparkplug", "group": "plant", "node": "edge1", "sampling_interval_ms": "100"}
    points = {
        "p1.node": mqtt.parse_point(fields | {"metric": "flow"}),
        "p1.device": mqtt.parse_point(fields | {"device": "pump", "metric": "speed"}),
    }
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-hold2")
    task = asyncio.create_task(mqtt.run(cfg, points, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.2)  # subscribed
    now_ms = int(time.time() * 1000)
    # A device born while its node is not known alive (its NBIRTH came before the bridge): not held.
    await publish_sparkplug(mosquitto, "DBIRTH/edge1/pump", [("speed", 2, 7.0)], now_ms)
    await asyncio.sleep(0.6)
    assert [s.value for s in sink.samples] == [7.0]
    await publish_sparkplug(mosquitto, "NBIRTH/edge1", [("flow", 1, 3.0)], now_ms)
    await publish_sparkplug(mosquitto, "DBIRTH/edge1/pump", [("speed", 2, 7.0)], now_ms)
    await until(lambda: len([s for s in sink.samples if s.point == "p1.device"]) >= 5)
    await publish_sparkplug(mosquitto, "NDEATH/edge1", [], now_ms)
    await until(lambda: any(s.status is SampleStatus.STALE for s in sink.samples))
    dead = len(sink.samples)
    await asyncio.sleep(0.6)
    await stop(task)
    assert len(sink.samples) == dead  # the node and its device are dead: nothing more is held
    assert len([s for s in sink.samples if s.point == "p1.node" and s.value == 3.0]) >= 4


async def test_a_lost_broker_ends_the_holding_and_nothing_is_held_for_the_outage(mosquitto):
    sink, status = Collecting(), ConnectionStatus()
    fields = {
        "format": "sparkplug",
        "group": "plant",
        "node": "edge1",
        "metric": "flow",
        "sampling_interval_ms": "100",
    }
    cfg = ConnectionConfig(name="test", endpoint=mosquitto.endpoint, interval_s=0.05, client_id="vigil-hold3")
    task = asyncio.create_task(mqtt.run(cfg, {"p1.flow": mqtt.parse_point(fields)}, sink, status))
    await until(lambda: status.connected)
    await asyncio.sleep(0.2)  # subscribed
    await publish_sparkplug(mosquitto, "NBIRTH/edge1", [("flow", 1, 3.0)], int(time.time() * 1000))
    await until(lambda: len(sink.samples) >= 5)
    await asyncio.to_thread(mosquitto.stop)
    stopped = time.time()
    with pytest.raises(aiomqtt.MqttError):
        await asyncio.wait_for(task, 10)
    held = len(sink.samples)
    await asyncio.sleep(0.5)
    assert len(sink.samples) == held and max(s.ts for s in sink.samples) < stopped


async def publish_sparkplug(broker, topic: str, metrics, ts_ms: int) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(f"spBv1.0/plant/{topic}", sparkplug_payload(metrics, ts_ms), qos=1)
