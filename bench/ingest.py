"""Ingest benchmark: readings/s through POST /api/v1/readings vs a raw COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/ingest.py

Needs DATABASE_URL pointing at PostgreSQL; the script drops and re-creates a `<name>_bench` database on
that server (it never touches the database named in the URL). It then
  1. starts a real uvicorn server on a free port against that database and posts batches of 10,000 fresh
     readings over one keep-alive httpx connection for at least --seconds seconds;
  2. truncates plant_reading and COPYs exactly the same rows into it, batch by batch, one commit each;
  3. repeats step 1 against a fresh SQLite database;
  4. compares the readings table's layouts: two more fresh databases, one with plant_reading
     range-partitioned (90 days of weekly partitions and the DEFAULT one, as in production) and one converted
     back to a plain table (plant.storage.unpartition_table), each behind its own web server, take the same
     kind of fresh batches in alternating legs (ABBA order per pair, so drift cancels); the ratio is
     partitioned / plain readings/s;
and samples the web process's RSS throughout. It prints a markdown table and writes
bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402

from bench.common import free_port, machine, write_results  # noqa: E402
from plant.pgcopy import pg_copy_buffer  # noqa: E402
from demo.supervisor import web_server_command  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest.json"
BATCH = 10_000
# PostgreSQL binary COPY: header, rows of (field count, then length + big-endian value per field), trailer.
ROLES = ("vibration", "current", "pressure", "temperature")


@dataclass
class Run:
    """One measured phase: how many readings in how many seconds, and the web process's peak RSS."""

    name: str
    readings: int
    seconds: float
    peak_rss_mib: float | None = None

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


# --- fixture (runs in a subprocess with DATABASE_URL set to the bench database) ----------------------------
def setup_fixture(n_assets: int, layout: str = "") -> dict:
    """Migrate, create a site with n_assets pumps (4 sensors each) and a gateway; return token and sensor ids.

    layout "plain": plant_reading converted back to an unpartitioned table; "partitioned": the partitions of
    the last 90 days exist (a production table's shape), not just the current period and those ahead."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site

    call_command("migrate", verbosity=0)
    from django.utils import timezone

    from plant import storage

    if layout == "plain":
        storage.unpartition_table(storage.table_name())
    elif layout == "partitioned":
        storage.ensure_partitions(timezone.now() - dt.timedelta(days=90), timezone.now())
    site, _ = Site.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    pump, _ = AssetType.objects.get_or_create(slug="bench-pump", defaults={"name": "Bench pump"})
    roles = [
        SensorRole.objects.get_or_create(asset_type=pump, key=key, defaults={"label": key})[0]
        for key in ROLES
    ]
    for n in range(n_assets):
        asset, created = Asset.objects.get_or_create(
            site=site, tag=f"b-{n:03d}", defaults={"asset_type": pump, "name": f"B-{n:03d}"}
        )
        if created:
            Sensor.objects.bulk_create(
                Sensor(
                    asset=asset, key=f"bench.b-{n:03d}.{role.key}", role=role, valid_min=-1e6, valid_max=1e6
                )
                for role in roles
            )
    _, token = Gateway.issue(site, f"bench-{time.time_ns()}")
    sensors = dict(Sensor.objects.filter(asset__site=site).values_list("key", "id"))
    return {"token": token, "sensors": sensors}


def prepare_database(env: dict[str, str], n_assets: int, layout: str = "") -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--setup", str(n_assets), "--layout", layout],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        sys.exit(f"bench: preparing {env['DATABASE_URL']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- batches -------------------------------------------------------------------------------------------
class Batches:
    """Batch i holds BATCH readings: every sensor at consecutive 1 s steps, after those of batch i-1.

    Timestamps start 30 days ago, so every batch is new rows (no duplicates) and none is in the future.
    """

    def __init__(self, sensors: dict[str, int]) -> None:
        self.keys = sorted(sensors)
        self.ids = [sensors[key] for key in self.keys]
        self.steps = BATCH // len(self.keys)
        self.t0 = float(int(time.time()) - 30 * 86400)

    def rows(self, i: int) -> list[tuple[int, str, float, float]]:
        """(sensor id, sensor key, epoch seconds, value) for batch i."""
        out = []
        base = self.t0 + i * self.steps
        for step in range(self.steps):
            t = base + step
            for n, (key, sensor_id) in enumerate(zip(self.keys, self.ids)):
                out.append(
                    (sensor_id, key, t, round(50.0 + 10.0 * ((t * (n + 3)) % 17) / 17.0 + n * 0.01, 4))
                )
        return out

    def body(self, i: int) -> bytes:
        readings = [{"sensor": key, "ts": t, "value": v} for _, key, t, v in self.rows(i)]
        return orjson.dumps({"readings": readings})

    def copy_binary(self, i: int) -> bytes:
        """The rows of batch i as one PostgreSQL binary COPY stream (the fastest way to load them)."""
        rows = self.rows(i)
        return pg_copy_buffer(
            np.array([row[0] for row in rows], dtype=np.int64),
            np.array([round(row[2] * 1e6) for row in rows], dtype=np.int64),
            np.array([row[3] for row in rows], dtype=np.float64),
            np.zeros(len(rows), dtype=np.int16),
        )


class Server:
    """uvicorn serving config.asgi:application on a free port (as `manage.py demo` does), with an RSS sampler."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        argv = web_server_command("127.0.0.1", self.port, "--no-access-log", "--log-level", "warning")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak_rss = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"bench: the web server exited:\n{self.output()}")
            try:
                httpx.get(self.url + "/api/v1/readings", timeout=1.0)
                self._sampler.start()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        sys.exit(f"bench: the web server did not answer within {timeout:.0f} s:\n{self.output()}")

    def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while not self._sampling.wait(0.05):
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                return
            self.peak_rss = max(self.peak_rss, rss)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        self._sampling.set()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def send_batch(client: httpx.Client, server: Server, name: str, i: int, body: bytes) -> None:
    """POST one batch; exit with the server's answer unless every reading of it was accepted."""
    response = client.post("/api/v1/readings", content=body)
    answer = response.json() if response.headers.get("content-type") == "application/json" else {}
    if response.status_code != 200 or answer.get("accepted") != BATCH:
        detail = str(answer)[:500] if answer else response.text[:500]
        sys.exit(f"bench: {name} batch {i} got HTTP {response.status_code}: {detail}\n{server.output()}")


def post_batches(name: str, env: dict[str, str], fixture: dict, min_seconds: float) -> tuple[Run, int]:
    """POST fresh batches until min_seconds have passed; returns the run and how many batches were sent."""
    batches = Batches(fixture["sensors"])
    server = Server(env)
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {fixture['token']}", "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=300) as client:

            def send(i: int, body: bytes) -> None:
                send_batch(client, server, name, i, body)

            # One untimed warm-up batch (imports, first queries, connection), then size the timed run.
            started = time.perf_counter()
            send(0, batches.body(0))
            estimate = max(time.perf_counter() - started, 0.01)
            count = max(5, int(min_seconds * 1.5 / estimate) + 1)
            bodies = [batches.body(i) for i in range(1, count + 1)]
            sent = 0
            started = time.perf_counter()
            for i, body in enumerate(bodies, start=1):
                send(i, body)
                sent += 1
                if time.perf_counter() - started >= min_seconds and sent >= 5:
                    break
            elapsed = time.perf_counter() - started
            # Top up if the estimate was too optimistic: the timed run must last min_seconds.
            i = count
            while elapsed < min_seconds:
                i += 1
                body = batches.body(i)
                t = time.perf_counter()
                send(i, body)
                elapsed += time.perf_counter() - t
                sent += 1
    finally:
        server.stop()
    return Run(name, sent * BATCH, elapsed, round(server.peak_rss / 2**20, 1)), sent


def copy_batches(database_url: str, fixture: dict, n_batches: int) -> Run:
    """Binary-COPY the rows of batches 1..n (the timed API batches) into plant_reading, a commit per batch.

    The streams are built before the clock starts: this is the database's own ceiling for these rows.
    """
    import psycopg

    batches = Batches(fixture["sensors"])
    payloads = [batches.copy_binary(i) for i in range(1, n_batches + 1)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE plant_reading")
        started = time.perf_counter()
        for payload in payloads:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(
                    "COPY plant_reading (sensor_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(payload)
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM plant_reading").fetchone()[0]
    if stored != n_batches * BATCH:
        sys.exit(f"bench: COPY stored {stored} rows, expected {n_batches * BATCH}")
    return Run("PostgreSQL, raw COPY", n_batches * BATCH, elapsed)


def compare_layouts(
    base_env: dict[str, str], database_url: str, n_assets: int, pairs: int, legs: int
) -> dict:
    """Partitioned vs plain plant_reading through the API: `pairs` pairs of legs of `legs` batches each,
    alternating (A B, then B A), each layout behind its own web server on its own fresh database."""
    from config.scratch_db import prepare_postgres

    layouts = ("partitioned", "plain")
    setups = {}
    for layout in layouts:
        env = {**base_env, "DATABASE_URL": prepare_postgres(database_url, f"_bench_{layout}")}
        setups[layout] = (env, prepare_database(env, n_assets, layout))
    servers = {layout: Server(env) for layout, (env, _) in setups.items()}
    seconds = dict.fromkeys(layouts, 0.0)
    sent = dict.fromkeys(layouts, 0)
    try:
        clients = {}
        for layout, server in servers.items():
            server.wait_ready()
            token = setups[layout][1]["token"]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            clients[layout] = httpx.Client(base_url=server.url, headers=headers, timeout=300)
        batches = {layout: Batches(setups[layout][1]["sensors"]) for layout in layouts}
        for layout in layouts:  # untimed warm-up
            send_batch(clients[layout], servers[layout], layout, 0, batches[layout].body(0))
        for pair in range(pairs):
            for layout in layouts if pair % 2 == 0 else layouts[::-1]:
                first = 1 + sent[layout]
                bodies = [batches[layout].body(i) for i in range(first, first + legs)]
                started = time.perf_counter()
                for i, body in enumerate(bodies, start=first):
                    send_batch(clients[layout], servers[layout], layout, i, body)
                seconds[layout] += time.perf_counter() - started
                sent[layout] += legs
        for client in clients.values():
            client.close()
    finally:
        for server in servers.values():
            server.stop()
    rates = {layout: sent[layout] * BATCH / seconds[layout] for layout in layouts}
    return {
        "pairs": pairs,
        "batches_per_leg": legs,
        "readings_per_s": {layout: round(rate) for layout, rate in rates.items()},
        "partitioned_to_plain_ratio": round(rates["partitioned"] / rates["plain"], 3),
    }


# --- databases -----------------------------------------------------------------------------------------
def table(runs: list[Run], ratio: float) -> str:
    out = io.StringIO()
    out.write("| path | readings | seconds | readings/s | peak web RSS (MiB) |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for run in runs:
        rss = f"{run.peak_rss_mib:.0f}" if run.peak_rss_mib is not None else "—"
        out.write(f"| {run.name} | {run.readings:,} | {run.seconds:.2f} | {run.per_second:,.0f} | {rss} |\n")
    out.write(f"\nAPI / raw COPY on PostgreSQL: **{ratio:.2f}**\n")
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="Minimum timed duration of each API run.")
    parser.add_argument("--assets", type=int, default=25, help="Pumps in the bench site (4 sensors each).")
    parser.add_argument("--setup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, default=6, help="Alternating pairs of the layout comparison.")
    parser.add_argument(
        "--leg-batches", type=int, default=8, help="Batches per leg of the layout comparison."
    )
    parser.add_argument("--only-layouts", action="store_true", help="Run only the layout comparison.")
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite run.")
    args = parser.parse_args()
    if args.setup is not None:
        print(json.dumps(setup_fixture(args.setup, args.layout)))
        return 0
    if BATCH % (args.assets * len(ROLES)):
        parser.error(f"--assets × {len(ROLES)} must divide {BATCH}")

    database_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(database_url).scheme not in ("postgres", "postgresql"):
        parser.error("DATABASE_URL must point at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/vigil")

    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    base_env = {**os.environ, "DEBUG": "0", "LOG_LEVEL": "WARNING", "VIGIL_VAR_DIR": str(workdir)}
    from config.scratch_db import prepare_postgres

    layouts = compare_layouts(base_env, database_url, args.assets, args.pairs, args.leg_batches)
    print(
        "bench: partitioned / plain plant_reading through the API: "
        f"{layouts['readings_per_s']} readings/s, ratio {layouts['partitioned_to_plain_ratio']:.3f}"
    )
    if args.only_layouts:
        write_results(RESULTS.with_name("ingest_layouts.json"), layouts)
        return 0

    pg_url = prepare_postgres(database_url, "_bench")
    pg_env = {**base_env, "DATABASE_URL": pg_url}
    print(f"bench: PostgreSQL database {urlsplit(pg_url).path[1:]}, {args.assets * len(ROLES)} sensors")
    fixture = prepare_database(pg_env, args.assets)

    api_pg, n_batches = post_batches("PostgreSQL, HTTP API", pg_env, fixture, args.seconds)
    print(f"bench: API on PostgreSQL {api_pg.per_second:,.0f} readings/s")
    copy_pg = copy_batches(pg_url, fixture, n_batches)
    print(f"bench: raw COPY {copy_pg.per_second:,.0f} readings/s")
    runs = [api_pg, copy_pg]
    if not args.no_sqlite:
        sqlite_env = {**base_env, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}"}
        sqlite_fixture = prepare_database(sqlite_env, args.assets)
        api_sqlite, _ = post_batches("SQLite, HTTP API", sqlite_env, sqlite_fixture, args.seconds)
        print(f"bench: API on SQLite {api_sqlite.per_second:,.0f} readings/s")
        runs.append(api_sqlite)

    ratio = api_pg.per_second / copy_pg.per_second
    report = table(runs, ratio)
    print("\n" + report)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(platform=platform.platform()),
        "batch_size": BATCH,
        "sensors": len(fixture["sensors"]),
        "runs": [{**asdict(run), "readings_per_s": round(run.per_second)} for run in runs],
        "api_to_copy_ratio": round(ratio, 3),
        "layouts": layouts,
        "targets": {
            "api_pg_readings_per_s": 100_000,
            "api_to_copy_ratio": 0.4,
            "partitioned_to_plain_ratio": 0.9,
        },
        "met": {
            "api_pg_readings_per_s": api_pg.per_second >= 100_000,
            "api_to_copy_ratio": ratio >= 0.4,
            "partitioned_to_plain_ratio": layouts["partitioned_to_plain_ratio"] >= 0.9,
        },
    }
    write_results(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
