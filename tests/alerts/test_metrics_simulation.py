"""Trust erosion, simulated: technicians who answer fewer alerts the more false alarms they have seen.

One site, four healthy pumps and one noisy pump (P-105) whose alerts are all false alarms, over June,
July and August 2026. Each alert is answered within 24 h with probability 0.99·exp(−f/35), f being the
false alarms the technician has already dismissed; an alert not answered in time auto-closes and sometimes
gets a late verdict. Seeded, so follow-through goes ≈0.96 → ≈0.7 → ≈0.45 the same way every run, and
the warning must appear in July and August (not in June), naming P-105. The trust-erosion rules themselves are
tested directly on hand-made rows below.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from alerts.metrics import MetricsQuery, health_report, trust_warnings
from alerts.metrics.rows import DriverCount, MetricsRow
from alerts.services import record_feedback
from tests.alerts.test_metrics_golden import auto_close, make_version, open_alert
from tests.conftest import make_asset, make_pump_type, make_site, make_user

NOW = datetime(2026, 11, 25, tzinfo=dt_timezone.utc)
MONTHS = [(2026, 6, 30), (2026, 7, 31), (2026, 8, 31)]
NOISY_PER_MONTH = [3, 18, 22]
GOOD_PER_MONTH = 6
TAU = 35.0


def simulate(seed: int = 0):
    """Build the three months through the feedback services; returns the site, the noisy asset and the
    simulated follow-through per month (what the metrics must find)."""
    rng = random.Random(seed)
    site = make_site("north")
    pump = make_pump_type("pump")
    good = [make_asset(site, f"p-10{i}", pump) for i in range(1, 5)]
    noisy = make_asset(site, "p-105", pump)
    version = make_version(pump, "pump-anomaly", 1, champion_at=datetime(2026, 5, 1, tzinfo=dt_timezone.utc))
    tech = make_user("tess", "technician", site)
    schedule = []
    for index, (year, month, days) in enumerate(MONTHS):
        start = datetime(year, month, 1, tzinfo=dt_timezone.utc)
        for asset, count in [(noisy, NOISY_PER_MONTH[index]), *((g, GOOD_PER_MONTH) for g in good)]:
            step = days * 24 / count
            offset = rng.uniform(0, step / 2)
            schedule += [(start + timedelta(hours=offset + i * step), asset) for i in range(count)]
    schedule.sort(key=lambda item: (item[0], item[1].pk))
    false_alarms_seen = 0
    answered: dict[int, list[int]] = {}
    for opened, asset in schedule:
        is_noisy = asset.pk == noisy.pk
        verdict = (
            "false_alarm:sensor_glitch"
            if is_noisy
            else rng.choice(["confirm:repaired"] * 4 + ["not_actionable"])
        )
        alert = open_alert(asset, version, opened)
        tally = answered.setdefault(opened.month, [0, 0])
        tally[0] += 1
        if rng.random() < 0.99 * math.exp(-false_alarms_seen / TAU):
            record_feedback(alert, tech, verdict, now=opened + timedelta(hours=rng.uniform(0.1, 20)))
            tally[1] += 1
            false_alarms_seen += is_noisy
        else:
            auto_close(alert, opened + timedelta(hours=rng.uniform(6, 20)))
            if rng.random() < 0.5:
                record_feedback(alert, tech, verdict, now=opened + timedelta(hours=rng.uniform(30, 72)))
                false_alarms_seen += is_noisy
    simulated = {f"2026-{month:02d}": done / total for month, (total, done) in answered.items()}
    return site, noisy, simulated


@pytest.fixture
def simulated(db):
    return simulate(seed=0)


def test_follow_through_decays_month_by_month_as_false_alarms_pile_up(simulated):
    site, _, expected = simulated
    report = health_report([site.pk], MetricsQuery(), now=NOW)
    follow = {row.period: row.follow_through for row in report.totals}
    assert follow == pytest.approx(expected), "the metric finds what the technicians did"
    assert follow["2026-06"] >= 0.9
    assert 0.55 <= follow["2026-07"] <= 0.85
    assert 0.3 <= follow["2026-08"] < 0.6
    # The model did not change: its precision per month just reflects the noisy pump's share.
    assert all(row.precision is not None and row.precision < 1.0 for row in report.totals[1:])


def test_the_warning_fires_in_july_and_august_not_june_and_names_the_noisy_pump(simulated):
    site, noisy, _ = simulated
    report = health_report([site.pk], MetricsQuery(), now=NOW)
    assert [w.period for w in report.warnings] == ["2026-07", "2026-08"]
    july, august = report.warnings
    assert july.previous_period == "2026-06" and any(r.startswith("down") for r in july.reasons)
    assert "below 60%" in august.reasons
    for warning in report.warnings:
        top = warning.assets[0]
        assert top.key == noisy.pk and top.label.startswith("P-105")
        assert top.count > sum(d.count for d in warning.assets[1:])
        assert [d.label for d in warning.models] == ["pump-anomaly v1"]


def test_the_warning_by_week_flags_no_week_of_june(simulated):
    site, noisy, _ = simulated
    report = health_report([site.pk], MetricsQuery(period="week"), now=NOW)
    flagged = [w.period for w in report.warnings]
    assert flagged, "weekly follow-through falls too"
    assert all(period >= "2026-W28" for period in flagged), flagged
    assert all(w.assets[0].key == noisy.pk for w in report.warnings if w.assets)


# --- the rules, on hand-made rows ------------------------------------------------------------------------


def period(label: str, alerts: int, followed: int) -> MetricsRow:
    return MetricsRow(period=label, key=None, alerts=alerts, due=alerts, followed=followed)


def driver(label: str, period_label: str, dismissed: int, ignored: int = 0, key: int = 1) -> DriverCount:
    return DriverCount(period=period_label, key=key, label=label, dismissed=dismissed, ignored=ignored)


def test_a_drop_of_exactly_015_warns_and_a_drop_of_014_does_not():
    assert [
        w.period for w in trust_warnings([period("2026-01", 20, 19), period("2026-02", 20, 16)], [], [])
    ] == ["2026-02"]  # 0.95 → 0.80
    # 0.96 → 0.82
    assert trust_warnings([period("2026-01", 50, 48), period("2026-02", 50, 41)], [], []) == []


def test_follow_through_below_the_floor_warns_even_without_a_previous_period():
    warnings = trust_warnings([period("2026-03", 10, 5)], [], [])
    assert [(w.period, w.reasons, w.previous) for w in warnings] == [("2026-03", ("below 60%",), None)]


def test_the_previous_period_is_the_calendar_one_before_not_the_last_row():
    # February had no alerts: March is compared with nothing, only with the floor.
    assert trust_warnings([period("2026-01", 10, 10), period("2026-03", 10, 7)], [], []) == []


def test_periods_with_too_few_alerts_neither_warn_nor_serve_as_the_baseline():
    rows = [period("2026-W01", 4, 4), period("2026-W02", 4, 1), period("2026-W03", 10, 7)]
    assert trust_warnings(rows, [], []) == []


def test_a_period_is_judged_on_its_due_alerts_not_on_all_it_opened():
    # A month two days old: 6 alerts, 1 of them due (the rest inside their answer window), unanswered.
    # "0 %" from 1 of 1 is not a trend: no warning, and it is no baseline for the month after.
    young = MetricsRow(period="2026-04", key=None, alerts=6, due=1, followed=0)
    assert trust_warnings([young], [], []) == []
    later = MetricsRow(period="2026-05", key=None, alerts=9, due=9, followed=7)
    assert (
        trust_warnings([MetricsRow(period="2026-04", key=None, alerts=9, due=4, followed=4), later], [], [])
        == []
    )
    # Once 5 are due it is judged on them, and the warning says how many that is.
    (warning,) = trust_warnings([MetricsRow(period="2026-04", key=None, alerts=8, due=5, followed=2)], [], [])
    assert (warning.followed, warning.due) == (2, 5)
    assert warning.message.startswith("Follow-through in 2026-04 is 40% (2 of 5 due): below 60%.")


def test_the_drivers_are_ranked_by_dismissed_plus_ignored_in_the_flagged_period_only():
    rows = [period("2026-01", 10, 10), period("2026-02", 10, 5)]
    assets = [
        driver("Pump A", "2026-02", 1, 1, key=1),
        driver("Pump B", "2026-02", 4, 0, key=2),
        driver("Pump C", "2026-01", 9, 9, key=3),
        driver("Pump D", "2026-02", 0, 2, key=4),
        driver("Pump E", "2026-02", 0, 0, key=5),
    ]
    (warning,) = trust_warnings(rows, assets, [driver("m v1", "2026-02", 3, 2)])
    assert [d.label for d in warning.assets] == ["Pump B", "Pump A", "Pump D"]
    assert [d.count for d in warning.models] == [5]
    assert "Pump B (4)" in warning.message
