"""Closed metrics periods, pre-aggregated (alerts.metrics.closed): the numbers read from the stored cells
are the live ones for every grouping × period, before and after a late verdict, and a period is only
read while nothing in it can change."""

from __future__ import annotations

import importlib
import random
from datetime import date, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from alerts.choices import ACTIVE_STATES
from alerts.metrics import MetricsQuery, health_report
from alerts.metrics.closed import ClosedPart, clear_cache, refresh_closed_periods
from alerts.metrics.params import GROUP_BYS, PERIODS, period_label
from alerts.metrics.rows import rows_and_drivers
from alerts.models import Alert, Feedback, MetricsCell, MetricsPeriod
from alerts.services import record_feedback
from tests.alerts.test_metrics_golden import NOW, at, auto_close, open_alert, site_ids
from tests.conftest import make_asset

VERDICTS = [
    "confirm:repaired",
    "confirm:scheduled",
    "confirm:inspected_no_action",
    "false_alarm:sensor_glitch",
    "false_alarm:normal_operating_change",
    "not_actionable",
]


def add_random_history(golden, seed: int) -> list[Alert]:
    """Random alerts on three new assets over May-November 2026: answered in or past the window, acked
    first, auto-closed untouched or with a late verdict, suppressed and shown later, corrected."""
    rng = random.Random(seed)
    pump, fan = golden.p101.asset_type, golden.f201.asset_type
    assets = [
        (make_asset(golden.north, "p-150", pump), golden.pump_v1, golden.pump_v2),
        (make_asset(golden.north, "p-151", pump), golden.pump_v1, golden.pump_v2),
        (make_asset(golden.south, "f-250", fan), golden.fan_v1, golden.fan_v1),
    ]
    alerts = []
    for asset, early, late in assets:
        moment = at(5, 2)
        while True:
            moment += timedelta(hours=rng.uniform(20, 120))
            if moment > NOW - timedelta(days=2):
                break
            version = early if moment < at(8, 1, 0) else late
            suppressed = rng.random() < 0.1
            alert = open_alert(asset, version, moment, suppressed=suppressed)
            alerts.append(alert)
            shown = moment
            if suppressed:
                alert.refresh_from_db()
                if rng.random() < 0.5:
                    auto_close(alert, moment + timedelta(hours=2))
                    continue
                shown = moment + timedelta(hours=rng.uniform(1, 4))
                alert.transition("open", reason="maintenance window ended", at=shown)
            user = golden.tess if asset.site_id == golden.north.pk else golden.engineer
            draw = rng.random()
            if draw < 0.2:
                auto_close(alert, shown + timedelta(hours=rng.uniform(1, 10)))
            elif draw < 0.3:
                auto_close(alert, shown + timedelta(hours=rng.uniform(1, 10)))
                record_feedback(
                    alert, user, rng.choice(VERDICTS), now=shown + timedelta(hours=rng.uniform(30, 90))
                )
            else:
                answer = shown + timedelta(hours=rng.lognormvariate(1.0, 1.3))
                if rng.random() < 0.3:
                    record_feedback(alert, user, "acknowledge", now=answer)
                    answer += timedelta(hours=rng.uniform(0.1, 5))
                record_feedback(alert, user, rng.choice(VERDICTS), now=answer)
                if rng.random() < 0.1:
                    record_feedback(
                        alert, golden.engineer, rng.choice(VERDICTS), now=answer + timedelta(days=1)
                    )
            alert.refresh_from_db()
            if alert.state in ACTIVE_STATES:
                auto_close(alert, alert.last_seen_at + timedelta(hours=12))
    # A false alarm recorded without a reason (older rows): counted as "unknown".
    no_reason = Feedback.objects.filter(alert__in=alerts, verdict="false_alarm").first()
    Feedback.objects.filter(pk=no_reason.pk).update(reason="")
    return alerts


QUERIES = [
    *(MetricsQuery(group_by=group, period=period) for group in GROUP_BYS for period in PERIODS),
    MetricsQuery(group_by="asset", period="week", start=date(2026, 6, 10), end=date(2026, 9, 20)),
    MetricsQuery(group_by="site", period="month", start=date(2026, 7, 1), end=date(2026, 8, 31)),
]


def snapshot(golden, query: MetricsQuery, *, group_by="query", site=None):
    """Every number of the rows and of the driver counts, in a comparable form."""
    if site is not None:
        query = MetricsQuery(group_by=query.group_by, period=query.period, site=site)
    rows, drivers = rows_and_drivers(
        site_ids(golden), query, now=NOW, group_by=group_by, drivers=("asset", "model_version")
    )
    return (
        [(row.as_dict(), sorted(row.tta_s)) for row in rows],
        {name: sorted(counts, key=lambda d: (d.period, d.key)) for name, counts in drivers.items()},
    )


@pytest.fixture
def live(monkeypatch):
    """Count every number from the alerts, as before closed periods were stored."""

    def counted_live(golden, query, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr("alerts.metrics.rows.closed_part", lambda *args, **kw: ClosedPart())
            return snapshot(golden, query, **kwargs)

    return counted_live


def warnings(golden, query: MetricsQuery):
    return [
        (w.period, w.follow_through, w.reasons, w.assets, w.models)
        for w in health_report(site_ids(golden), query, now=NOW).warnings
    ]


def assert_same_as_live(golden, live) -> None:
    for query in QUERIES:
        assert snapshot(golden, query) == live(golden, query), query
        # The page's warnings read the drivers cut to each stored period's first few (ties kept).
        with pytest.MonkeyPatch.context() as patch:
            counted = warnings(golden, query)
            patch.setattr("alerts.metrics.rows.closed_part", lambda *args, **kw: ClosedPart())
            assert counted == warnings(golden, query), query
    assert snapshot(golden, QUERIES[0], group_by=None) == live(golden, QUERIES[0], group_by=None)
    assert snapshot(golden, QUERIES[1], site=golden.north) == live(golden, QUERIES[1], site=golden.north)


@pytest.mark.parametrize("seed", [1, 2])
def test_stored_periods_give_the_live_numbers_for_every_grouping_and_period(golden, live, seed):
    alerts = add_random_history(golden, seed)
    counted = refresh_closed_periods(NOW)
    assert counted["month"] >= 5 and counted["week"] >= 20
    assert MetricsCell.objects.exists()
    assert any(warnings(golden, query) for query in QUERIES), "the history flags some period"
    assert_same_as_live(golden, live)

    # A late verdict on an alert of a stored period marks its month and week dirty ...
    old = next(a for a in alerts if a.opened_at < at(7, 1) and a.state == "auto_closed")
    old.refresh_from_db()
    record_feedback(old, golden.engineer, "confirm:repaired", now=NOW)
    dirty = set(MetricsPeriod.objects.filter(dirty=True).values_list("kind", "label"))
    assert {
        ("month", period_label(old.opened_at, "month")),
        ("week", period_label(old.opened_at, "week")),
    } <= dirty
    # ... which are counted again on the next read, with the verdict.
    assert_same_as_live(golden, live)
    assert not MetricsPeriod.objects.filter(dirty=True).exists()
    # And by the beat task too: after another late verdict it counts just the touched periods.
    other = next(a for a in alerts if at(8, 1) < a.opened_at < at(9, 1) and a.state == "auto_closed")
    other.refresh_from_db()
    record_feedback(other, golden.engineer, "false_alarm:sensor_glitch", now=NOW)
    assert refresh_closed_periods(NOW) == {"month": 1, "week": 1}
    assert_same_as_live(golden, live)


def test_the_health_page_numbers_come_from_the_stored_cells(golden):
    # Proof the cells are read (not the alerts again): a stored count altered by hand shows.
    refresh_closed_periods(NOW)
    before = {
        row.period: row.alerts for row in health_report(site_ids(golden), MetricsQuery(), now=NOW).totals
    }
    july = MetricsPeriod.objects.get(kind="month", label="2026-07")
    cell = MetricsCell.objects.filter(period=july).first()
    MetricsCell.objects.filter(pk=cell.pk).update(alerts=cell.alerts + 100)
    # Only a count (refresh) writes cells: this process's parsed copy of them is forgotten by hand too.
    clear_cache()
    after = {
        row.period: row.alerts for row in health_report(site_ids(golden), MetricsQuery(), now=NOW).totals
    }
    assert after == {**before, "2026-07": before["2026-07"] + 100}


def test_an_open_period_and_one_with_an_alert_not_yet_due_are_counted_live(golden):
    # A question asked on 25 November: November is open; an alert of late October shown only now (it
    # stayed in a maintenance window) is inside its window, so October is not stored either.
    late = open_alert(
        golden.p102, golden.pump_v2, datetime(2026, 10, 30, 8, tzinfo=NOW.tzinfo), suppressed=True
    )
    late.refresh_from_db()
    shown = NOW - timedelta(hours=2)
    late.transition("open", reason="maintenance window ended", at=shown)
    refresh_closed_periods(NOW)
    stored = set(MetricsPeriod.objects.filter(kind="month", dirty=False).values_list("label", flat=True))
    assert "2026-11" not in stored and "2026-10" not in stored and "2026-07" in stored
    october = next(
        row
        for row in health_report(site_ids(golden), MetricsQuery(), now=NOW).totals
        if row.period == "2026-10"
    )
    assert october.alerts >= 1 and october.due < october.alerts


def test_a_question_about_an_earlier_moment_does_not_read_counts_made_later(golden, live):
    refresh_closed_periods(NOW)
    earlier = NOW - timedelta(days=60)
    query = MetricsQuery(group_by="site", period="week")
    rows, _ = rows_and_drivers(site_ids(golden), query, now=earlier)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("alerts.metrics.rows.closed_part", lambda *args, **kw: ClosedPart())
        expected, _ = rows_and_drivers(site_ids(golden), query, now=earlier)
    assert [row.as_dict() for row in rows] == [row.as_dict() for row in expected]


def test_a_change_of_the_follow_through_window_counts_the_periods_again(golden, settings, live):
    refresh_closed_periods(NOW)
    settings.VIGIL_FOLLOW_THROUGH_HOURS = 2
    assert snapshot(golden, QUERIES[0]) == live(golden, QUERIES[0])


def test_a_change_to_an_alert_of_an_open_period_costs_no_query(golden, django_assert_num_queries):
    from django.utils import timezone

    from alerts.metrics.closed import invalidate

    refresh_closed_periods(NOW)
    # Today's alerts are in open periods (no stored period can hold them): nothing to mark.
    with django_assert_num_queries(0):
        invalidate(timezone.now() - timedelta(hours=1))
    # One of a stored period: one UPDATE.
    with django_assert_num_queries(1):
        invalidate(at(7, 10))
    assert set(MetricsPeriod.objects.filter(dirty=True).values_list("label", flat=True)) == {
        "2026-07",
        "2026-W28",
    }


def test_the_beat_task_stores_every_closed_period_once(golden, settings):
    from alerts.tasks import refresh_closed_metrics_task

    entry = settings.CELERY_BEAT_SCHEDULE["refresh-closed-metrics"]
    assert entry["task"] == "alerts.tasks.refresh_closed_metrics_task"
    assert entry["options"]["queue"] == "default"
    first = refresh_closed_metrics_task.apply().get()
    assert first["month"] >= 4 and first["week"] >= 15
    # Nothing changed since: the next run counts nothing again.
    assert refresh_closed_metrics_task.apply().get() == {"month": 0, "week": 0}


def test_stored_periods_are_scoped_to_the_users_sites(golden, client):
    from tests.conftest import make_site, make_user

    refresh_closed_periods()
    client.force_login(make_user("new", "engineer", make_site("west")))
    assert client.get("/alerts/health/").status_code == 200
    assert client.get("/api/v1/metrics?group_by=asset&period=week").json()["rows"] == []
    # A site filter outside the user's sites sums nothing (the live count is scoped the same way).
    assert rows_and_drivers([golden.north.pk], MetricsQuery(site=golden.south), now=NOW) == (
        [],
        {},
    )


def test_the_parsed_sums_are_reused_until_a_period_or_an_asset_changes(golden, live):
    add_random_history(golden, 3)
    refresh_closed_periods(NOW)
    query = MetricsQuery(group_by="site", period="month")
    first = snapshot(golden, query)
    assert first == live(golden, query)
    # Asked again by this process: the stored sums it parsed are reused, no cell is read.
    with CaptureQueriesContext(connection) as queries:
        assert snapshot(golden, query) == first
    assert not any(MetricsCell._meta.db_table in q["sql"] for q in queries.captured_queries)

    # Another process counts July again (its cells replaced, computed_for set in one transaction).
    def totals() -> dict[str, int]:
        return {row.period: row.alerts for row in health_report(site_ids(golden), query, now=NOW).totals}

    before = totals()
    july = MetricsPeriod.objects.get(kind="month", label="2026-07")
    MetricsCell.objects.filter(period=july).update(alerts=F("alerts") + 100)
    MetricsPeriod.objects.filter(pk=july.pk).update(computed_for=july.computed_for - timedelta(seconds=1))
    cells = MetricsCell.objects.filter(period=july).count()
    assert totals() == {**before, "2026-07": before["2026-07"] + 100 * cells}

    # An asset moved to the other site counts there at once (no alert changed: no period is marked).
    MetricsPeriod.objects.all().delete()  # the hand-made July gone: every period counted again
    refresh_closed_periods(NOW)
    assert snapshot(golden, query) == live(golden, query)
    moved = golden.p101
    moved.site = golden.south
    moved.save()
    assert snapshot(golden, query) == live(golden, query)


def test_periods_stored_before_precision_left_out_the_routed_verdicts_are_counted_again(golden):
    # Cells stored before alerts 0014 hold 0 machine verdicts: read as they are, June's precision would be
    # "—". The migration marks every stored period dirty, so the next read counts it again.
    migration = importlib.import_module("alerts.migrations.0015_metrics_cell_machine_verdicts")
    refresh_closed_periods(NOW)
    june = MetricsPeriod.objects.get(kind="month", label="2026-06")
    MetricsCell.objects.filter(period=june).update(machine_confirmed=0, machine_judged=0)
    clear_cache()
    stale = health_report(site_ids(golden), MetricsQuery(), now=NOW).totals[0]
    assert (stale.period, stale.precision) == ("2026-06", None)

    migration.recount_stored_periods(django_apps, None)
    assert not MetricsPeriod.objects.filter(dirty=False).exists()
    june_total = health_report(site_ids(golden), MetricsQuery(), now=NOW).totals[0]
    # J3, J6, J7 judged on machine-fault alerts (J6, J7 confirmed); J1 and J2 left out.
    assert (june_total.machine_confirmed, june_total.machine_judged, june_total.routed_judged) == (2, 3, 2)
