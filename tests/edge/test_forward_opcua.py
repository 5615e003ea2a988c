"""The edge agent reading a real asyncua server and forwarding to the server's readings API: what the
server's bridge would store of the same tag, the server stores of the agent's (quality flags included)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from django import db

from bench.live_server import free_port
from edge.agent import Agent
from edge.config import AgentConfig, AssetConfig
from edge.forward import Forwarder
from edge.sources import build_sources
from plant.builders import make_asset, make_site
from plant.choices import QualityFlag
from plant.models import Gateway, Sensor
from plant.simulator_devices import start_opcua_device
from tests.plant.mock_transport import django_ingest
from tests.plant.test_bridge import fetch, readings, until

pytestmark = pytest.mark.django_db(transaction=True)


def server_plant() -> tuple[str, Sensor]:
    """The server's side: the pump's pressure sensor at 0.1 s, and the agent's gateway token."""
    site = make_site("north")
    sensor = Sensor.objects.get(asset=make_asset(site), role__key="pressure")
    Sensor.objects.filter(pk=sensor.pk).update(sample_period_s=0.1)
    return Gateway.issue(site, "edge-1")[1], sensor


def to_django(request: httpx.Request) -> httpx.Response:
    """A readings POST answered by the real view (ingest, quality flags and all); anything else: 200."""
    if request.url.path != "/api/v1/readings":
        return httpx.Response(200, json={})
    try:
        return django_ingest()(request)
    finally:
        db.connection.close()  # a worker thread's


async def test_a_value_steady_since_before_the_agent_connected_reaches_the_server_without_a_false_gap(
    bundle, tmp_path, settings
):
    # The agent's OPC UA client states the catch-up read current and its first held value carries it on
    # (connectivity.hold), as the server's bridge does; the forwarded readings lost that statement, so the
    # server flagged the second reading of every steady tag "after gap" each time the agent connected.
    settings.VIGIL_SCORING_ENQUEUE = False
    steady_since = time.time() - 30.0
    device = await start_opcua_device(free_port(), initial={"pressure": 4.0}, initial_ts=steady_since)
    try:
        token, sensor = await fetch(server_plant)
        (tmp_path / "points.csv").write_text(
            f"sensor,node_id,sampling_interval_ms\n{sensor.key},{device.node_id('pressure')},100\n"
        )
        source = {
            "name": "skid",
            "protocol": "opcua",
            "endpoint": device.endpoint,
            "points": "points.csv",
            "options": {"publishing_interval_ms": 50, "flush_ms": 50},
        }
        config = AgentConfig(
            server_url="http://vigil",
            token=token,
            data_dir=tmp_path / "agent",
            queue_max_bytes=64 << 20,
            heartbeat_s=3600,
            assets=(AssetConfig("p-101", bundle.path),),  # decides the bundle's pump; forwards every reading
            raw={},
        )
        agent = Agent(config)
        await agent.forwarder.close()

        async def via_django(request: httpx.Request) -> httpx.Response:
            return await asyncio.to_thread(to_django, request)

        agent.forwarder = Forwarder(
            agent.queue, config.server_url, token, transport=httpx.MockTransport(via_django)
        )
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(build_sources({"sources": [source]}, tmp_path, {}), stop))
        try:
            await until(lambda: len(readings(sensor)) >= 10)
        finally:
            stop.set()
            await running
    finally:
        await device.stop()
    stored = await fetch(readings, sensor)
    assert round(stored[0][0] - steady_since, 3) == 0.0 and stored[1][0] - steady_since > 25.0
    assert {value for _, value, _ in stored} == {4.0}
    assert not any(quality & QualityFlag.GAP for _, _, quality in stored)  # the second one was flagged
    assert agent.forwarder.stats.readings_rejected == 0
