"""Staged model updates between a real Vigil server (uvicorn) and the edge agent: a signed candidate is
downloaded, verified and run in shadow on live readings; the engineer's approval switches it atomically
and the server shows it active; a candidate that floods is not approved by the policy, and when switched
anyway it is rolled back by the agent itself, with the reason on the server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.agent import Agent
from edge.config import AgentConfig, AssetConfig
from edge.updater import UpdatePolicy, Updater
from edge.updates import load_public_key
from tests.edge.conftest import ROLES, TRAIN_S, make_bundle, samples_of, simulator
from tests.edge.test_agent_offline import shifted
from bench.live_server import LiveServer

SETUP = """
import zipfile
from pathlib import Path
from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site
from models_registry.bundle import build_bundle
from models_registry.edge_rollout import assign
from models_registry.services import promote, register_artifact
from models_registry.signing import public_key_pem
site = Site.objects.create(slug="north", name="North")
pump = AssetType.objects.create(slug="pump", name="Pump", window_s=60, step_s=10)
asset = Asset.objects.create(site=site, asset_type=pump, name="P-101", tag="p-101")
for key in {roles!r}:
    role = SensorRole.objects.create(asset_type=pump, key=key, label=key.title())
    Sensor.objects.create(asset=asset, key=f"north.p-101.{{key}}", role=role, valid_min=-1e6, valid_max=1e6,
                          sample_period_s=1.0)
background = json.loads(Path({background!r}).read_text())
def register(path):
    made = zipfile.ZipFile(path)
    spec = json.loads(made.read("spec.json"))
    return register_artifact(
        name="pump-anomaly", kind="anomaly", asset_type=pump, onnx_bytes=made.read("model.onnx"),
        feature_spec=spec["feature_names"], output_spec=spec["output_spec"],
        open_threshold=spec["open_threshold"], clear_threshold=spec["clear_threshold"], background=background,
    )
current = register({current!r})
promote(current, reason="edge test")
Path({out!r}).write_bytes(build_bundle(current, asset))
good, flood = register({good!r}), register({flood!r})
first = assign(good, [asset], shadow_hours=0.1)[0]
print(json.dumps({{"token": Gateway.issue(site, "edge-1")[1], "public_key": public_key_pem(),
                   "good": first.pk, "good_sha": first.bundle_sha256, "good_version": good.pk,
                   "flood_version": flood.pk}}))
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, dict, Path]]:
    made = {}
    for name, factor in (("current", 1.5), ("good", 1.6), ("flood", 0.05)):
        (tmp_path / name).mkdir()
        made[name] = make_bundle(tmp_path / name, open_factor=factor)
    current, good, flood = made["current"], made["good"], made["flood"]
    exported = tmp_path / "p-101.zip"
    background = tmp_path / "background.json"
    background.write_text(json.dumps(current.background))
    live = LiveServer(
        tmp_path, {"VIGIL_EDGE_SIGNING_KEY": str(tmp_path / "key.pem"), "VIGIL_EDGE_SHADOW_MIN_WINDOWS": "30"}
    )
    try:
        facts = live.setup(
            SETUP.format(
                roles=ROLES,
                background=str(background),
                out=str(exported),
                current=str(current.path),
                good=str(good.path),
                flood=str(flood.path),
            )
        )
        live.start()
        yield live, facts, exported
    finally:
        live.stop()


def stage_of(live: LiveServer, pk: int) -> dict:
    return live.setup(
        "from models_registry.models import EdgeAssignment\n"
        f"a = EdgeAssignment.objects.get(pk={pk})\n"
        "print(json.dumps({'stage': a.stage, 'reason': a.outcome_reason, 'report': a.shadow_report}))"
    )


def run_agent(live: LiveServer, facts: dict, bundle: Path, data_dir: Path, steps) -> None:
    """Run the agent (one updater poll per step) with `steps(agent, updater)` driving readings between."""

    async def scenario() -> None:
        config = AgentConfig(
            server_url=live.url,
            token=facts["token"],
            data_dir=data_dir,
            queue_max_bytes=64 * 1024 * 1024,
            heartbeat_s=1.0,
            assets=(AssetConfig("p-101", bundle),),
            raw={},
        )
        agent = Agent(config)
        async with httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {facts['token']}"}, timeout=30
        ) as client:
            updater = Updater(
                agent, client, load_public_key(facts["public_key"]), UpdatePolicy(rollback_factor=3.0)
            )
            await steps(agent, updater)
        await agent.forwarder.close()
        agent.queue.close()

    asyncio.run(scenario())


def feed_healthy(agent: Agent, sim, start: float, seconds: int, offset: float):
    async def go() -> None:
        for second in range(seconds):
            t = start + second
            await agent.sink(shifted(samples_of(sim, t, t + 1.0), offset))

    return go()


def test_a_signed_candidate_runs_in_shadow_and_switches_atomically_once_approved(server, tmp_path: Path):
    live, facts, bundle = server
    offset = time.time() - 3_000 - TRAIN_S

    async def steps(agent: Agent, updater: Updater) -> None:
        sim = simulator()
        await updater.poll_once()  # download, verify, install, start the shadow trial
        assert "p-101" in agent.shadows
        assert agent.store.installed("p-101", facts["good_sha"])
        await feed_healthy(agent, sim, TRAIN_S, 900, offset)
        await updater.poll_once()  # reports the trial
        report = stage_of(live, facts["good"])["report"]
        assert report["windows"] >= 60 and report["alerts_candidate"] == 0
        live.setup(
            "from models_registry.edge_rollout import decide\n"
            "from models_registry.models import EdgeAssignment\n"
            f"decide(EdgeAssignment.objects.get(pk={facts['good']}), 'approved')\nprint('{{}}')"
        )
        await updater.poll_once()  # switches
        assert agent.store.current("p-101") == facts["good_sha"]
        assert agent.deciders["p-101"].model.spec == agent.store.load("p-101").spec  # deciding with it

    run_agent(live, facts, bundle, tmp_path / "agent", steps)
    assert stage_of(live, facts["good"])["stage"] == "active"


def test_a_flooding_candidate_is_not_approved_and_a_switched_model_that_floods_is_rolled_back(
    server, tmp_path: Path
):
    live, facts, bundle = server
    offset = time.time() - 3_600 - TRAIN_S
    flood = live.setup(
        "from models_registry.edge_rollout import assign\n"
        "from models_registry.models import ModelVersion\nfrom plant.models import Asset\n"
        f"a = assign(ModelVersion.objects.get(pk={facts['flood_version']}), [Asset.objects.get(tag='p-101')],"
        " auto_approve=True)[0]\nprint(json.dumps({'pk': a.pk, 'sha': a.bundle_sha256}))"
    )
    good = {}

    async def steps(agent: Agent, updater: Updater) -> None:
        sim = simulator()
        await updater.poll_once()
        await feed_healthy(agent, sim, TRAIN_S, 900, offset)
        await updater.poll_once()
        seen = stage_of(live, flood["pk"])
        assert seen["stage"] == "shadow", "the policy approved a candidate that floods"
        report = seen["report"]
        assert report["alert_share_candidate"] > 3 * max(0.02, report["alert_share_current"])

        # A candidate that is quiet in shadow is approved and switched ...
        good.update(
            live.setup(
                "from models_registry.edge_rollout import assign, decide\n"
                "from models_registry.models import ModelVersion\nfrom plant.models import Asset\n"
                f"v = ModelVersion.objects.get(pk={facts['good_version']})\n"
                "a = assign(v, [Asset.objects.get(tag='p-101')])[0]\n"
                "print(json.dumps({'pk': a.pk, 'sha': a.bundle_sha256}))"
            )
        )
        await updater.poll_once()
        await feed_healthy(agent, sim, TRAIN_S + 900, 600, offset)
        live.setup(
            "from models_registry.edge_rollout import decide\n"
            "from models_registry.models import EdgeAssignment\n"
            f"decide(EdgeAssignment.objects.get(pk={good['pk']}), 'approved')\nprint('{{}}')"
        )
        await updater.poll_once()
        assert agent.store.current("p-101") == good["sha"]
        previous = agent.store.previous("p-101")
        # ... and then the pump's signals turn four times noisier: the new model is in alert far more
        # than its shadow trial measured, so the agent rolls back by itself.
        noisy = simulator(noise=4.0)
        await feed_healthy(agent, noisy, TRAIN_S + 1_500, 900, offset)
        await updater.poll_once()
        assert agent.store.current("p-101") == previous != good["sha"]

    run_agent(live, facts, bundle, tmp_path / "agent", steps)
    seen = stage_of(live, good["pk"])
    assert seen["stage"] == "rolled_back" and "after the switch" in seen["reason"], seen


def test_a_switched_model_stays_watched_after_a_restart_and_is_rolled_back_when_it_floods(
    server, tmp_path: Path
):
    """The agent stops (a kill, a reboot) right after a switch: the restarted agent still watches the new
    model, rolls it back when it floods and tells the server (the watch used to live only in memory)."""
    live, facts, bundle = server
    offset = time.time() - 3_600 - TRAIN_S
    data_dir = tmp_path / "agent"
    before = {}

    async def switch(agent: Agent, updater: Updater) -> None:
        await updater.poll_once()
        await feed_healthy(agent, simulator(), TRAIN_S, 900, offset)
        await updater.poll_once()
        live.setup(
            "from models_registry.edge_rollout import decide\n"
            "from models_registry.models import EdgeAssignment\n"
            f"decide(EdgeAssignment.objects.get(pk={facts['good']}), 'approved')\nprint('{{}}')"
        )
        await updater.poll_once()
        assert agent.store.current("p-101") == facts["good_sha"]
        before["previous"] = agent.store.previous("p-101")

    async def after_restart(agent: Agent, updater: Updater) -> None:
        assert "p-101" in agent.watches and updater.switched == {"p-101": facts["good"]}
        await feed_healthy(agent, simulator(noise=4.0), TRAIN_S + 900, 900, offset)
        await updater.poll_once()
        assert agent.store.current("p-101") == before["previous"] != facts["good_sha"]

    run_agent(live, facts, bundle, data_dir, switch)
    run_agent(live, facts, bundle, data_dir, after_restart)
    seen = stage_of(live, facts["good"])
    assert seen["stage"] == "rolled_back" and "after the switch" in seen["reason"], seen
