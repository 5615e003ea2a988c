"""Retention benchmark: a 30-day retention on a 90-day plant_reading, and ingest while it runs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/retention.py

Needs DATABASE_URL pointing at PostgreSQL; the script drops and re-creates a `<name>_bench_retention`
database next to it (never the one named in the URL). It
  1. migrates it and builds the ingest bench's site (bench/ingest.py: pumps with 4 sensors each, a gateway,
     the weekly partitions of the last 90 days), sets the site's retention to 30 days, COPYs 90 days of
     readings for every sensor (one every --period-s seconds) and records alerts spread over the 90 days,
     whose evidence windows retention must keep;
  2. starts a real uvicorn server and posts fresh batches of 10,000 current readings from a thread, without
     pause: --seconds of baseline, then `plant.retention.apply_retention` in a separate process (timed
     inside it, as the beat task would run it), then --seconds more;
  3. reports the retention's duration, partitions dropped, rows before/after and evidence rows kept, and the
     ingest throughput of the batches that overlapped the retention against the baseline batches (ratio),
     with the slowest batch of each. It writes bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine, write_results  # noqa: E402
from bench.ingest import BATCH, Batches, Server, prepare_database, send_batch  # noqa: E402
from plant.pgcopy import pg_copy_buffer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "retention.json"
DAYS, RETENTION_DAYS = 90, 30


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def load_history(period_s: int, n_alerts: int) -> dict:
    """(In the bench database's process.) 90 days of readings of every bench sensor, COPYed a day at a time,
    and alerts spread over them; the site keeps raw readings RETENTION_DAYS days."""
    _django()
    from django.db import connection
    from django.utils import timezone

    from alerts.models import Alert
    from models_registry.models import ModelVersion
    from plant import rollups
    from plant.models import Asset, RollupWatermark, Sensor, Site

    site = Site.objects.get(slug="bench")
    site.reading_retention_days = RETENTION_DAYS
    site.save(update_fields=["reading_retention_days"])
    sensor_ids = np.array(sorted(Sensor.objects.filter(asset__site=site).values_list("pk", flat=True)))
    now = timezone.now()
    start_us = int((now - dt.timedelta(days=DAYS)).timestamp()) * 1_000_000 + 500_000  # .5 s: no clash
    per_day = 86_400 // period_s
    rows = 0
    with connection.cursor() as cursor:
        for day in range(DAYS):
            stamps = start_us + (day * per_day + np.arange(per_day, dtype=np.int64)) * period_s * 1_000_000
            ts = np.tile(stamps, len(sensor_ids))
            ids = np.repeat(sensor_ids, len(stamps))
            values = 50.0 + np.sin(ts / 1e9)
            with cursor.copy(
                "COPY plant_reading (sensor_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(pg_copy_buffer(ids, ts, values, np.zeros(len(ts), np.int16)))
            rows += len(ts)
        cursor.execute("ANALYZE plant_reading")
    # As on a running plant, the rollups are current (the beat task): retention then only checks them
    # over what it removes. The load is the only writer, so its recheck pass would recompute the same
    # buckets again: the watermark is marked rechecked instead.
    started = time.perf_counter()
    report = rollups.roll_up_readings(pass_ids=2_000_000)
    RollupWatermark.objects.filter(name=rollups.WATERMARK).update(checked_id=report.done_id)
    rollup_s = time.perf_counter() - started
    assets = list(Asset.objects.filter(site=site))
    version = ModelVersion.objects.create(
        name="bench-retention",
        version=1,
        kind="anomaly",
        asset_type=assets[0].asset_type,
        onnx_file="models/bench-retention.onnx",
        sha256="0" * 64,
        feature_spec=["vibration__mean"],
        output_spec={"name": "score", "direction": "higher"},
        open_threshold=10.0,
        clear_threshold=5.0,
        status="champion",
    )
    alerts = []
    for n in range(n_alerts):
        opened = now - dt.timedelta(days=DAYS) + dt.timedelta(days=(n + 0.5) * DAYS / n_alerts)
        alerts.append(
            Alert(
                asset=assets[n % len(assets)],
                model_version=version,
                kind="anomaly",
                state="resolved",
                opened_at=opened,
                first_window_start=opened - dt.timedelta(minutes=1),
                last_seen_at=opened + dt.timedelta(minutes=20),
                peak_score=15.0,
                peak_window_end=opened,
                window_count=3,
                closed_at=opened + dt.timedelta(hours=1),
            )
        )
    Alert.objects.bulk_create(alerts)
    return {"readings": rows, "sensors": len(sensor_ids), "alerts": n_alerts, "rollup_s": round(rollup_s, 1)}


def run_retention() -> dict:
    """(In a process of its own, as a worker runs the beat task.) apply_retention, timed."""
    _django()
    from django.db import connection

    from plant.retention import apply_retention

    connection.ensure_connection()
    connection.force_debug_cursor = True  # record each statement's time (connection.queries)
    started_wall, started = time.time(), time.perf_counter()
    report = apply_retention()
    seconds = time.perf_counter() - started
    slowest = sorted(connection.queries, key=lambda q: -float(q["time"]))[:5]
    return {
        "seconds": round(seconds, 4),
        "wall_start": started_wall,
        "wall_end": started_wall + seconds,
        "lock_wait_s": round(report.lock_wait_s, 4),
        "locked_s": round(report.locked_s, 4),
        "detached_s": round(report.detached_s, 4),
        "drop_s": round(report.drop_s, 4),
        "dropped_partitions": len(report.dropped_partitions),
        "kept_evidence_rows": report.kept_evidence_rows,
        "deleted_rows": report.deleted_rows,
        "statements": len(connection.queries),
        "slowest_statements": [{"s": float(q["time"]), "sql": q["sql"][:120]} for q in slowest],
    }


def _subprocess(env: dict[str, str], *argv: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM plant_reading").fetchone()[0]


class Ingest(threading.Thread):
    """Posts fresh current batches without pause until stopped; records (start, end) of each, wall clock."""

    def __init__(self, server: Server, fixture: dict) -> None:
        super().__init__(daemon=True)
        self.server, self.fixture = server, fixture
        self.batches = Batches(fixture["sensors"])
        self.batches.t0 = float(int(time.time()) - 2 * 86400)  # current data, not a month old
        self.spans: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.fixture['token']}", "Content-Type": "application/json"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=300) as client:
            i = 0
            while not self.stop.is_set():
                body = self.batches.body(i)
                started = time.time()
                send_batch(client, self.server, "ingest", i, body)
                self.spans.append((started, time.time()))
                i += 1


def _rate(spans: list[tuple[float, float]]) -> tuple[float, float]:
    """Readings/s over the batches and the slowest batch's seconds."""
    seconds = sum(end - start for start, end in spans)
    return (len(spans) * BATCH / seconds if seconds else 0.0), max((e - s for s, e in spans), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets", type=int, default=25, help="Pumps in the bench site (4 sensors each).")
    parser.add_argument("--period-s", type=int, default=60, help="Seconds between two historic readings.")
    parser.add_argument("--alerts", type=int, default=45, help="Alerts spread over the 90 days.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Ingest before and after the retention.")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--retain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load_history(args.period_s, args.alerts)))
        return 0
    if args.retain:
        print(json.dumps(run_retention()))
        return 0
    database_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(database_url).scheme not in ("postgres", "postgresql"):
        parser.error("DATABASE_URL must point at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/vigil")

    from config.scratch_db import prepare_postgres

    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    url = prepare_postgres(database_url, "_bench_retention")
    env = {
        **os.environ,
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "VIGIL_VAR_DIR": str(workdir),
        "DATABASE_URL": url,
    }
    fixture = prepare_database(env, args.assets, "partitioned")
    started = time.perf_counter()
    loaded = _subprocess(env, "--load", "--period-s", str(args.period_s), "--alerts", str(args.alerts))
    print(f"bench: loaded {loaded['readings']:,} readings in {time.perf_counter() - started:.0f} s")
    before = _count(url)

    server = Server(env)
    try:
        server.wait_ready()
        ingest = Ingest(server, fixture)
        ingest.start()
        time.sleep(args.seconds)
        retention = _subprocess(env, "--retain")
        time.sleep(args.seconds)
        ingest.stop.set()
        ingest.join(60)
    finally:
        server.stop()
    after = _count(url)
    spans = ingest.spans[1:]  # the first batch warms the server up
    during = [s for s in spans if s[1] > retention["wall_start"] and s[0] < retention["wall_end"]]
    baseline = [s for s in spans if s not in during]
    base_rate, base_max = _rate(baseline)
    during_rate, during_max = _rate(during)
    ingested = len(ingest.spans) * BATCH
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(platform=platform.platform()),
        "table": {**loaded, "days": DAYS, "retention_days": RETENTION_DAYS, "period_s": args.period_s},
        "retention": retention,
        "rows_before": before,
        "rows_after": after - ingested,
        "ingest": {
            "baseline_batches": len(baseline),
            "baseline_readings_per_s": round(base_rate),
            "baseline_slowest_batch_s": round(base_max, 3),
            "during_batches": len(during),
            "during_readings_per_s": round(during_rate),
            "during_slowest_batch_s": round(during_max, 3),
            "during_to_baseline_ratio": round(during_rate / base_rate, 3) if base_rate else None,
        },
        "targets": {"retention_seconds": 1.0},
        "met": {
            "retention_seconds": retention["seconds"] < 1.0,
            "retention_seconds_without_drop": retention["seconds"] - retention["drop_s"] < 1.0,
        },
    }
    print(json.dumps(result, indent=2))
    write_results(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
