"""Scripted reliability checks of scoring with real processes (run by .ci/run after `make test`).

(a) Worker kill: a real Celery worker (prefork, concurrency 1, beat embedded) scores four assets while
    readings with one injected fault per asset stream in; it is SIGKILLed (whole process group) several
    times at random points of its runs (.ci/slow_scoring_worker.py makes each run sleep, half of it inside
    the store transaction) and restarted. Once every due mark is clear: Score rows are exactly the expected
    windows (no gap, no duplicate) and there is exactly one alert per injected fault.
(b) Redis down: our own redis-server is stopped; readings POSTed through the HTTP API (Django test client)
    get 200 and are stored with their due marks; Redis comes back, the worker's beat sweep finds the
    marks and everything is scored, again exactly.

Uses DATABASE_URL as given (CI: PostgreSQL; it is flushed first!) and starts its own Redis on a free port.
Exit 0 on success, 1 with the reason otherwise.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="vigil-reliability-"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REDIS_PORT = free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["VIGIL_SCORING_SWEEP_EVERY_S"] = "2"
os.environ["VIGIL_SCORING_SWEEP_AGE_S"] = "2"
os.environ["VIGIL_SCORING_REENQUEUE_S"] = "5"
os.environ["MEDIA_ROOT"] = str(WORK / "media")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from config.embedded_redis import redis_answers, server_command  # noqa: E402

STEP_S = 60  # seconds of readings per ingest
FAULT = (300, 480)  # seconds after the start: ramp up, hold, ramp down
BASE = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}


class CheckFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"reliability| {message}", flush=True)


# --- processes -------------------------------------------------------------------------------------------


def start_redis() -> subprocess.Popen:
    process = subprocess.Popen(
        server_command(REDIS_PORT, WORK / "redis"), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while not redis_answers("127.0.0.1", REDIS_PORT):
        if time.monotonic() > deadline:
            raise CheckFailed("redis-server did not answer")
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            process.send_signal(sig)
    process.wait(20)


def start_worker(delay_s: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_file = open(WORK / "worker.log", "a")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        [
            sys.executable, str(ROOT / ".ci" / "slow_scoring_worker.py"), str(delay_s), "-Q", "scoring,default,explain",
            "--pool", "prefork", "--concurrency", "1", "-B", "-s", str(WORK / "beat-schedule"),
            "--without-gossip", "--without-mingle", "-l", "warning", "-n", f"reliability-{time.time_ns()}@%h",
        ],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


# --- data ----------------------------------------------------------------------------------------------------


def setup_plant():
    from models_registry.services import promote, register_artifact
    from detection.features import feature_names
    from plant.models import Gateway
    from detection.onnx_graphs import build_linear_graph
    from plant.builders import make_asset, make_pump_type, make_site

    site = make_site("reliability")
    pump = make_pump_type("reliability-pump")
    assets = [make_asset(site, tag=f"r-{i}", asset_type=pump) for i in range(4)]
    names = feature_names(sorted(BASE))
    weights = np.zeros(len(names), dtype=np.float32)
    weights[names.index("vibration__mean")] = 1.0
    version = register_artifact(
        name="reliability-vib",
        kind="anomaly",
        asset_type=pump,
        onnx_bytes=build_linear_graph(len(names), weights=weights),
        feature_spec=names,
        output_spec={"name": "score", "index": 0, "direction": "higher_is_anomalous"},
        open_threshold=10.0,
        clear_threshold=5.0,
        background=np.full((10, len(names)), 2.0),
    )
    promote(version, reason="reliability check")
    _gateway, token = Gateway.issue(site, "reliability")
    return assets, version, token


def readings(asset, start: float, t0: float, seconds: int) -> tuple[list, np.ndarray, np.ndarray]:
    t = t0 + np.arange(seconds, dtype=np.float64)
    rel = t - start
    rng = np.random.default_rng(int(t0) + asset.pk)
    ramp = np.clip((rel - FAULT[0]) / 60, 0, 1) - np.clip((rel - FAULT[1]) / 60, 0, 1)
    keys, ts, values = [], [], []
    for sensor in asset.sensors.select_related("role"):
        base = BASE[sensor.role.key] + rng.normal(0, 0.05, seconds)
        if sensor.role.key == "vibration":
            base = base + 18.0 * ramp
        keys += [sensor.key] * seconds
        ts.append(t)
        values.append(base)
    return keys, np.concatenate(ts), np.concatenate(values)


def ingest_direct(assets, start: float, t0: float) -> None:
    from plant.ingest import ParsedBatch, ingest_readings

    for asset in assets:
        keys, ts, values = readings(asset, start, t0, STEP_S)
        ingest_readings(None, ParsedBatch.from_arrays(keys, ts, values))


def wait_until_scored(timeout: float) -> None:
    from alerts.models import ScoringDue

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ScoringDue.objects.filter(due=True).exists():
            return
        time.sleep(0.5)
    due = list(ScoringDue.objects.filter(due=True).values_list("asset_id", "seq"))
    raise CheckFailed(f"assets still due after {timeout:.0f} s: {due}")


def verify(assets, version, start: float, seconds: int, closed: bool) -> None:
    from alerts.models import Alert, AlertEvent, Score

    for asset in assets:
        ends = [
            e.timestamp()
            for e in Score.objects.filter(asset=asset, model_version=version)
            .order_by("window_end")
            .values_list("window_end", flat=True)
        ]
        expected = [start + s for s in range(30, seconds, 10)]
        if ends != expected:
            missing = sorted(set(expected) - set(ends))[:5]
            extra = sorted(set(ends) - set(expected))[:5]
            raise CheckFailed(
                f"{asset.tag}: {len(ends)} windows, expected {len(expected)}; missing {missing} extra {extra}"
            )
        alerts = list(Alert.objects.filter(asset=asset, is_shadow=False))
        if len(alerts) != 1:
            raise CheckFailed(f"{asset.tag}: {len(alerts)} alerts for one injected fault")
        if closed and alerts[0].state != "auto_closed":
            raise CheckFailed(f"{asset.tag}: the alert is {alerts[0].state}, expected auto_closed")
        opens = AlertEvent.objects.filter(alert__asset=asset, to_state="open").count()
        if opens != 1:
            raise CheckFailed(f"{asset.tag}: {opens} 'open' events for one alert")


# --- the checks ----------------------------------------------------------------------------------------------


def check_worker_kill(assets, version, start: float, minutes: int) -> int:
    worker = start_worker(delay_s=0.6)
    kills = 0
    try:
        for minute in range(minutes):
            ingest_direct(assets, start, start + minute * STEP_S)
            time.sleep(random.uniform(0.2, 0.8))
            if minute % 3 == 1:
                from alerts.models import ScoringDue

                pending = ScoringDue.objects.filter(due=True).count()
                stop(worker, signal.SIGKILL)
                kills += 1
                log(
                    f"SIGKILLed the worker after minute {minute + 1} with {pending} asset(s) due; restarting it"
                )
                worker = start_worker(delay_s=0.6)
        wait_until_scored(120)
        verify(assets, version, start, minutes * STEP_S, closed=True)
        log(f"(a) worker kill: {kills} SIGKILLs, every window scored exactly once, one alert per fault")
    finally:
        stop(worker, signal.SIGKILL)
    return kills


def check_redis_down(assets, version, token: str, start: float, redis: subprocess.Popen, minutes: int):
    from alerts.models import ScoringDue
    from plant.models import Reading

    stop(redis)
    log("stopped Redis")
    client = Client()
    before = Reading.objects.count()
    first = minutes * STEP_S
    t0 = start + first
    slowest = 0.0
    for minute in range(5):
        for asset in assets:
            keys, ts, values = readings(asset, start, t0 + minute * STEP_S, STEP_S)
            body = {
                "readings": [
                    {"sensor": k, "ts": t, "value": v} for k, t, v in zip(keys, ts.tolist(), values.tolist())
                ]
            }
            began = time.monotonic()
            response = client.post(
                "/api/v1/readings",
                body,
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
            slowest = max(slowest, time.monotonic() - began)
            if response.status_code != 200:
                raise CheckFailed(
                    f"POST with Redis down answered {response.status_code}: {response.content[:200]!r}"
                )
    stored = Reading.objects.count() - before
    due = ScoringDue.objects.filter(due=True).count()
    if stored != 5 * STEP_S * 4 * len(assets) or due != len(assets):
        raise CheckFailed(f"with Redis down: {stored} readings stored, {due} assets due")
    log(
        f"(b) Redis down: 20 POSTs answered 200 (slowest {slowest:.2f} s), {stored} readings and {due} marks stored"
    )
    redis = start_redis()
    worker = start_worker(delay_s=0.0)
    try:
        wait_until_scored(90)
        verify(assets, version, start, first + 5 * STEP_S, closed=True)
        log("(b) Redis back: the sweep found every mark and scoring caught up exactly")
    finally:
        stop(worker, signal.SIGKILL)
    return redis


def main() -> int:
    random.seed(int(os.environ.get("RELIABILITY_SEED", "1")))
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)  # flush empties the groups the migrations create
    redis = start_redis()
    try:
        assets, version, token = setup_plant()
        start = float(int(time.time()) // 60 * 60 - 3 * 3600)
        minutes = 12
        check_worker_kill(assets, version, start, minutes)
        redis = check_redis_down(assets, version, token, start, redis, minutes)
        log("OK")
        return 0
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        log_path = WORK / "worker.log"
        if log_path.exists():
            print(log_path.read_text()[-5000:])
        return 1
    finally:
        stop(redis)


if __name__ == "__main__":
    sys.exit(main())
