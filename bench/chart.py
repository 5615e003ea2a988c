"""Asset chart benchmark: server time of the chart endpoint over 30 and 365 days on a 10 M-reading table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/chart.py [--requests 30]

Needs DATABASE_URL pointing at PostgreSQL; the URL's own database is never touched. `<db>_chartbench` is
created, migrated and loaded once (kept between runs while its row counts match; `--reload` rebuilds it):
one pump with four sensors, **the last 30 days at 1 Hz** (4 x 2,592,000 readings) and the 335 days before
at one reading a minute, written by SQL generate_series (a sine, noise and 0.1 % spike-flagged readings).
The rollups are then built by the product's own beat-task code (plant.rollups.roll_up_readings), timed.

Measured in-process with Django's test Client (logged in as a superuser): GET /assets/<pk>/chart.json for
the last 30 days and the last 365 days, `--warmup` times untimed then `--requests` times timed (p50/p95/
max, points per trace, queries), and, as the baseline in the same run, the 30-day chart read from raw
readings (the chart before rollups: SQL buckets over the raw table). Data sizes (rows, table + index
bytes) are reported. Prints a markdown table and writes bench/results/chart.json. Targets: p95 ≤ 200 ms
(30 days), ≤ 300 ms (365 days).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, percentiles, pg_url, setup_django, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "chart.json"
TARGETS_MS = {"30 days": 200.0, "365 days": 300.0}
DENSE_DAYS, SPARSE_DAYS = 30, 335
N_SENSORS = 4
N_READINGS = N_SENSORS * (DENSE_DAYS * 86400 + SPARSE_DAYS * 1440)


def _loaded(url: str) -> bool:
    """True when `<db>_chartbench` holds all its readings (its rollups are caught up by `load_rollups`)."""
    import psycopg

    from config.scratch_db import with_db

    name = (urlsplit(url).path.lstrip("/") or "postgres") + "_chartbench"
    try:
        with psycopg.connect(with_db(url, name).replace("postgres://", "postgresql://", 1)) as conn:
            readings = conn.execute("SELECT count(*) FROM plant_reading").fetchone()[0]
    except psycopg.Error:
        return False
    return readings >= N_READINGS


def load(now: dt.datetime, log) -> dict:
    """Write the readings with generate_series; returns the time it took."""
    from django.core.management import call_command
    from django.db import connection

    from plant.builders import make_asset, make_site

    call_command("migrate", "--noinput", verbosity=0)
    asset = make_asset(make_site("bench"), "p-1")
    sensor_ids = list(asset.sensors.order_by("pk").values_list("pk", flat=True))
    dense_start = now - dt.timedelta(days=DENSE_DAYS)
    sparse_start = dense_start - dt.timedelta(days=SPARSE_DAYS)
    started = time.monotonic()
    with connection.cursor() as cursor:
        for k, sensor_id in enumerate(sensor_ids):
            for first, last, step in (
                (sparse_start, dense_start - dt.timedelta(minutes=1), "1 minute"),
                (dense_start, now - dt.timedelta(seconds=1), "1 second"),
            ):
                cursor.execute(
                    "INSERT INTO plant_reading (sensor_id, ts, value, quality)"
                    " SELECT %s, t, 10 * sin(extract(epoch FROM t) / 3600.0) + %s + random(),"
                    " CASE WHEN random() < 0.001 THEN 2 ELSE 0 END"
                    " FROM generate_series(%s::timestamptz, %s::timestamptz, %s::interval) t",
                    [sensor_id, 5 * k, first, last, step],
                )
            log(f"readings of sensor {k + 1}/{len(sensor_ids)} written")
        cursor.execute("ANALYZE plant_reading")
    readings_s = time.monotonic() - started
    log(f"readings in {readings_s:.0f} s")
    return {"readings_s": round(readings_s, 1)}


def load_rollups(log) -> dict:
    """Roll up what is not rolled up yet with the product's code (all of it on a fresh database)."""
    from django.db import connection

    from plant import rollups

    started = time.monotonic()
    report = rollups.roll_up_readings(pass_ids=1_000_000)
    rollup_s = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE plant_readingrollupminute; ANALYZE plant_readingrolluphour")
    log(f"rollups: {report.passes} passes in {rollup_s:.0f} s")
    return {"rollup_s": round(rollup_s, 1), "rollup_passes": report.passes}


def sizes() -> dict:
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in ("plant_reading", "plant_readingrollupminute", "plant_readingrolluphour"):
            cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
            rows, size = cursor.fetchone()
            out[table] = {"rows": rows, "mib": round(size / 2**20, 1)}
    return out


def measure(requests: int, warmup: int, now: dt.datetime) -> list[dict]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from plant import charts
    from plant.models import Asset

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench")
    client = Client()
    client.force_login(user)
    asset = Asset.objects.get(tag="p-1")
    base = f"/assets/{asset.pk}/chart.json"
    # Explicit ranges ending where the data ends (the site's time zone is UTC), so a reused database
    # charts the same readings as a fresh one.
    month, year = (
        f"{base}?start={now - dt.timedelta(days=d):%Y-%m-%dT%H:%M:%S}&end={now:%Y-%m-%dT%H:%M:%S}"
        for d in (30, 365)
    )
    cases = [
        ("30 days", month, None),
        ("365 days", year, None),
        # The baseline: the same 30-day chart from raw readings (the chart before rollups).
        ("30 days, raw (before)", month, lambda seconds, budget: None),
    ]
    results = []
    for name, url, level_for in cases:
        original = charts.level_for
        if level_for is not None:
            charts.level_for = level_for
        try:
            n = requests if level_for is None else max(3, requests // 6)
            for _ in range(warmup if level_for is None else 1):
                response = client.get(url)
                if response.status_code != 200:
                    sys.exit(f"bench: GET {url} gave {response.status_code}: {response.content[:300]!r}")
            queries: list[str] = []
            with connection.execute_wrapper(
                lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
            ):
                response = client.get(url)
            points = charts.trace_points(response.json())
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                response = client.get(url)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
        finally:
            charts.level_for = original
        level = charts.level_for((365 if name.startswith("365") else 30) * 86400.0, 2000)
        stats = percentiles(samples)
        results.append(
            {
                "chart": name,
                "level": "raw" if level_for is not None or level is None else level.name,
                "max_points_per_trace": max(points),
                "queries": len(queries),
                "bytes": len(response.content),
                **stats,
            }
        )
        print(f"bench: {name}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, {len(queries)} queries")
    return results


def report(result: dict) -> str:
    lines = [
        "| chart | level read | points/trace | queries | p50 ms | p95 ms | max ms | target p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["charts"]:
        target = TARGETS_MS.get(row["chart"])
        lines.append(
            f"| {row['chart']} | {row['level']} | {row['max_points_per_trace']} | {row['queries']} |"
            f" {row['p50']:.1f} | {row['p95']:.1f} | {row['max']:.1f} |"
            f" {f'≤ {target:.0f} ms' if target else '—'} |"
        )
    lines.append("")
    lines.append("| table | rows | MiB (with indexes) |")
    lines.append("|---|---|---|")
    for table, size in result["data"].items():
        lines.append(f"| {table} | {size['rows']:,} | {size['mib']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="timed requests per chart (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per chart first")
    parser.add_argument("--reload", action="store_true", help="rebuild the database even if it looks loaded")
    args = parser.parse_args()
    if args.requests < 1 or args.warmup < 0:
        sys.exit("--requests must be at least 1 and --warmup at least 0")

    from config.scratch_db import prepare_postgres

    url = pg_url("bench/chart.py")
    loaded = not args.reload and _loaded(url)
    db = prepare_postgres(url, "_chartbench", keep=loaded)
    setup_django(db, Path(tempfile.mkdtemp(prefix="vigil-chartbench-")), VIGIL_SCORING_ENQUEUE="0")
    from django.db import connection

    from plant.models import Reading

    result: dict = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    log = lambda line: print(f"bench: {line}", flush=True)  # noqa: E731
    if loaded:
        log(f"reusing the loaded database {urlsplit(db).path.lstrip('/')}")
        now = Reading.objects.latest("ts").ts + dt.timedelta(seconds=1)
    else:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        result["load"] = load(now, log)
    rolled = load_rollups(log)
    if rolled["rollup_passes"]:
        result.setdefault("load", {}).update(rolled)
    result["charts"] = measure(args.requests, args.warmup, now)
    result["data"] = sizes()
    connection.close()
    rows = {row["chart"]: row for row in result["charts"]}
    result["targets_met"] = {name: rows[name]["p95"] <= target for name, target in TARGETS_MS.items()}
    table = report(result)
    print("\n" + table)
    write_results(RESULTS, {**result, "table": table})


if __name__ == "__main__":
    main()
