"""The edge agent against a real Vigil server (uvicorn, its own database) behind a TCP link the test cuts:
ten minutes of readings with a fault starting in them arrive while the server is unreachable; the agent
decides and publishes the alert locally at once; after the link comes back the server has every reading
exactly once and the alert with the agent's own time, marked raised at the edge — and a restarted agent
sends nothing twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectivity.points import Sample
from demo.edge_link import Link
from edge.agent import Agent
from edge.config import AgentConfig, AssetConfig
from edge.forward import ForwardError
from tests.edge.conftest import ROLES, TRAIN_S, make_bundle, samples_of, sensors, simulator
from bench.live_server import LiveServer, free_port

SETUP = """
import hashlib, zipfile
from pathlib import Path
from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site
from models_registry.bundle import build_bundle
from models_registry.services import promote, register_artifact
site = Site.objects.create(slug="north", name="North")
pump = AssetType.objects.create(slug="pump", name="Pump", window_s=60, step_s=10)
asset = Asset.objects.create(site=site, asset_type=pump, name="P-101", tag="p-101")
for key in {roles!r}:
    role = SensorRole.objects.create(asset_type=pump, key=key, label=key.title())
    Sensor.objects.create(asset=asset, key=f"north.p-101.{{key}}", role=role, valid_min=-1e6, valid_max=1e6,
                          sample_period_s=1.0)
made = zipfile.ZipFile({bundle!r})
spec = json.loads(made.read("spec.json"))
version = register_artifact(
    name="pump-anomaly", kind="anomaly", asset_type=pump, onnx_bytes=made.read("model.onnx"),
    feature_spec=spec["feature_names"], output_spec=spec["output_spec"],
    open_threshold=spec["open_threshold"], clear_threshold=spec["clear_threshold"],
    background=json.loads(Path({background!r}).read_text()),
)
promote(version, reason="edge test")
Path({out!r}).write_bytes(build_bundle(version, asset))
print(json.dumps({{"token": Gateway.issue(site, "edge-1")[1], "sha256": version.sha256}}))
"""

FAULT_AFTER_S = 180.0
CUT_S = 600.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict, Path]]:
    workdir = tmp_path_factory.mktemp("edge-server")
    made = make_bundle(workdir)
    exported = workdir / "p-101.zip"
    live = LiveServer(workdir)
    try:
        background = workdir / "background.json"
        background.write_text(json.dumps(made.background))
        facts = live.setup(
            SETUP.format(roles=ROLES, bundle=str(made.path), out=str(exported), background=str(background))
        )
        live.start()
        yield live, facts, exported
    finally:
        live.stop()
    # No request failed on the server (the scoring queue is absent on purpose: its enqueue warnings are
    # expected, the due marks wait for a sweep).
    output = live.output()
    assert " 500 " not in output and "Internal Server Error" not in output, output[-3000:]


def server_facts(live: LiveServer) -> dict:
    """Readings per sensor (and duplicates: none can exist, (sensor, ts) is unique) and the alerts."""
    script = """
from django.db.models import Count
from alerts.models import Alert
from plant.models import Reading
print(json.dumps({
    "readings": Reading.objects.count(),
    "alerts": [
        {"opened_at": a.opened_at.timestamp(), "edge": a.raised_at_edge, "state": a.state}
        for a in Alert.objects.order_by("pk")
    ],
}))
"""
    return live.setup(script)


def shifted(samples: list[Sample], offset: float) -> list[Sample]:
    """The simulator's pump, renamed to the server's sensor keys and moved to the present."""
    keys = {key: f"north.p-101.{role}" for role, key in sensors().items()}
    return [Sample(keys[s.point], s.ts + offset, s.value, s.status) for s in samples]


def test_ten_minutes_cut_off_the_alert_is_local_at_once_and_the_server_gets_everything_once(
    server, tmp_path: Path
):
    live, facts, bundle = server
    published: list[tuple[float, object]] = []

    async def publisher(event) -> None:
        published.append((time.monotonic(), event))

    async def scenario() -> tuple[list, Agent]:
        # The demo's cuttable link (demo.edge_link): cut while its flag file exists.
        flag = tmp_path / "offline"
        flag.touch()
        link = Link(free_port(), "127.0.0.1", live.port, flag)
        relay = asyncio.create_task(link.serve())
        await asyncio.sleep(0.2)
        config = AgentConfig(
            server_url=f"http://127.0.0.1:{link.listen}",
            token=facts["token"],
            data_dir=tmp_path / "agent",
            queue_max_bytes=64 * 1024 * 1024,
            heartbeat_s=1.0,
            assets=(AssetConfig("p-101", bundle),),
            raw={},
        )
        agent = Agent(config, publisher=publisher)
        sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)
        offset = time.time() - CUT_S - 30.0 - TRAIN_S  # the ten minutes end 30 s ago
        # The link is down: every second of the ten minutes reaches the agent, none reaches the server.
        with pytest.raises(ForwardError):
            await agent.forwarder.forward_once()
        arrivals = []
        for second in range(int(CUT_S)):
            t = TRAIN_S + second
            arrivals.append(time.monotonic())
            await agent.sink(shifted(samples_of(sim, t, t + 1.0), offset))
        opened = [(at, e) for at, e in published if e.kind == "opened"]
        assert opened, "the fault raised no local alert while the server was unreachable"
        with pytest.raises(ForwardError):
            await agent.forwarder.forward_once()
        assert agent.queue.stats().readings == CUT_S * len(ROLES)
        # The link comes back: the queue drains.
        flag.unlink()
        await agent.forwarder.forward_once()
        assert agent.queue.stats().readings == 0 and agent.queue.stats().events == 0
        await agent.forwarder.close()
        agent.queue.close()
        relay.cancel()
        return opened, agent

    opened, agent = asyncio.run(scenario())
    event = opened[0][1]
    # Offline, the local alert still says why it opened (the exported bundle's background and words).
    assert event.sensor and event.reason, "the local alert said nothing of why it opened"
    assert TRAIN_S + FAULT_AFTER_S < event.at - (time.time() - CUT_S - 30.0 - TRAIN_S) + 60  # after the fault
    seen = server_facts(live)
    assert seen["readings"] == CUT_S * len(ROLES)  # every reading, once
    edge_alerts = [a for a in seen["alerts"] if a["edge"]]
    assert len(edge_alerts) == 1 and edge_alerts[0]["opened_at"] == pytest.approx(event.at)
    assert len(seen["alerts"]) == 1, "the server must not raise the same condition twice"

    # A restarted agent on the same data directory resumes: nothing is sent twice.
    async def restart() -> int:
        config = AgentConfig(
            server_url=live.url,
            token=facts["token"],
            data_dir=tmp_path / "agent",
            queue_max_bytes=64 * 1024 * 1024,
            heartbeat_s=1.0,
            assets=(AssetConfig("p-101", bundle),),
            raw={},
        )
        again = Agent(config)
        assert again.deciders["p-101"].in_alert  # the episode continues after the restart
        sent = await again.forwarder.forward_once()
        await again.forwarder.close()
        again.queue.close()
        return sent

    assert asyncio.run(restart()) == 0
    assert server_facts(live) == seen


def test_a_server_that_refuses_the_token_keeps_everything_queued(server, tmp_path: Path):
    live, facts, bundle = server

    async def scenario() -> tuple[int, str]:
        config = AgentConfig(
            server_url=live.url,
            token="vgl_not-a-token",
            data_dir=tmp_path / "agent",
            queue_max_bytes=8 * 1024 * 1024,
            heartbeat_s=1.0,
            assets=(AssetConfig("p-101", bundle),),
            raw={},
        )
        agent = Agent(config)
        await agent.sink([Sample("north.p-101.flow", time.time() - 5, 1.0)])
        with pytest.raises(ForwardError) as caught:
            await agent.forwarder.forward_once()
        left = agent.queue.stats().readings
        await agent.forwarder.close()
        return left, str(caught.value)

    left, error = asyncio.run(scenario())
    assert left == 1 and "401" in error and "invalid or revoked gateway token" in error


def test_the_links_to_option_with_a_port_that_is_no_number_is_a_message_not_a_traceback(tmp_path, capsys):
    from demo.edge_link import main

    assert main(["--listen", "1", "--to", "127.0.0.1:\u00b2", "--flag", str(tmp_path / "cut")]) == 2
    assert "--to must be host:port, got '127.0.0.1:\u00b2'" in capsys.readouterr().err
