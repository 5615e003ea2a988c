"""The agent's OPC UA source against a real asyncua server: the agent reads OPC UA through the same client
as the server's bridge (connectivity.opcua via the protocol registry), sample-and-hold included."""

from __future__ import annotations

import asyncio
import logging
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


async def test_a_server_up_after_the_agent_is_logged_not_reachable_once_per_try_then_read(tmp_path, caplog):
    """A PLC booting slower than its gateway: each refused try is one warning line saying the server is not
    reachable (no traceback), and the source reads the server once it is up."""
    caplog.set_level(logging.WARNING, logger="edge.sources")
    port = free_port()
    (tmp_path / "points.csv").write_text("sensor,node_id\nnorth.p-101.flow,ns=2;s=P-101.flow\n")
    table = {
        "name": "skid",
        "protocol": "opcua",
        "endpoint": f"opc.tcp://127.0.0.1:{port}/vigil/",
        "points": "points.csv",
        "options": {"publishing_interval_ms": 50, "flush_ms": 50},
    }
    [source] = build_sources({"sources": [table]}, tmp_path, environ={})
    sink = Collector()
    tries = lambda: [r for r in caplog.records if r.name == "edge.sources"]  # noqa: E731
    task = asyncio.create_task(source(sink))
    device = None
    try:
        await until(lambda: tries(), what="a refused try", timeout=10)
        device = await start_opcua_device(port, initial={"flow": 12.5}, initial_ts=time.time())
        await until(lambda: sink.samples, what="the first value once the server is up", timeout=15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if device is not None:
            await device.stop()
    assert sink.samples[0].value == 12.5
    for record in tries():
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert record.getMessage().startswith("source skid: not reachable: ConnectionRefusedError")
