"""The agent's OPC UA source against a real asyncua server: the agent reads OPC UA through the same client
as the server's bridge (connectivity.opcua via the protocol registry), sample-and-hold included."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.live_server import free_port
from connectivity.points import SampleStatus
from edge.sources import build_sources
from plant.simulator_devices import start_opcua_device
from tests.connectivity.ot_support import Collector, until


@pytest.fixture
async def device():
    dev = await start_opcua_device(free_port())
    yield dev
    await dev.stop()


async def test_a_frozen_opcua_value_reaches_the_agent_held_at_its_sampling_interval(device, tmp_path):
    (tmp_path / "points.csv").write_text(
        f"sensor,node_id,sampling_interval_ms\nnorth.p-101.flow,{device.node_id('flow')},100\n"
    )
    table = {
        "name": "skid",
        "protocol": "opcua",
        "endpoint": device.endpoint,
        "points": "points.csv",
        "options": {"publishing_interval_ms": 50, "flush_ms": 50},
    }
    [source] = build_sources({"sources": [table]}, tmp_path, environ={})
    sink = Collector()
    task = asyncio.create_task(source(sink))
    try:
        await until(lambda: sink.samples, what="the catch-up sample")
        frozen = time.time()
        await device.set("flow", 12.5, ts=frozen)
        # Before sample-and-hold the agent got this one value and then nothing: its decisions waited on the
        # role, then scored windows without it, and the server it forwards to saw a gap, not a stuck sensor.
        await until(lambda: len([s for s in sink.samples if s.ts > frozen + 1e-3]) >= 10, timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    held = [s for s in sink.samples if s.ts > frozen + 1e-3]
    assert {(s.point, s.value, s.status) for s in held} == {("north.p-101.flow", 12.5, SampleStatus.GOOD)}
    assert [s.ts - frozen for s in held[:10]] == pytest.approx([0.1 * k for k in range(1, 11)], abs=1e-5)
