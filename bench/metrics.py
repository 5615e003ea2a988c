"""Operator-trust metrics at plant scale: the metrics function, its API, the health page and the alert export
over a year of 100,000 alerts, against a bare GROUP BY count of the same alerts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/metrics.py [--repeats 7] [--reload]

Needs DATABASE_URL pointing at PostgreSQL; the URL's own database is never touched: the history goes into
`<db>_bench_metrics` (kept between runs while its alert count matches; `--reload` rebuilds it).

The history (binary-free text COPY with explicit ids, built in ~1 min): 2 sites × 100 pumps, one pump type
whose anomaly model had 3 champion versions over the 12 months (v1, v2 from month 4, v3 from month 8; v3
also ran as a shadow before its promotion), 20 technicians and 2 engineers, and **100,000 visible alerts**
(plus 3,000 shadow ones) with their AlertEvent and Feedback rows. Alerts fall on the pumps unevenly (a
few noisy pumps get many). What happens to an alert, roughly as on a real plant:

* 5 % open inside a maintenance window (suppressed): half close unseen, half become open when the window
  ends and are then handled like any other;
* 18 % auto-close untouched (ignored), 3 % auto-close and get a late verdict days later;
* 6 % are snoozed (an answer), then auto-close;
* the rest get a verdict (45 % confirmed fault — repaired / scheduled / inspected; 40 % false alarm by
  reason; 15 % not actionable), 40 % of them acknowledged first; response times are log-normal with ~12 %
  later than the 24 h follow-through window; 6 % of verdicts are corrected later (a superseding verdict);
* 150 alerts of the last two days are still open, acknowledged or snoozed (one per pump);
* 1,500 missed failures (a fault Label and a ``missed_failure`` Feedback each).

Measured, in-process, as the engineer who sees both sites (`--repeats` timed runs after one untimed):

* ``alerts.metrics.metric_rows`` for group_by ∈ {site, asset, model_version} × period ∈ {month, week},
  and, as the baseline of each, the cheapest aggregation over the same rows: a plain
  ``SELECT period, key, count(*) … GROUP BY`` of the same visible alerts (the ratio reads "the metrics cost
  N× a bare group-by count");
* ``alerts.metrics.kpis.alarm_kpis`` (the alarm-management KPIs) per kpi_period ∈ {day, shift, week}, as a
  ratio of its p95 to metric_rows site/month's (``--functions-only`` stops here);
* GET /api/v1/metrics (JSON), also with ``include=kpis``, and GET /api/v1/metrics.csv through Django's test
  Client;
* GET /alerts/health/ (rows, per-period totals, trust warnings, trend chart, page) and the KPI fragment it
  loads after itself, GET /alerts/health/kpis/ (htmx);
* GET /alerts/export.csv of every visible alert, consumed chunk by chunk: wall time, bytes and the peak RSS
  of this process while streaming (sampled every 10 ms) over its RSS just before.

The closed months and weeks are stored first, as the beat task does (alerts.metrics.closed, timed);
``--live`` stores none, so every number is counted from the alerts (the measure before they were stored).

Prints a markdown table and writes bench/results/metrics.json. Targets: the health page and the API p95
≤ 300 ms at 100,000 alerts for every grouping × period (issue 17); the export of 100,000 alerts ≤ 10 s with its memory flat (peak RSS
growth ≤ 64 MiB, whatever the number of alerts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, percentiles, pg_url, setup_django, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "metrics.json"
DB_SUFFIX = "_bench_metrics"
N_ALERTS = 100_000
N_SHADOW = 3_000
N_ACTIVE = 150
N_MISSED = 1_500
SITES, ASSETS_PER_SITE = 2, 100
TECHS_PER_SITE = 10
HOUR = 3600.0
DAY = 24 * HOUR
TARGET_PAGE_P95_MS = 300.0  # issue 17: every grouping × period of the API and the health page
TARGET_EXPORT_S = 10.0
TARGET_EXPORT_RSS_MIB = 64.0
GROUPS = ("site", "asset", "model_version")
PERIODS = ("month", "week")


def _loaded(url: str) -> bool:
    """True when `<db>_bench_metrics` holds the full history (a half-finished load is rebuilt)."""
    import psycopg

    from config.scratch_db import with_db

    name = (urlsplit(url).path.lstrip("/") or "postgres") + DB_SUFFIX
    try:
        with psycopg.connect(with_db(url, name).replace("postgres://", "postgresql://", 1)) as conn:
            alerts = conn.execute("SELECT count(*) FROM alerts_alert WHERE NOT is_shadow").fetchone()[0]
            missed = conn.execute("SELECT count(*) FROM alerts_feedback WHERE alert_id IS NULL").fetchone()[0]
    except psycopg.Error:
        return False
    return alerts == N_ALERTS and missed == N_MISSED


# --- the history -------------------------------------------------------------------------------------------


class Table:
    """Rows of one model, numbered here (explicit ids), written with one COPY at the end."""

    def __init__(self, model, columns: tuple[str, ...]) -> None:
        self.model = model
        self.columns = ("id", *columns)
        self.rows: list[tuple] = []

    def add(self, *values) -> int:
        pk = len(self.rows) + 1
        self.rows.append((pk, *values))
        return pk

    def copy(self) -> None:
        from django.db import connection

        table = self.model._meta.db_table
        # NOT NULL fields added to the model after this bench was written get their Django default or "" (the
        # database has none), so the history loads whatever the model gained since.
        defaults = [
            (field.column, field.get_default())
            for field in self.model._meta.concrete_fields
            if field.column not in self.columns
            and not field.null
            and (field.has_default() or field.empty_strings_allowed)
        ]
        extra = tuple(value for _, value in defaults)
        with connection.cursor() as cursor, cursor.connection.cursor() as raw:
            columns = ", ".join(f'"{name}"' for name in (*self.columns, *(column for column, _ in defaults)))
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in self.rows:
                    copy.write_row((*row, *extra))
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )


def load(now: dt.datetime, log) -> None:
    """Build the history described in the module docstring."""
    import numpy as np
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection, transaction

    from alerts.choices import false_alarm_reasons
    from alerts.models import Alert, AlertEvent, Feedback
    from models_registry.models import ModelStatusChange, ModelVersion
    from plant.models import Asset, Label, Site
    from plant.builders import make_pump_type

    started = time.monotonic()
    call_command("migrate", "--noinput", verbosity=0)
    rng = np.random.default_rng(7)
    year_start = now - dt.timedelta(days=365)
    history_end = now - dt.timedelta(days=2)
    pump = make_pump_type("pump")
    sites = [Site.objects.create(slug=f"plant-{s + 1}", name=f"Plant {s + 1}") for s in range(SITES)]
    assets = Asset.objects.bulk_create(
        Asset(site=site, asset_type=pump, name=f"P-{s + 1}{i + 1:02d}", tag=f"p-{s + 1}{i + 1:02d}")
        for s, site in enumerate(sites)
        for i in range(ASSETS_PER_SITE)
    )
    technician, engineer = Group.objects.get(name="technician"), Group.objects.get(name="engineer")
    techs: dict[int, list[int]] = {}
    for site in sites:
        techs[site.pk] = []
        for t in range(TECHS_PER_SITE):
            user = User.objects.create_user(f"tech-{site.slug}-{t}", password="bench")
            user.groups.add(technician)
            site.members.add(user)
            techs[site.pk].append(user.pk)
    for e in range(2):
        user = User.objects.create_user(f"engineer-{e}", password="bench", is_staff=True)
        user.groups.add(engineer)
        for site in sites:
            site.members.add(user)
    engineer_ids = list(User.objects.filter(groups=engineer).values_list("pk", flat=True))

    # Three champions in turn; v3 ran as a shadow for two months before its promotion.
    switch = [year_start, year_start + dt.timedelta(days=122), year_start + dt.timedelta(days=244)]
    versions = []
    for number, since in enumerate(switch, start=1):
        version = ModelVersion.objects.create(
            name="pump-anomaly", version=number, kind="anomaly", asset_type=pump,
            onnx_file=f"models/pump-anomaly-{number}.onnx", sha256="0" * 64, feature_spec=[],
            open_threshold=10.0, clear_threshold=5.0, status="champion" if number == 3 else "retired",
        )  # fmt: skip
        change = ModelStatusChange.objects.create(
            version=version, from_status="candidate", to_status="champion"
        )
        ModelStatusChange.objects.filter(pk=change.pk).update(at=since)
        versions.append(version.pk)
    log(f"sites, {len(assets)} pumps, users and 3 versions in {time.monotonic() - started:.1f} s")

    alerts = Table(
        Alert,
        ("asset_id", "model_version_id", "kind", "is_shadow", "state", "category", "severity", "opened_at",
         "first_window_start", "last_seen_at", "peak_score", "peak_window_end", "window_count",
         "explanation_status", "dominant_role", "snoozed_until", "snooze_reason", "closed_at", "created_at",
         "updated_at"),
    )  # fmt: skip
    events = Table(AlertEvent, ("alert_id", "at", "actor_id", "from_state", "to_state", "reason"))
    feedback = Table(
        Feedback,
        ("alert_id", "asset_id", "user_id", "kind", "verdict", "action", "reason", "note", "snoozed_until",
         "event_id", "label_id", "supersedes_id", "created_at"),
    )  # fmt: skip
    labels = Table(
        Label,
        ("asset_id", "start", "end", "kind", "fault_type", "reason", "source", "author_id", "note",
         "created_at", "verdict"),
    )  # fmt: skip
    asset_ids = np.array([a.pk for a in assets])
    site_of = {a.pk: a.site_id for a in assets}
    # A few noisy pumps carry many of the alerts, as on a real plant.
    weights = rng.lognormal(0.0, 1.0, len(asset_ids))
    weights /= weights.sum()
    span = (history_end - year_start).total_seconds()
    roles = ("vibration", "current", "pressure", "temperature")
    actions = ("repaired", "scheduled", "inspected_no_action")

    def at(base: dt.datetime, seconds: float) -> dt.datetime:
        return base + dt.timedelta(seconds=float(seconds))

    def delay(median_h: float) -> float:
        # Log-normal answer times: σ 1.3 puts ~12 % of 3-hour-median answers past 24 h.
        return float(rng.lognormal(math.log(median_h * HOUR), 1.3))

    def tech(asset: int) -> int:
        people = techs[site_of[asset]]
        return people[int(rng.integers(len(people)))]

    def version_at(moment: dt.datetime) -> int:
        return versions[sum(moment >= s for s in switch) - 1]

    def verdict_draw(category: str) -> tuple[str, str, str]:
        draw = rng.random()
        if draw < 0.45:
            return "confirmed_fault", actions[int(rng.choice(3, p=(0.5, 0.3, 0.2)))], ""
        if draw < 0.85:
            # The reasons the alert's card offers ("Sensor checked, reads true" on a sensor alert, "Link checked,
            # working" on a data-link one).
            reasons = false_alarm_reasons("anomaly", category)
            return "false_alarm", "", reasons[int(rng.choice(4, p=(0.4, 0.35, 0.15, 0.1)))].value
        return "not_actionable", "", ""

    def give_verdict(
        pk: int, asset: int, moment: dt.datetime, from_state: str, to_state: str, category: str
    ) -> None:
        verdict, action, reason = verdict_draw(category)
        user = tech(asset)
        event = events.add(pk, moment, user, from_state, to_state, verdict)
        first = feedback.add(
            pk, asset, user, "verdict", verdict, action, reason, "", None, event, None, None, moment
        )
        if rng.random() < 0.06:
            # Corrected later by an engineer: false alarm ↔ confirmed, or confirmed → not actionable.
            later = at(moment, rng.uniform(DAY, 5 * DAY))
            new = (
                ("confirmed_fault", "repaired", "")
                if verdict != "confirmed_fault"
                else ("not_actionable", "", "")
            )
            who = engineer_ids[int(rng.integers(len(engineer_ids)))]
            event = events.add(pk, later, who, to_state, to_state, f"verdict corrected → {new[0]}")
            feedback.add(pk, asset, who, "verdict", *new, "corrected", None, event, None, first, later)

    def add_alert(asset: int, opened: dt.datetime, *, shadow: bool = False, active: str = "") -> None:
        version = versions[2] if shadow else version_at(opened)
        pk = len(alerts.rows) + 1
        # Drawn first: a verdict's false-alarm reasons depend on it.
        category = "sensor_fault" if rng.random() < 0.15 else "machine_fault"
        suppressed = not shadow and not active and rng.random() < 0.05
        state = "suppressed" if suppressed else "open"
        events.add(pk, opened, None, "", state, "opened")
        shown, last = opened, opened
        closed_state, closed_at, snoozed_until, snooze_reason = "", None, None, ""
        if shadow:
            closed_state, closed_at = "auto_closed", at(opened, rng.uniform(HOUR, 12 * HOUR))
            events.add(pk, closed_at, None, "open", closed_state, "condition cleared")
        elif suppressed and rng.random() < 0.5:
            closed_state, closed_at = "auto_closed", at(opened, rng.uniform(HOUR, 6 * HOUR))
            events.add(pk, closed_at, None, "suppressed", closed_state, "condition cleared")
        else:
            if suppressed:
                shown = at(opened, rng.uniform(HOUR, 4 * HOUR))
                events.add(pk, shown, None, "suppressed", "open", "maintenance window ended")
            draw = rng.random()
            if active:
                state = active
                if active != "open":
                    user, moment = tech(asset), at(shown, delay(0.5))
                    event = events.add(pk, moment, user, "open", active, active)
                    if active == "snoozed":
                        snoozed_until, snooze_reason = at(now, 8 * HOUR), "waiting for the night shift"
                    feedback.add(
                        pk, asset, user, "acknowledge" if active == "acknowledged" else "snooze", None, "",
                        "", "", snoozed_until, event, None, None, moment,
                    )  # fmt: skip
            elif draw < 0.18:
                closed_state, closed_at = "auto_closed", at(shown, rng.uniform(HOUR, 12 * HOUR))
                events.add(pk, closed_at, None, "open", closed_state, "condition cleared")
            elif draw < 0.21:
                closed_state, closed_at = "auto_closed", at(shown, rng.uniform(HOUR, 12 * HOUR))
                events.add(pk, closed_at, None, "open", closed_state, "condition cleared")
                give_verdict(
                    pk,
                    asset,
                    at(shown, rng.uniform(1.5 * DAY, 4 * DAY)),
                    closed_state,
                    closed_state,
                    category,
                )
            elif draw < 0.27:
                user, moment = tech(asset), at(shown, delay(0.7))
                until = at(moment, 8 * HOUR)
                event = events.add(pk, moment, user, "open", "snoozed", "snoozed until the next shift")
                feedback.add(pk, asset, user, "snooze", None, "", "", "", until, event, None, None, moment)
                closed_state, closed_at = "auto_closed", at(until, rng.uniform(0, 4 * HOUR))
                events.add(pk, closed_at, None, "snoozed", closed_state, "condition cleared")
                snoozed_until, snooze_reason = until, "next shift"
            else:
                from_state, answer = "open", delay(3.0)
                if rng.random() < 0.4:
                    user, moment = tech(asset), at(shown, answer * rng.uniform(0.05, 0.6))
                    event = events.add(pk, moment, user, "open", "acknowledged", "acknowledged")
                    feedback.add(
                        pk, asset, user, "acknowledge", None, "", "", "", None, event, None, None, moment
                    )
                    from_state = "acknowledged"
                closed_state, closed_at = "resolved", at(shown, answer)
                give_verdict(pk, asset, closed_at, from_state, closed_state, category)
        state = closed_state or state
        last = max(last, closed_at or opened)
        alerts.add(
            asset, version, "anomaly", shadow, state,
            category,
            ("low", "medium", "high", "critical")[int(rng.choice(4, p=(0.4, 0.3, 0.2, 0.1)))],
            opened, at(opened, -180), at(opened, 1200), float(10 + rng.gamma(2.0, 3.0)), at(opened, 300),
            int(rng.integers(3, 200)), "ready", roles[int(rng.integers(4))], snoozed_until, snooze_reason,
            closed_at, opened, last,
        )  # fmt: skip

    closed = N_ALERTS - N_ACTIVE
    for asset, offset in zip(rng.choice(asset_ids, closed, p=weights), np.sort(rng.random(closed)) * span):
        add_alert(int(asset), at(year_start, offset))
    shadow_from = switch[2] - dt.timedelta(days=60)
    for asset, offset in zip(rng.choice(asset_ids, N_SHADOW), rng.random(N_SHADOW) * 60 * DAY):
        add_alert(int(asset), at(shadow_from, offset), shadow=True)
    for asset in rng.choice(asset_ids, N_ACTIVE, replace=False):
        state = ("open", "acknowledged", "snoozed")[int(rng.choice(3, p=(0.5, 0.35, 0.15)))]
        add_alert(int(asset), at(history_end, rng.uniform(0, 2 * DAY - HOUR)), active=state)
    for asset, offset in zip(rng.choice(asset_ids, N_MISSED, p=weights), rng.random(N_MISSED) * span):
        start = at(year_start, offset)
        reported = at(start, rng.uniform(DAY, 5 * DAY))
        user = tech(int(asset))
        label = labels.add(
            int(asset), start, at(start, 6 * HOUR), "fault", "bearing_wear", "", "feedback", user,
            "missed failure", reported, "",
        )  # fmt: skip
        feedback.add(
            None, int(asset), user, "missed_failure", "missed_failure", "", "", "", None, None, label, None,
            reported,
        )  # fmt: skip
    log(
        f"built {len(alerts.rows):,} alerts, {len(events.rows):,} events, {len(feedback.rows):,} feedback rows"
        f" in memory after {time.monotonic() - started:.1f} s"
    )
    with transaction.atomic():
        for table in (alerts, events, labels, feedback):
            table.copy()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE") if connection.get_autocommit() else cursor.execute("ANALYZE")
    log(f"copied into PostgreSQL after {time.monotonic() - started:.1f} s")


# --- measurements --------------------------------------------------------------------------------------


def _timed(fn, repeats: int) -> tuple[dict[str, float], object]:
    result = fn()  # untimed: warms the connection, the plan cache and the template loader
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples), result


def baseline_sql(period: str, group: str, site_ids: list[int]) -> tuple[str, list]:
    """The cheapest aggregation over the same rows: a bare count per (period, key) of the visible alerts."""
    from django.conf import settings

    key = {"site": "a.site_id", "asset": "al.asset_id", "model_version": "al.model_version_id"}[group]
    sql = (
        f"SELECT date_trunc(%s, al.opened_at AT TIME ZONE %s) AS p, {key} AS k, count(*)"
        " FROM alerts_alert al JOIN plant_asset a ON a.id = al.asset_id"
        " WHERE NOT al.is_shadow AND a.site_id = ANY(%s) GROUP BY 1, 2"
    )
    return sql, [period, settings.TIME_ZONE, site_ids]


def measure_functions(site_ids: list[int], repeats: int, now: dt.datetime) -> list[dict]:
    from django.db import connection

    from alerts.metrics import MetricsQuery, metric_rows

    results = []
    for group in GROUPS:
        for period in PERIODS:
            query = MetricsQuery(group_by=group, period=period)
            stats, rows = _timed(lambda q=query: metric_rows(site_ids, q, now=now), repeats)
            sql, params = baseline_sql(period, group, site_ids)

            def bare(sql=sql, params=params):
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchall()

            base, groups = _timed(bare, repeats)
            results.append(
                {
                    "group_by": group,
                    "period": period,
                    "rows": len(rows),
                    "baseline_groups": len(groups),
                    "metrics": stats,
                    "baseline": base,
                    "ratio_p50": stats["p50"] / base["p50"],
                }
            )
            print(
                f"bench: metric_rows {group}/{period}: p50 {stats['p50']:.0f} ms, p95 {stats['p95']:.0f} ms"
                f" ({len(rows)} rows); bare count p50 {base['p50']:.1f} ms → ×{stats['p50'] / base['p50']:.0f}",
                flush=True,
            )
    return results


def measure_kpis(site_ids: list[int], repeats: int, now: dt.datetime, functions: list[dict]) -> list[dict]:
    """``alerts.metrics.kpis.alarm_kpis`` per kpi_period over every alert, against metric_rows site/month
    (the ratio reads "the KPIs cost N× the existing metrics" at p95)."""
    from alerts.metrics import MetricsQuery
    from alerts.metrics.kpis import alarm_kpis
    from alerts.metrics.params import KPI_PERIODS

    reference = next(f for f in functions if (f["group_by"], f["period"]) == ("site", "month"))["metrics"]
    results = []
    for kpi_period in KPI_PERIODS:
        query = MetricsQuery(kpi_period=kpi_period)
        stats, report = _timed(lambda q=query: alarm_kpis(site_ids, q, now=now), repeats)
        buckets = sum(len(site.rows) for site in report.sites)
        ratio = stats["p95"] / reference["p95"]
        results.append(
            {"kpi_period": kpi_period, "buckets": buckets, "kpis": stats, "ratio_p95_vs_metric_rows": ratio}
        )
        print(
            f"bench: alarm_kpis {kpi_period}: p50 {stats['p50']:.0f} ms, p95 {stats['p95']:.0f} ms ({buckets}"
            f" buckets); metric_rows site/month p95 {reference['p95']:.0f} ms → ×{ratio:.2f}",
            flush=True,
        )
    return results


PAGES = [
    # Every grouping × period of the API and of the health page (the target), and the CSV.
    *(
        ("GET /api/v1/metrics (JSON)", f"/api/v1/metrics?group_by={group}&period={period}")
        for group in GROUPS
        for period in PERIODS
    ),
    ("GET /api/v1/metrics.csv", "/api/v1/metrics.csv?group_by=model_version&period=month"),
    ("GET /alerts/health/", "/alerts/health/"),
    *(
        ("GET /alerts/health/", f"/alerts/health/?group_by={group}&period={period}")
        for group in GROUPS
        for period in PERIODS
        if (group, period) != ("site", "month")  # the defaults, above
    ),
    # Neither holds to the page/API target: the KPIs are a second pass over every alert. The page loads the
    # fragment after itself; the API computes them only when asked.
    ("KPI fragment GET /alerts/health/kpis/", "/alerts/health/kpis/"),
    ("KPIs in GET /api/v1/metrics (JSON)", "/api/v1/metrics?group_by=site&period=month&include=kpis"),
]
HTMX = {"HX-Request": "true"}


def measure_pages(
    client, repeats: int, pages: list[tuple[str, str]] = PAGES, *, cold: bool = False
) -> list[dict]:
    """p50/p95 of each page; with ``cold``, each page is also timed with this process's parsed closed
    sums forgotten before every request (alerts.metrics.closed.clear_cache: what the first request of a
    process costs after a period was counted again; every request before they were kept), right before
    the warm runs, so the two are measured under the same load."""
    from django.db import connection

    from alerts.metrics.closed import clear_cache

    results = []
    for name, url in pages:

        def get(url=url, forget=False):
            if forget:
                clear_cache()
            response = client.get(url, headers=HTMX if url.startswith("/alerts/health/kpis/") else None)
            if response.status_code != 200:
                sys.exit(f"bench: GET {url} gave {response.status_code}: {response.content[:300]!r}")
            return response

        queries: list[str] = []
        with connection.execute_wrapper(
            lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
        ):
            get()
        entry = {"name": name, "url": url, "queries": len(queries)}
        if cold:
            entry["cold"], _ = _timed(lambda: get(forget=True), repeats)
        stats, response = _timed(get, repeats)
        entry.update({"bytes": len(response.content), **stats})
        results.append(entry)
        print(
            f"bench: {url}: p50 {stats['p50']:.0f} ms, p95 {stats['p95']:.0f} ms, {len(queries)} queries"
            + (f"; cold p50 {entry['cold']['p50']:.0f}, p95 {entry['cold']['p95']:.0f} ms" if cold else ""),
            flush=True,
        )
    return results


def _export_child(mode: str) -> None:
    """In a fresh process (so earlier measurements leave no freed memory to reuse): stream the export
    (``stream``) or read the same rows into one string (``materialise``); print time, bytes and RSS as JSON."""
    import psutil
    from django.contrib.auth.models import User
    from django.test import Client

    from alerts.metrics import MetricsQuery
    from alerts.metrics.export import export_alerts
    from plant.access import site_ids_for_user

    engineer = User.objects.get(username="engineer-0")
    client = Client()
    client.force_login(engineer)
    # Imports, URL resolver, session: paid before the clock starts, they are not the export's cost.
    b"".join(client.get("/alerts/export.csv?start=2031-12-31").streaming_content)
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    size = lines = chunks = 0
    if mode == "stream":
        response = client.get("/alerts/export.csv")
        if response.status_code != 200 or not response.streaming:
            sys.exit(f"bench: the export gave {response.status_code} (streaming: {response.streaming})")
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
            chunks += 1
    else:
        text = "".join(export_alerts(site_ids_for_user(engineer), MetricsQuery())).encode()
        size, lines, chunks = len(text), text.count(b"\n"), 1
    seconds = time.perf_counter() - started
    peak = max(peak, process.memory_info().rss)
    done.set()
    sampler.join()
    result = {
        "alerts": lines - 1,
        "bytes": size,
        "chunks": chunks,
        "seconds": seconds,
        "rss_before_mib": before / 2**20,
        "rss_peak_mib": peak / 2**20,
        "rss_growth_mib": (peak - before) / 2**20,
    }
    print(json.dumps(result))


def measure_export(bench_url: str, mode: str) -> dict:
    """Run ``_export_child`` in a fresh interpreter against the bench database."""
    import subprocess

    env = {**os.environ, "DATABASE_URL": bench_url}
    out = subprocess.run(
        [sys.executable, __file__, "--export-child", mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"bench: export ({mode}): {result['alerts']:,} alerts, {result['bytes'] / 2**20:.1f} MiB in"
        f" {result['seconds']:.1f} s, peak RSS +{result['rss_growth_mib']:.1f} MiB",
        flush=True,
    )
    return result


# --- report ------------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    machine = result["machine"]
    data = result["data"]
    lines = [
        f"Run {result['date']} on {machine['nproc']} × {machine['cpu']}, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, PostgreSQL; {data['alerts']:,} visible alerts ({data['shadow']:,} shadow),"
        f" {data['events']:,} events, {data['feedback']:,} feedback rows, {data['missed']:,} missed failures,"
        f" {data['assets']} assets on {data['sites']} sites, {data['versions']} model versions.",
        "",
        "| measure | rows | p50 (ms) | p95 (ms) | bare GROUP BY count p50 (ms) | × bare count | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["functions"]:
        m, b = row["metrics"], row["baseline"]
        lines.append(
            f"| `metric_rows` {row['group_by']} × {row['period']} | {row['rows']} | {m['p50']:.0f} | "
            f"{m['p95']:.0f} | {b['p50']:.1f} | {row['ratio_p50']:.0f}× | — |"
        )
    for page in [*result["pages"], *result.get("pages_jit_off", [])]:
        target = f"p95 ≤ {TARGET_PAGE_P95_MS:.0f} ms: **{'met' if page['p95'] <= TARGET_PAGE_P95_MS else 'not met'}**"
        if not page["name"].startswith("GET "):
            target = "— (loaded after the page / asked for)"
        cold = page.get("cold")
        if cold:
            target += f"; cold {cold['p50']:.0f} / {cold['p95']:.0f} ms (p95 warm ÷ cold {page['p95'] / cold['p95']:.2f})"
        lines.append(
            f"| {page['name']} `{page['url'].split('?', 1)[-1] if '?' in page['url'] else 'defaults'}`"
            f" ({page['queries']} queries) | — | {page['p50']:.0f} | {page['p95']:.0f} | — | — | {target} |"
        )
    export = result["export"]
    met = export["seconds"] <= TARGET_EXPORT_S and export["rss_growth_mib"] <= TARGET_EXPORT_RSS_MIB
    lines.append(
        f"| GET /alerts/export.csv, streamed ({export['bytes'] / 2**20:.1f} MiB, {export['chunks']} chunks) |"
        f" {export['alerts']:,} | {export['seconds'] * 1000:.0f} (one run) | — | — | — | ≤ {TARGET_EXPORT_S:.0f} s"
        f" and peak RSS +{export['rss_growth_mib']:.0f} MiB ≤ {TARGET_EXPORT_RSS_MIB:.0f} MiB"
        f" (read into one string: +{result['materialised_rss_growth_mib']:.0f} MiB): **{'met' if met else 'not met'}** |"
    )
    return "\n".join(lines)


def store_closed_periods(*, live: bool, log) -> dict:
    """What the beat task does (alerts.metrics.closed): store the closed months and weeks, timed; with
    ``live``, none is stored and every number is counted from the alerts (the measure before it existed)."""
    from alerts.metrics.closed import refresh_closed_periods
    from alerts.models import MetricsPeriod

    MetricsPeriod.objects.all().delete()
    if live:
        log("no closed period stored (--live): every number counted from the alerts")
        return {"stored": False}
    started = time.monotonic()
    counted = refresh_closed_periods()
    seconds = time.monotonic() - started
    log(f"stored {counted['month']} months and {counted['week']} weeks in {seconds:.1f} s (the beat task)")
    return {"stored": True, "seconds": seconds, **counted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each measure (default 7)")
    parser.add_argument(
        "--functions-only",
        action="store_true",
        help="time metric_rows and the alarm-management KPIs only (no pages, no export), print, write nothing",
    )
    parser.add_argument("--reload", action="store_true", help="rebuild the history even if it looks loaded")
    parser.add_argument(
        "--live",
        action="store_true",
        help="store no closed metrics period (alerts.metrics.closed): count every number from the alerts",
    )
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="time the API and the health page only (warm and cold), print, write bench/results/metrics_pages.json",
    )
    parser.add_argument("--export-child", choices=("stream", "materialise"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        setup_django(pg_url("bench/metrics.py"), Path(tempfile.mkdtemp(prefix="vigil-bench-metrics-")))
        _export_child(args.export_child)
        return
    if args.repeats < 2:
        sys.exit("--repeats must be at least 2")

    from config.scratch_db import prepare_postgres

    url = pg_url("bench/metrics.py")
    loaded = not args.reload and _loaded(url)
    bench_url = prepare_postgres(url, DB_SUFFIX, keep=loaded)
    setup_django(bench_url, Path(tempfile.mkdtemp(prefix="vigil-bench-metrics-")))
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from alerts.models import Alert, AlertEvent, Feedback
    from plant.access import site_ids_for_user
    from models_registry.models import ModelVersion
    from plant.models import Asset, Site

    log = lambda line: print(f"bench: {line}", flush=True)  # noqa: E731
    now = timezone.now().replace(microsecond=0)
    if loaded:
        from django.core.management import call_command

        log(f"reusing the history in {urlsplit(bench_url).path.lstrip('/')}")
        call_command("migrate", "--noinput", verbosity=0)  # a history loaded before the latest migrations
        load_s = None
    else:
        started = time.monotonic()
        load(now, log)
        load_s = time.monotonic() - started
    engineer = User.objects.get(username="engineer-0")
    site_ids = site_ids_for_user(engineer)
    client = Client()
    client.force_login(engineer)
    result: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_seconds": load_s,
        "data": {
            "alerts": Alert.objects.filter(is_shadow=False).count(),
            "shadow": Alert.objects.filter(is_shadow=True).count(),
            "events": AlertEvent.objects.count(),
            "feedback": Feedback.objects.filter(alert__isnull=False).count(),
            "missed": Feedback.objects.filter(kind="missed_failure").count(),
            "assets": Asset.objects.count(),
            "sites": Site.objects.count(),
            "versions": ModelVersion.objects.count(),
        },
        "repeats": args.repeats,
    }
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        result["postgresql"] = cursor.fetchone()[0]
    result["closed_periods"] = store_closed_periods(live=args.live, log=log)
    if args.pages_only:
        targets = [page for page in PAGES if page[0].startswith("GET ")]
        result["pages"] = measure_pages(client, args.repeats, targets, cold=not args.live)
        lines = [
            "| page | warm p50 / p95 ms | cold p50 / p95 ms | p95 ≤ 300 ms (warm / cold) |",
            "|---|---:|---:|---|",
        ]
        for page in result["pages"]:
            cold = page.get("cold", {"p50": float("nan"), "p95": float("nan")})
            lines.append(
                f"| `{page['url']}` | {page['p50']:.0f} / {page['p95']:.0f} | {cold['p50']:.0f} / {cold['p95']:.0f}"
                f" | {'met' if page['p95'] <= TARGET_PAGE_P95_MS else 'not met'} /"
                f" {'met' if cold['p95'] <= TARGET_PAGE_P95_MS else 'not met'} |"
            )
        table = "\n".join(lines)
        print("\n" + table)
        write_results(RESULTS.with_name("metrics_pages.json"), {**result, "table": table})
        return
    result["functions"] = measure_functions(site_ids, args.repeats, timezone.now())
    result["kpis"] = measure_kpis(site_ids, args.repeats, timezone.now(), result["functions"])
    if args.functions_only:
        return
    result["pages"] = measure_pages(client, args.repeats, cold=not args.live)
    # PostgreSQL compiles these plans with JIT (their estimated cost is high): ~1 s per query spent compiling.
    # The same page with JIT off for this session shows what `-c jit=off` in the connection options buys.
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    result["pages_jit_off"] = measure_pages(
        client, args.repeats, [("GET /alerts/health/, jit off", "/alerts/health/")]
    )
    with connection.cursor() as cursor:
        cursor.execute("RESET jit")
    result["export"] = measure_export(bench_url, "stream")
    result["materialised_rss_growth_mib"] = measure_export(bench_url, "materialise")["rss_growth_mib"]
    health = [page for page in result["pages"] if page["name"] == "GET /alerts/health/"]
    api = [page for page in result["pages"] if page["name"].startswith("GET /api/v1/metrics")]
    export = result["export"]
    result["targets"] = {
        "health_p95_ms": TARGET_PAGE_P95_MS,
        "api_p95_ms": TARGET_PAGE_P95_MS,
        "export_seconds": TARGET_EXPORT_S,
        "export_rss_growth_mib": TARGET_EXPORT_RSS_MIB,
    }
    result["targets_met"] = {
        "health_p95": all(page["p95"] <= TARGET_PAGE_P95_MS for page in health),
        "api_p95": all(page["p95"] <= TARGET_PAGE_P95_MS for page in api),
        "export_time": export["seconds"] <= TARGET_EXPORT_S,
        "export_memory_flat": export["rss_growth_mib"] <= TARGET_EXPORT_RSS_MIB,
    }
    table = report(result)
    print("\n" + table)
    write_results(RESULTS, {**result, "table": table})


if __name__ == "__main__":
    main()
