"""The agent's MQTT source against a real mosquitto: the agent reads Sparkplug B through the same client as
the server's bridge (connectivity.mqtt via the protocol registry), sample-and-hold included."""

from __future__ import annotations

import asyncio
import time

import aiomqtt

from connectivity.mqtt import sparkplug_payload
from connectivity.points import SampleStatus
from edge.sources import build_sources
from tests.brokers import mosquitto  # noqa: F401 (fixture)
from tests.connectivity.ot_support import Collector, until


async def test_a_frozen_sparkplug_metric_reaches_the_agent_held_until_its_node_dies(mosquitto, tmp_path):  # noqa: F811
    (tmp_path / "points.csv").write_text(
        "sensor,format,group,node,metric,sampling_interval_ms\nnorth.p-101.flow,sparkplug,north,edge,flow,100\n"
    )
    table = {"name": "broker", "protocol": "mqtt", "endpoint": mosquitto.endpoint, "points": "points.csv"}
    [source] = build_sources({"sources": [table]}, tmp_path, environ={})
    sink = Collector()
    task = asyncio.create_task(source(sink))
    try:
        await asyncio.sleep(1.0)  # connected and subscribed
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as node:
            born_ms = int(time.time() * 1000)
            await node.publish(
                "spBv1.0/north/NBIRTH/edge", sparkplug_payload([("flow", 1, 12.5)], born_ms), qos=1
            )
            # Before sample-and-hold the agent got this one value and then nothing: its decisions waited on
            # the role, and the server it forwards to saw a gap, not a stuck sensor.
            await until(lambda: len(sink.samples) >= 10, timeout=10)
            await node.publish("spBv1.0/north/NDEATH/edge", sparkplug_payload([], born_ms), qos=1)
            await until(lambda: any(s.status is SampleStatus.STALE for s in sink.samples), timeout=10)
        dead = len(sink.samples)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    held = [s for s in sink.samples if s.status is SampleStatus.GOOD]
    assert {(s.point, s.value) for s in held} == {("north.p-101.flow", 12.5)}
    steps = [round((s.ts - held[0].ts) * 10, 3) for s in held[1:]]
    assert steps == [steps[0] + k for k in range(len(steps))]  # every 100 ms
    assert len(sink.samples) == dead  # the node is dead: nothing more is held
