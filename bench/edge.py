"""Edge agent benchmark (issue 16): memory, CPU, decision latency and catch-up after an outage.

    python bench/edge.py [--assets 20] [--seconds 60] [--outage-s 3600]

1. **Live** (a subprocess, so its peak RSS is the agent's own): an agent with ``--assets`` simulated pumps
   (5 sensors each) fed at 1 Hz in real time for ``--seconds``, the server unreachable (everything stays
   queued, as in an outage). Reports peak RSS (ru_maxrss), CPU share of one core, and the decision
   latency p50/p99 (a second's batch arriving → every asset decided). The same run measures the floor:
   a process that only imports numpy and onnxruntime and loads the same ONNX sessions, so the ratio says
   what the agent adds.
2. **Catch-up**: ``--outage-s`` seconds of those readings (assets × 5 × outage-s) queued, then forwarded to
   a real Vigil server (uvicorn, SQLite, ``tests``-free scratch set-up): the speed as a multiple of real
   time (target ≥ 20×).
Results go to bench/results/edge.json; the README's "Running Vigil at the edge" table quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.common import machine  # noqa: E402
from bench.edgekit import TRAIN_S, fleet_simulator, make_bundle, sensors  # noqa: E402
from bench.edgekit import ROLES  # noqa: E402
from bench.live_server import LiveServer  # noqa: E402
from detection.bundle import load_bundle, pack_bundle  # noqa: E402
from edge.forward import Forwarder  # noqa: E402
from edge.queue import LocalQueue  # noqa: E402

LIVE = r"""
import asyncio, json, sys, time
from pathlib import Path
import numpy as np
def peak_mib():
    # VmHWM, this process image's peak RSS (ru_maxrss is inherited across fork and exec: the parent's).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from connectivity.points import Sample
from edge.agent import Agent
from edge.config import AgentConfig, AssetConfig

work, seconds = Path(sys.argv[1]), int(sys.argv[2])
tags = json.loads((work / "tags.json").read_text())
config = AgentConfig(server_url="http://127.0.0.1:9", token="x", data_dir=work / "agent",
                     queue_max_bytes=512 * 1024 * 1024, heartbeat_s=3600,
                     assets=tuple(AssetConfig(tag, work / f"{tag}.zip") for tag in tags), raw={})
agent = Agent(config)
data = np.load(work / "readings.npz")
keys, ts, values, second = data["keys"], data["ts"], data["values"], data["second"]
cuts = np.searchsorted(second, np.arange(seconds + 1))

async def run():
    start = time.monotonic()
    cpu0 = time.process_time()
    for i in range(seconds):
        await asyncio.sleep(max(0.0, start + i - time.monotonic()))
        lo, hi = cuts[i], cuts[i + 1]
        await agent.sink([Sample(str(k), float(t), float(v)) for k, t, v in zip(keys[lo:hi], ts[lo:hi], values[lo:hi])])
    return time.process_time() - cpu0, time.monotonic() - start

cpu, wall = asyncio.run(run())
lat = sorted(agent.decision_latencies)
print(json.dumps({
    "cpu_share": cpu / wall,
    "p50_ms": 1000 * lat[len(lat) // 2],
    "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1],
    "rss_mib": peak_mib(),
    "queued": agent.queue.stats().readings,
}))
"""

# The floor: what numpy, onnxruntime and one inference session per distinct model take (the agent shares
# one session among the assets of one model), with the same input file loaded.
FLOOR = r"""
import json, sys
from pathlib import Path
import numpy as np
def peak_mib():
    # VmHWM, this process image's peak RSS (ru_maxrss is inherited across fork and exec: the parent's).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from detection import runtime
from detection.bundle import load_bundle
work = Path(sys.argv[1])
tags = json.loads((work / "tags.json").read_text())
sessions = {runtime.load_session(load_bundle(str(work / f"{tag}.zip")).model) for tag in tags[:1]}
data = dict(np.load(work / "readings.npz"))
print(json.dumps({"rss_mib": peak_mib()}))
"""


def prepare(work: Path, assets: int, seconds: int) -> None:
    """Each asset's bundle (the same model, its own sensor keys) and the readings of `seconds` at 1 Hz."""
    tags = [f"p-{100 + i}" for i in range(assets)]
    made = make_bundle(work)
    model = load_bundle(str(made.path)).model
    for tag in tags:
        spec = dict(made.spec, sensors={key: role for role, key in sensors(tag).items()})
        (work / f"{tag}.zip").write_bytes(pack_bundle(model, spec))
    (work / "tags.json").write_text(json.dumps(tags))
    keys, ts, values = fleet_simulator(tags).step(TRAIN_S, TRAIN_S + seconds)
    order = np.argsort(ts, kind="stable")
    np.savez(
        work / "readings.npz",
        keys=keys[order].astype(str),
        ts=ts[order],
        values=values[order],
        second=np.floor(ts[order] - TRAIN_S).astype(np.int64),
    )


def run_json(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


SETUP = """
from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site
site = Site.objects.create(slug="demo", name="Demo")
pump = AssetType.objects.create(slug="pump", name="Pump")
roles = {{key: SensorRole.objects.create(asset_type=pump, key=key, label=key) for key in {roles!r}}}
for i in range({assets}):
    tag = f"p-{{100 + i}}"
    asset = Asset.objects.create(site=site, asset_type=pump, name=tag.upper(), tag=tag)
    Sensor.objects.bulk_create(Sensor(asset=asset, key=f"demo.{{tag}}.{{key}}", role=role, valid_min=-1e9,
                                      valid_max=1e9, sample_period_s=1.0) for key, role in roles.items())
print(json.dumps({{"token": Gateway.issue(site, "edge")[1]}}))
"""


def catch_up(assets: int, outage_s: int, work: Path) -> dict:
    server = LiveServer(work)
    token = server.setup(SETUP.format(roles=ROLES, assets=assets))["token"]
    server.start()
    try:
        queue = LocalQueue(work / "queue.sqlite3", max_bytes=2 * 1024**3)
        tags = [f"p-{100 + i}" for i in range(assets)]
        sim = fleet_simulator(tags)
        now = time.time()
        t0 = now - outage_s - 60
        for start in range(0, outage_s, 300):
            keys, ts, values = sim.step(start + 14_400.0, min(start + 300, outage_s) + 14_400.0)
            queue.put_readings(
                (str(k), float(t) - 14_400.0 + t0, float(v), "good") for k, t, v in zip(keys, ts, values)
            )
        queued = queue.stats().readings

        async def drain() -> float:
            forwarder = Forwarder(queue, server.url, token, heartbeat_s=3600)
            began = time.monotonic()
            await forwarder.forward_once()
            took = time.monotonic() - began
            await forwarder.close()
            return took

        took = asyncio.run(drain())
        left = queue.stats().readings
    finally:
        server.stop()
    return {
        "outage_s": outage_s,
        "readings": queued,
        "left": left,
        "seconds": round(took, 1),
        "readings_per_s": round(queued / took),
        "x_real_time": round(outage_s / took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--outage-s", type=int, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "live").mkdir()
        (work / "catch").mkdir()
        prepare(work / "live", args.assets, int(args.seconds))
        live = run_json(LIVE, str(work / "live"), str(int(args.seconds)))
        floor = run_json(FLOOR, str(work / "live"))
        catch = catch_up(args.assets, args.outage_s, work / "catch")
    result = {
        "machine": machine(date=time.strftime("%Y-%m-%d")),
        "assets": args.assets,
        "sensors": args.assets * 5,
        "live_seconds": args.seconds,
        "live": {k: round(v, 3) if isinstance(v, float) else v for k, v in live.items()},
        "floor_rss_mib": round(floor["rss_mib"], 1),
        "rss_ratio_to_floor": round(live["rss_mib"] / floor["rss_mib"], 2),
        "catch_up": catch,
    }
    out = ROOT / "bench" / "results" / "edge.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
