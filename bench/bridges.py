"""Bridge benchmark: MQTT -> stored readings/s through `manage.py bridge`, as a ratio to the HTTP API.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/bridges.py

Needs PostgreSQL (drops and re-creates a `<name>_bench` database, as bench/ingest.py does) and Debian's
mosquitto. In one run it
  1. posts batches of 10,000 readings through the HTTP API (bench/ingest.py's own loop) for --seconds;
  2. creates an MQTT connection with one JSON point per sensor (``items_path``: each message carries
     --per-message readings of one sensor), lets the bridge subscribe once (its persistent session),
     stops it, publishes --messages QoS 1 messages that the broker queues for that session, then starts
     `manage.py bridge` again and times it from start until every reading is stored.
Readings/s of the bridge include its start (Django setup, connect); the ratio is bridge / API.
Results: bench/results/bridges.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402

from bench.common import machine, write_results  # noqa: E402
from bench.ingest import ROLES, prepare_database, post_batches  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bridges.json"
INFLIGHT = 1000  # mosquitto's in-flight window for the bridge (max_inflight_messages), and its option


def add_connection(pg_url: str, endpoint: str) -> int:
    """The bench site's MQTT connection with one point per sensor (via the ORM, in a subprocess)."""
    code = (
        "import django, os, json; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "django.setup()\n"
        "from plant.models import Connection, PointMapping, Sensor, Site\n"
        "site = Site.objects.get(slug='bench')\n"
        f"c = Connection.objects.create(site=site, name='bench', endpoint={endpoint!r}, interval_s=0.2, "
        f"options={{'batch_max': 20000, 'max_inflight': {INFLIGHT}}})\n"
        "PointMapping.objects.bulk_create(PointMapping(connection=c, sensor=s, address={'topic': 'bench/' + "
        "s.key, 'items_path': 'r', 'value_path': 'v', 'ts_path': 't'}) for s in Sensor.objects.filter("
        "asset__site=site))\n"
        "print(c.pk)\n"
    )
    env = {**os.environ, "DATABASE_URL": pg_url}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    return int(out.stdout.strip().splitlines()[-1])


def count_readings(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT count(*) FROM plant_reading").fetchone()[0]


async def publish(port: int, keys: list[str], messages: int, per_message: int, t0: float) -> None:
    async with aiomqtt.Client("127.0.0.1", port, max_queued_outgoing_messages=0) as client:
        for m in range(messages):
            key = keys[m % len(keys)]
            base = t0 + (m // len(keys)) * per_message
            readings = [{"t": base + i, "v": 50.0 + (i % 7)} for i in range(per_message)]
            await client.publish(f"bench/{key}", orjson.dumps({"r": readings}), qos=1)


def bridge(env: dict[str, str], log: Path) -> subprocess.Popen:
    argv = [sys.executable, str(ROOT / "manage.py"), "bridge", "--site", "bench"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="Minimum timed duration of the API run.")
    parser.add_argument("--assets", type=int, default=25, help="Pumps in the bench site (4 sensors each).")
    parser.add_argument("--messages", type=int, default=2000, help="MQTT messages published.")
    parser.add_argument("--per-message", type=int, default=100, help="Readings in each MQTT message.")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(database_url).scheme not in ("postgres", "postgresql"):
        parser.error("DATABASE_URL must point at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/vigil")
    from config.scratch_db import prepare_postgres

    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-bridges-"))
    pg_url = prepare_postgres(database_url, "_bench")
    env = {**os.environ, "DEBUG": "0", "LOG_LEVEL": "WARNING", "VIGIL_VAR_DIR": str(workdir)}
    env |= {"DATABASE_URL": pg_url, "VIGIL_SCORING_ENQUEUE": "0"}
    fixture = prepare_database(env, args.assets)
    api, _ = post_batches("PostgreSQL, HTTP API", env, fixture, args.seconds)
    print(f"bench: API {api.per_second:,.0f} readings/s")

    broker = Mosquitto(workdir)
    broker.config.write_text(broker.config.read_text() + f"max_inflight_messages {INFLIGHT}\n")
    broker.start()
    try:
        add_connection(pg_url, broker.endpoint)
        log = workdir / "bridge.log"
        first = bridge(env, log)  # subscribes once: the broker keeps the session and queues for it
        deadline = time.monotonic() + 60
        while "bridge:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)
        first.terminate()
        first.wait(20)
        before = count_readings(pg_url)
        # Fresh timestamps after the API's rows: 30 days ago plus a day.
        t0 = float(int(time.time()) - 29 * 86400)
        keys = sorted(fixture["sensors"])
        asyncio.run(publish(broker.port, keys, args.messages, args.per_message, t0))
        expected = args.messages * args.per_message
        started = time.perf_counter()
        second = bridge(env, log)
        first_stored = None
        try:
            while (stored := count_readings(pg_url) - before) < expected:
                if stored and first_stored is None:
                    first_stored = time.perf_counter()
                if second.poll() is not None or time.perf_counter() - started > 600:
                    sys.exit(f"bench: the bridge stopped or stalled:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        finally:
            second.terminate()
            second.wait(20)
    finally:
        broker.stop()
    rate = expected / elapsed
    ratio = rate / api.per_second
    steady = expected / (started + elapsed - first_stored) if first_stored else rate
    print(
        f"\n| path | readings | seconds | readings/s |\n|---|---:|---:|---:|\n"
        f"| HTTP API | {api.readings:,} | {api.seconds:.2f} | {api.per_second:,.0f} |\n"
        f"| MQTT -> bridge (from its start) | {expected:,} | {elapsed:.2f} | {rate:,.0f} |\n"
        f"| MQTT -> bridge (from the first stored reading) | | | {steady:,.0f} |\n\n"
        f"bridge / API: **{ratio:.2f}** from start, **{steady / api.per_second:.2f}** once running"
    )
    write_results(
        RESULTS,
        {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(platform=platform.platform()),
            "sensors": len(fixture["sensors"]) if fixture else args.assets * len(ROLES),
            "messages": args.messages,
            "readings_per_message": args.per_message,
            "api_readings_per_s": round(api.per_second),
            "mqtt_readings_per_s": round(rate),
            "mqtt_seconds_incl_start": round(elapsed, 2),
            "mqtt_to_api_ratio": round(ratio, 3),
            "mqtt_running_readings_per_s": round(steady),
            "mqtt_running_to_api_ratio": round(steady / api.per_second, 3),
            "targets": {"mqtt_readings_per_s": 50_000},
            "met": {"mqtt_readings_per_s": rate >= 50_000},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
