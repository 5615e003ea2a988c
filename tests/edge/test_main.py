"""`python -m edge`: the agent process as a gateway runs it — its TOML config checked before anything
starts (a mistake exits 2 naming it, never a traceback), then readings from a real Modbus device (the
simulated pump of `python -m demo.devices`) stored locally and forwarded to a real Vigil server, with a
heartbeat, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.edgekit import ROLES, make_bundle
from bench.live_server import ROOT, LiveServer
from plant.simulator_devices import modbus_address

SETUP = """
from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site
site = Site.objects.create(slug="demo", name="Demo")
pump = AssetType.objects.create(slug="pump", name="Pump")
asset = Asset.objects.create(site=site, asset_type=pump, name="P-101", tag="p-101")
for key in {roles!r}:
    role = SensorRole.objects.create(asset_type=pump, key=key, label=key)
    Sensor.objects.create(asset=asset, key=f"demo.p-101.{{key}}", role=role, valid_min=-1e6, valid_max=1e6,
                          sample_period_s=1.0)
print(json.dumps({{"token": Gateway.issue(site, "edge-1")[1]}}))
"""

COUNTS = """
from plant.models import EdgeAgent, Reading
agent = EdgeAgent.objects.first()
print(json.dumps({"readings": Reading.objects.filter(sensor__key__startswith="demo.p-101.").count(),
                  "heartbeat": agent is not None and agent.models_in_use != {}}))
"""


def write_config(
    work: Path,
    server_url: str,
    modbus_port: int,
    *,
    site: str = "demo",
    bundle: Path | None = None,
    **overrides: str,
) -> Path:
    """The agent's TOML in ``work``: the Modbus pump's five points as ``{site}.p-101.<role>``, the asset's
    ``bundle`` (a fresh bench bundle if None) and the data dir ``work/data``; ``overrides`` replace text."""
    bundle = bundle or make_bundle(work).path
    points = ["sensor,unit_id,function,address,data_type"]
    points += [f"{site}.p-101.{role},1,holding_register,{modbus_address(role)},float32" for role in ROLES]
    (work / "points.csv").write_text("\n".join(points) + "\n")
    text = f"""
[server]
url = "{server_url}"
token_env = "EDGE_TEST_TOKEN"

[agent]
data_dir = "data"
queue_max_mb = 16
heartbeat_s = 1

[[assets]]
tag = "p-101"
bundle = "{os.path.relpath(bundle, work)}"

[[sources]]
name = "skid"
protocol = "modbus"
endpoint = "modbus://127.0.0.1:{modbus_port}"
points = "points.csv"
interval_s = 0.5
"""
    for old, new in overrides.items():
        text = text.replace(old, new)
    path = work / "agent.toml"
    path.write_text(text)
    return path


def agent(
    config: Path, *args: str, token: str = "vgl_x", **kw
) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "EDGE_TEST_TOKEN": token}
    argv = [sys.executable, "-m", "edge", "--config", str(config), *args]
    if kw.get("background"):
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_good_config_checks_out(tmp_path: Path):
    result = agent(write_config(tmp_path, "http://127.0.0.1:9", 5020), "--check")
    assert result.returncode == 0, result.stderr
    assert "configuration OK: 1 asset(s), 1 source(s)" in result.stdout


@pytest.mark.parametrize(
    "old, new, error",
    [
        ('protocol = "modbus"', 'protocol = "bacnet"', "unknown protocol 'bacnet'"),
        ('points = "points.csv"', 'points = "missing.csv"', "cannot read"),
        ('url = "http://127.0.0.1:9"', 'url = "ftp://x"', "server.url must be an http(s) URL"),
        ('bundle = "bundle.zip"', 'bundle = "nope.zip"', "does not exist"),
        ("queue_max_mb = 16", "queue_max_mb = -1", "agent.queue_max_mb"),
        ('endpoint = "modbus://', 'endpoint = "opc.tcp://', "endpoint must start with"),
        ("[agent]", "[agent\n", "is not valid TOML"),
    ],
)
def test_a_config_mistake_exits_2_naming_it(tmp_path: Path, old: str, new: str, error: str):
    result = agent(write_config(tmp_path, "http://127.0.0.1:9", 5020, **{old: new}), "--check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert error in result.stderr and "Traceback" not in result.stderr


def test_a_bad_points_row_is_named_with_its_line(tmp_path: Path):
    config = write_config(tmp_path, "http://127.0.0.1:9", 5020)
    with (tmp_path / "points.csv").open("a") as handle:
        handle.write("demo.p-101.extra,1,holding_register,70000,float32\n")
    result = agent(config, "--check")
    assert result.returncode == 2 and "line 7" in result.stderr and "65535" in result.stderr


def test_the_agent_forwards_a_modbus_devices_readings_and_stops_cleanly(tmp_path: Path, devices):
    live = LiveServer(tmp_path)
    token = live.setup(SETUP.format(roles=ROLES))["token"]
    live.start()
    try:
        proc = agent(write_config(tmp_path, live.url, devices), token=token, background=True)
        deadline = time.monotonic() + 40
        seen = {"readings": 0, "heartbeat": False}
        while time.monotonic() < deadline and not (seen["readings"] >= 25 and seen["heartbeat"]):
            time.sleep(2)
            assert proc.poll() is None, proc.stdout.read()
            seen = live.setup(COUNTS)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        live.stop()
    assert seen["readings"] >= 25 and seen["heartbeat"], (seen, out[-2000:])
    assert proc.returncode == 0 and "Traceback" not in out, out[-2000:]
