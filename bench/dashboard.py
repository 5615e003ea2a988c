"""Dashboard benchmark: server time of the technician pages on a big database, and reading → card latency.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/dashboard.py [--requests 50]

Needs DATABASE_URL pointing at PostgreSQL; the URL's own database is never touched.

1. Server time. `<db>_dashbench` is created, migrated and loaded once (kept between runs while its row
   counts match; `--reload` rebuilds it): the demo plant with 50 pumps and its champion anomaly model
   (trained on an hour of simulated history), 19 more sites of 25 pumps, **10,000,000 readings** (binary
   COPY: a month at 10 s for P-101, the rest at 1 Hz over every other sensor) and **100,000 alerts** over a
   year (events for each; a verdict on each resolved one, so "last similar alert" has history to search),
   of which 30 are open or acknowledged on the demo plant and 10 on every other site. One alert on P-101
   is opened for real (simulated bearing wear through ingestion and the scorer) so its explanation and its
   window's readings are real. Then, in-process with Django's test Client logged in as tech1 (demo plant
   only), each page is requested `--warmup` times untimed and `--requests` times timed: the board, that
   alert's detail page, and P-101's asset page over the last 30 days. Reported: p50/p95/max and the query
   count of one request.
2. Reading → card. A small world (bench/world.py: `<db>_dashlive`, 20 pumps, real daphne + Celery worker
   + Redis) and the system Chromium logged in on the board; for each of `--faults` pumps one batch of
   simulated bearing-wear readings is POSTed to the gateway API and the time until its card is visible on
   the open board is measured (p50/p95/max). Its database is small: the path measured (ingest, enqueue,
   scoring of the new windows, alert, broadcast, render, WebSocket) reads only the asset's latest windows.

Prints a markdown table and writes bench/results/dashboard.json. Targets: board and detail p95 ≤ 150 ms of
server time; reading → card p95 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, percentiles, pg_url, setup_django, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dashboard.json"
TARGET_PAGE_P95_MS = 150.0
TARGET_CARD_P95_MS = 1000.0
N_READINGS = 10_000_000
N_ALERTS = 100_000
DEMO_ASSETS = 50
EXTRA_SITES, EXTRA_ASSETS = 19, 25
VISIBLE_DEMO, VISIBLE_OTHER = 30, 10
MONTH_S = 30 * 86400
COPY_CHUNK = 1_000_000


# --- part 1: the big database ----------------------------------------------------------------------------


def _loaded(url: str) -> bool:
    """True when `<db>_dashbench` exists with its full row counts (a half-finished load is rebuilt)."""
    import psycopg

    from config.scratch_db import with_db

    name = (urlsplit(url).path.lstrip("/") or "postgres") + "_dashbench"
    try:
        with psycopg.connect(with_db(url, name).replace("postgres://", "postgresql://", 1)) as conn:
            readings = conn.execute("SELECT count(*) FROM plant_reading").fetchone()[0]
            alerts = conn.execute("SELECT count(*) FROM alerts_alert").fetchone()[0]
    except psycopg.Error:
        return False
    return readings >= N_READINGS and alerts >= N_ALERTS


def _copy_readings(sensor_ids, ts_s, values) -> None:
    import numpy as np
    from django.db import connection

    from plant.pgcopy import pg_copy_buffer

    for start in range(0, len(sensor_ids), COPY_CHUNK):
        chunk = slice(start, start + COPY_CHUNK)
        payload = pg_copy_buffer(
            sensor_ids[chunk],
            (ts_s[chunk] * 1e6).astype(np.int64),
            values[chunk],
            np.zeros(len(sensor_ids[chunk]), dtype=np.int16),
        )
        with connection.cursor() as cursor, cursor.connection.cursor() as raw:
            with raw.copy(
                "COPY plant_reading (sensor_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(payload)


def load(var_dir: Path, log) -> None:
    """Build the 10M-reading, 100k-alert database (see the module docstring)."""
    import numpy as np
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models import Max

    from alerts.models import Alert, AlertEvent, Feedback
    from models_registry.choices import ModelKind
    from alerts.scoring import score_assets
    from models_registry.services import current_champion
    from plant.ingest import ParsedBatch, ingest_readings
    from plant.builders import make_role_sensors
    from plant.models import Asset, AssetType, Reading, Sensor, Site
    from demo.seed import PUMP_ROLES, bootstrap_demo_champion, seed_demo
    from plant.simulator import PlantSimulator, SimAsset
    from bench.world import AssetInfo, World

    # No Redis needed here: the one real alert's broadcast fails, harmlessly, and need not print a traceback.
    logging.getLogger("alerts.broadcast").setLevel(logging.CRITICAL)
    started = time.monotonic()
    call_command("migrate", "--noinput", verbosity=0)
    now = float(int(time.time()))
    history_end = now - 600.0
    seed_demo(assets=DEMO_ASSETS, credentials_path=var_dir / "credentials.json")
    bootstrap_demo_champion(hours=1.0, now=history_end, log=log)
    pump = AssetType.objects.get(slug="centrifugal-pump")
    champion = current_champion(pump, ModelKind.ANOMALY)
    score_assets(list(Asset.objects.values_list("pk", flat=True)))
    log(f"seeded the demo plant and its champion in {time.monotonic() - started:.0f} s")

    # One real alert on P-101: simulated bearing wear through ingestion and the scorer.
    p101 = Asset.objects.get(tag="p-101")
    last = Reading.objects.filter(sensor__asset=p101).aggregate(m=Max("ts"))["m"].timestamp()
    world = World(
        "", "", {}, {"p-101": AssetInfo("p-101", p101.pk, p101.name, "demo-plant", last)}, {}, var_dir
    )
    readings = world.fault_readings("p-101", seconds=240)
    ingest_readings(
        None,
        ParsedBatch.from_arrays(
            [r["sensor"] for r in readings], [r["ts"] for r in readings], [r["value"] for r in readings]
        ),
        now_s=now + 300,
    )
    score_assets([p101.pk])
    real = Alert.objects.get(asset=p101, state="open")
    log(f"real alert #{real.pk} on P-101 ({real.category}, {real.severity})")

    # 19 more sites of 25 pumps each.
    roles = {role.key: role for role in pump.roles.all()}
    for s in range(EXTRA_SITES):
        site = Site.objects.create(slug=f"bench-{s + 1:02d}", name=f"Bench site {s + 1:02d}")
        assets = Asset.objects.bulk_create(
            Asset(
                site=site,
                asset_type=pump,
                name=f"B{s + 1:02d}-{i + 1:02d} pump",
                tag=f"b{s + 1:02d}-{i + 1:02d}",
            )
            for i in range(EXTRA_ASSETS)
        )
        make_role_sensors(site, assets, roles, PUMP_ROLES)

    # Readings: a month of P-101 at 10 s (simulated), then 1 Hz history for every other sensor.
    month_end = history_end - 3600.0
    sim = PlantSimulator(
        [SimAsset("p-101", {k: f"demo-plant.p-101.{k}" for k, *_ in PUMP_ROLES})], sample_period_s=10.0
    )
    keys, ts, values = sim.step(month_end - MONTH_S, month_end)
    sensor_of = dict(Sensor.objects.filter(asset=p101).values_list("key", "pk"))
    _copy_readings(np.array([sensor_of[k] for k in keys.tolist()], dtype=np.int64), ts, values)
    others = np.array(
        Sensor.objects.exclude(asset=p101).order_by("pk").values_list("pk", flat=True), dtype=np.int64
    )
    have = Reading.objects.count()
    per_sensor = -(-(N_READINGS - have) // len(others))
    rng = np.random.default_rng(0)
    nominal = np.array([2.0, 55.0, 60.0, 6.0, 250.0])
    for first in range(0, len(others), max(1, COPY_CHUNK // per_sensor)):
        group = others[first : first + max(1, COPY_CHUNK // per_sensor)]
        sensor_ids = np.repeat(group, per_sensor)
        ts_s = np.tile(month_end - per_sensor + np.arange(per_sensor, dtype=np.float64), len(group))
        values = np.repeat(nominal[group % 5], per_sensor) * (1.0 + rng.normal(0, 0.02, len(sensor_ids)))
        _copy_readings(sensor_ids, ts_s, values)
    log(f"{Reading.objects.count():,} readings after {time.monotonic() - started:.0f} s")

    # Alerts over a year: closed ones everywhere, a few visible per site (one active alert per asset).
    tech1 = User.objects.get(username="tech1")
    asset_ids = list(Asset.objects.order_by("pk").values_list("pk", "site__slug"))
    explanation, why = real.explanation, real.dominant_role
    rng = np.random.default_rng(1)
    year = 365 * 86400
    visible_left = {slug: VISIBLE_DEMO if slug == "demo-plant" else VISIBLE_OTHER for _pk, slug in asset_ids}
    active_on: set[int] = {p101.pk}
    total = N_ALERTS - Alert.objects.count()
    severities, categories = ["low", "medium", "high", "critical"], ["machine_fault", "sensor_fault"]
    batch: list[Alert] = []

    def flush() -> None:
        with transaction.atomic():
            created = Alert.objects.bulk_create(batch)
            events, feedback = [], []
            for alert in created:
                events.append(
                    AlertEvent(
                        alert=alert, at=alert.opened_at, from_state="", to_state="open", reason="bench"
                    )
                )
                if alert.closed_at is not None:
                    events.append(
                        AlertEvent(
                            alert=alert,
                            at=alert.closed_at,
                            from_state="open",
                            to_state=alert.state,
                            reason="bench",
                        )
                    )
            events = AlertEvent.objects.bulk_create(events)
            for event in events:
                if event.to_state == "resolved":
                    alert = event.alert
                    feedback.append(
                        Feedback(
                            alert=alert, asset_id=alert.asset_id, user=tech1, kind="verdict",
                            verdict="confirmed_fault", action="repaired", note="bench: replaced the bearing",
                            event=event, created_at=event.at,
                        )
                    )  # fmt: skip
            Feedback.objects.bulk_create(feedback)
        batch.clear()

    for i in range(total):
        pk, slug = asset_ids[int(rng.integers(len(asset_ids)))]
        opened = dt.datetime.fromtimestamp(now - year + rng.random() * (year - 7200), tz=dt.UTC)
        active = pk not in active_on and visible_left[slug] > 0 and rng.random() < 0.02
        state = (
            ("open" if rng.random() < 0.7 else "acknowledged")
            if active
            else ("resolved" if rng.random() < 0.6 else "auto_closed")
        )
        if active:
            active_on.add(pk)
            visible_left[slug] -= 1
            opened = dt.datetime.fromtimestamp(now - rng.random() * 86400 * 3, tz=dt.UTC)
        peak = float(real.peak_score * (0.5 + rng.random()))
        batch.append(
            Alert(
                asset_id=pk, model_version=champion, kind="anomaly", state=state,
                category=categories[int(rng.random() < 0.3)], severity=severities[int(rng.integers(4))],
                opened_at=opened, first_window_start=opened - dt.timedelta(seconds=80),
                last_seen_at=opened + dt.timedelta(minutes=20), peak_score=peak,
                peak_window_end=opened + dt.timedelta(minutes=5), window_count=120, explanation=explanation,
                explanation_status="ready", dominant_role=why,
                closed_at=None if active else opened + dt.timedelta(hours=2),
            )
        )  # fmt: skip
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    log(f"{Alert.objects.count():,} alerts after {time.monotonic() - started:.0f} s")


def measure_pages(requests: int, warmup: int) -> list[dict]:
    from django.db import connection
    from django.test import Client

    from alerts.models import Alert
    from django.contrib.auth.models import User
    from plant.models import Asset

    tech1 = User.objects.get(username="tech1")
    p101 = Asset.objects.get(tag="p-101")
    alert = Alert.objects.filter(asset=p101, state__in=["open", "acknowledged"]).order_by("pk").first()
    visible = Alert.objects.filter(
        asset__site__slug="demo-plant", state__in=["open", "acknowledged", "snoozed"]
    ).count()
    client = Client()
    client.force_login(tech1)
    pages = [
        ("board", "/alerts/", f"{visible} visible alerts of tech1's site"),
        ("alert detail", f"/alerts/{alert.pk}/", f"alert #{alert.pk} on P-101, real explanation"),
        ("asset page, 30 days", f"/assets/{p101.pk}/?range=30d", "P-101: a month of readings at 10 s"),
    ]
    results = []
    for name, url, what in pages:
        for _ in range(warmup):
            response = client.get(url)
            if response.status_code != 200:
                sys.exit(f"bench: GET {url} gave {response.status_code}")
        queries: list[str] = []
        with connection.execute_wrapper(
            lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
        ):
            client.get(url)
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        stats = percentiles(samples)
        results.append(
            {
                "page": name,
                "url": url,
                "what": what,
                "queries": len(queries),
                "bytes": len(response.content),
                **stats,
            }
        )
        print(f"bench: {name}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, {len(queries)} queries")
    return results


# --- part 2: reading → card in a real browser ------------------------------------------------------------


def measure_live(database_url: str, faults: int, transport=None) -> dict:
    """Reading → card over `faults` pumps. `transport(world)` is a context manager giving the function that
    sends a fault's readings (default: one POST to the gateway API; bench/protocol_latency.py publishes
    them over MQTT to the bridge)."""
    from playwright.sync_api import sync_playwright

    from bench.browser import CHROMIUM, CHROMIUM_ARGS, card_of, open_board
    from bench.world import start_world

    world = start_world(
        Path(tempfile.mkdtemp(prefix="vigil-dashlive-")),
        database_url=database_url,
        db_suffix="_dashlive",
        assets=max(faults, 1),
    )
    samples: list[float] = []
    try:
        with (
            transport(world) if transport else contextlib.nullcontext(world.post_readings) as send_readings,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(base_url=world.base_url, viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto("/accounts/login/")
            page.fill("#id_username", "tech1")
            page.fill("#id_password", world.passwords["tech1"])
            with page.expect_navigation():
                page.click("button[type=submit]")
            open_board(page)
            tags = sorted(world.assets, key=lambda tag: world.assets[tag].id)
            tags = [tag for tag in tags if world.assets[tag].site == "demo-plant"][:faults]
            for tag in tags:
                readings = world.fault_readings(tag)
                card = card_of(page, world.assets[tag].name)
                started = time.perf_counter()
                send_readings(readings)
                card.wait_for(state="visible", timeout=30_000)
                samples.append((time.perf_counter() - started) * 1000)
                print(f"bench: {tag}: card visible {samples[-1]:.0f} ms after sending its readings")
                time.sleep(0.5)  # the next fault finds an idle worker, like an isolated real one
            browser.close()
    finally:
        world.stop()
    return {"faults": len(samples), "readings_per_post": len(readings), **percentiles(samples)}


# --- report ------------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    lines = [
        f"Run {result['date']} on {result['machine']['nproc']} × {result['machine']['cpu']}, "
        f"{result['machine']['memory_gib']} GiB, Python {result['machine']['python']}; "
        f"{result['data']['readings']:,} readings, {result['data']['alerts']:,} alerts in PostgreSQL.",
        "",
        "| measure | what | n | p50 (ms) | p95 (ms) | max (ms) | queries | target p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result.get("pages", []):
        target = f"≤ {TARGET_PAGE_P95_MS:.0f} ms" if row["page"] in ("board", "alert detail") else "—"
        lines.append(
            f"| {row['page']} (server time) | {row['what']} | {row['n']} | {row['p50']:.1f} | "
            f"{row['p95']:.1f} | "
            f"{row['max']:.1f} | {row['queries']} | {target} |"
        )
    if live := result.get("live"):
        lines.append(
            f"| reading POSTed → card visible | {live['readings_per_post']} readings per POST, real browser"
            " | "
            f"{live['n']} | {live['p50']:.0f} | {live['p95']:.0f} | {live['max']:.0f} | — | "
            f"≤ {TARGET_CARD_P95_MS:.0f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page first")
    parser.add_argument("--faults", type=int, default=20, help="faults for the reading → card latency")
    parser.add_argument(
        "--reload", action="store_true", help="rebuild the big database even if it looks loaded"
    )
    parser.add_argument("--skip-pages", action="store_true", help="only the reading → card part")
    parser.add_argument("--skip-live", action="store_true", help="only the server-time part")
    args = parser.parse_args()
    if args.requests < 1 or args.faults < 1:
        sys.exit("--requests and --faults must be at least 1")

    from config.scratch_db import prepare_postgres

    url = pg_url("bench/dashboard.py")
    loaded = not args.reload and _loaded(url)
    big = prepare_postgres(url, "_dashbench", keep=loaded)
    var_dir = Path(tempfile.mkdtemp(prefix="vigil-dashbench-"))
    setup_django(big, var_dir, VIGIL_SCORING_ENQUEUE="0")  # the load scores in-process
    from django.db import connection

    from alerts.models import Alert

    result: dict = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    if not args.skip_pages:
        if loaded:
            print(f"bench: reusing the loaded database {urlsplit(big).path.lstrip('/')}")
        else:
            load(var_dir, log=lambda line: print(f"bench: {line}", flush=True))
        result["pages"] = measure_pages(args.requests, args.warmup)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM plant_reading")
        result["data"] = {"readings": cursor.fetchone()[0], "alerts": Alert.objects.count()}
    connection.close()
    if not args.skip_live:
        result["live"] = measure_live(url, args.faults)
    pages = {row["page"]: row for row in result.get("pages", [])}
    result["targets_met"] = {
        "board_p95": pages["board"]["p95"] <= TARGET_PAGE_P95_MS if "board" in pages else None,
        "detail_p95": pages["alert detail"]["p95"] <= TARGET_PAGE_P95_MS if "alert detail" in pages else None,
        "card_p95": result["live"]["p95"] <= TARGET_CARD_P95_MS if "live" in result else None,
    }
    table = report(result)
    print("\n" + table)
    write_results(RESULTS, {**result, "table": table})


if __name__ == "__main__":
    main()
