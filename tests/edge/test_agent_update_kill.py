"""`python -m edge` killed (SIGKILL) at moments around a model switch the server approved: each restart
starts ("edge: running") with a complete, loadable model — the old one or the new one, never a half —
and the agent ends on the new model with the server's assignment marked active, even when the kill came
between the switch and its report."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import httpx

from bench.live_server import LiveServer
from detection.bundle import load_bundle
from edge.model import EdgeModel
from edge.updates import ModelStore
from tests.edge.test_agent_updates import server, stage_of  # noqa: F401  (the staged-rollout server)
from tests.edge.test_main import agent, write_config

# Seconds after "edge: running" at which the agent is killed, each time restarted on the same data: the
# first poll downloads, verifies, installs and switches within a few tens of ms of it, so the first kills
# land before or inside the update and the later ones after the switch.
KILL_AFTER_S = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.4)

APPROVE = (
    "from models_registry.edge_rollout import decide\n"
    "from models_registry.models import EdgeAssignment\n"
    "decide(EdgeAssignment.objects.get(pk={pk}), 'approved')\nprint('{{}}')"
)


def update_config(work: Path, live: LiveServer, facts: dict, bundle: Path, modbus_port: int) -> Path:
    (work / "server.pub").write_text(facts["public_key"])
    return write_config(
        work,
        live.url,
        modbus_port,
        site="north",
        bundle=bundle,
        **{
            'token_env = "EDGE_TEST_TOKEN"': 'token_env = "EDGE_TEST_TOKEN"\npublic_key_file = "server.pub"',
            "heartbeat_s = 1": "heartbeat_s = 1\nupdate_poll_s = 0.5",
        },
    )


def start(config: Path, token: str) -> subprocess.Popen:
    """The agent, once it printed "edge: running" (it started with a model it could load)."""
    proc = agent(config, token=token, background=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("edge: running"):
            return proc
    proc.wait(timeout=10)
    raise AssertionError("the agent did not start:\n" + "".join(lines[-40:]))


def current_model(store: ModelStore) -> str:
    """The store's current model, loaded as the agent loads it (a half-written one would raise)."""
    sha = store.current("p-101")
    assert sha is not None, "no current model"
    EdgeModel(load_bundle(str(store.bundle_path("p-101"))))
    return sha


def wait_active(live: LiveServer, pk: int, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        seen = stage_of(live, pk)
        if seen["stage"] == "active":
            return seen
        time.sleep(0.5)
    raise AssertionError(f"the assignment is still {seen['stage']!r}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]


def test_an_agent_killed_around_a_switch_restarts_with_a_complete_model(
    server,  # noqa: F811  (the fixture imported above)
    devices,
    tmp_path: Path,
):
    live, facts, bundle = server
    work = tmp_path / "agent"
    work.mkdir()
    config = update_config(work, live, facts, bundle, devices)
    store = ModelStore(work / "data" / "models")
    live.setup(APPROVE.format(pk=facts["good"]))

    proc = start(config, facts["token"])
    first = current_model(store)
    assert first != facts["good_sha"]
    seen_at_kill = []
    for delay in KILL_AFTER_S:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        seen_at_kill.append(current_model(store))  # a complete model, whichever
        proc = start(config, facts["token"])  # and the agent starts with it
    # Each kill left the old model or the new one (the first kill comes before the switch; which of the
    # next ones come after it depends on the machine's speed).
    assert seen_at_kill[0] == first and set(seen_at_kill) <= {first, facts["good_sha"]}, seen_at_kill
    wait_active(live, facts["good"], proc)
    stop(proc)
    assert current_model(store) == facts["good_sha"] and store.previous("p-101") == first


def test_a_kill_between_the_switch_and_its_report_is_reported_after_the_restart(
    server,  # noqa: F811  (the fixture imported above)
    devices,
    tmp_path: Path,
):
    """What a kill right after ``ModelStore.switch`` leaves: the new model current on disk, the server
    still waiting for the outcome. The restarted agent reports it active (it used to stay "approved")."""
    live, facts, bundle = server
    work = tmp_path / "agent"
    work.mkdir()
    config = update_config(work, live, facts, bundle, devices)
    live.setup(APPROVE.format(pk=facts["good"]))
    headers = {"Authorization": f"Bearer {facts['token']}"}
    download = httpx.get(f"{live.url}/api/v1/edge/bundles/{facts['good']}", headers=headers, timeout=30)
    assert download.status_code == 200
    # The config's bundle installed as the first model (as edge.agent.Agent does) and the update got as
    # far as the switch: installed and current, nothing reported.
    store = ModelStore(work / "data" / "models")
    first = hashlib.sha256(bundle.read_bytes()).hexdigest()
    store.install("p-101", first, bundle.read_bytes())
    store.switch("p-101", first)
    store.install("p-101", facts["good_sha"], download.content)
    store.switch("p-101", facts["good_sha"])

    proc = start(config, facts["token"])
    assert wait_active(live, facts["good"], proc)["stage"] == "active"
    stop(proc)
    assert current_model(store) == facts["good_sha"] and store.previous("p-101") == first
