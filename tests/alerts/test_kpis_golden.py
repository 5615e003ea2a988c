"""Golden alarm-management KPIs (alerts.metrics.kpis): a hand-built two-day alert set on one site and its
KPIs worked out by hand below (the numbers are written out, not recomputed).

Site North, UTC, shifts 06:00 / 14:00 / 22:00; technicians tess and tom (2; the engineer enzo and erin, a
technician of East, do not count). Query: 2026-09-01 to 2026-09-02 (48 h), now 2026-09-10. Times UTC.
Every alert is created with its opening event; "ack" is an event by tess; "closed" sets closed_at.

Shown before the range (never counted as alerts, but stale inside it):
  S0 P-3 anomaly 08-31 20:00, open, never answered       -> stale from 09-01 20:00
  S1–S4 F-01..F-04 rul 08-31 21:00, open, never answered  -> stale from 09-01 21:00
09-01:
  P-3 failure_classifier 01:00, ack 09-02 03:00 (26 h), closed 04:00 -> stale 09-02 01:00–03:00
  P-3 rul 02:00, ack 23:00, closed 23:30                              -> answered within 24 h
  F-01..F-12 anomaly 08:00:00 + i × 40 s (12 in one 10-minute period: a flood), ack +30 min, closed +2 h;
     10 low, F-11 medium, F-12 high
  P-1 anomaly machine 10:00, 10:20, 10:50 (3 in 50 min: chattering), 12:30 (not within 60 min of two
     others), each closed 10 min later untouched (10 min > 5: not fleeting)
  P-1 anomaly sensor_fault 10:05, medium, closed 10:35 untouched (a condition of its own: were it merged
     with the machine fault, the burst would be 4)
  P-2 anomaly 15:00 closed 15:03 untouched (fleeting); 16:00 ack 16:01 closed 16:02 (answered: not
     fleeting); 17:00 closed 17:10 untouched (10 min: not fleeting)
09-02:
  P-2 anomaly high 09:00, ack 09:10, closed 10:00; P-1 anomaly critical 12:00, ack 12:05, closed 13:00

By day:
  09-01: alerts 2 + 12 + 5 + 3 = 22; per technician per day 22 / 2 = 11; per 10 min 11 / 144;
         flood 1 of 144 periods (0.69 %, within < 1 %); peak 12; chattering 3 (1 condition); fleeting 1;
         stale 5 (S0–S4 from 20:00/21:00); priorities low 19 (10 + 4 + 3 + 2), medium 2, high 1.
  09-02: alerts 2; per technician per day 1; flood 0; chattering 0; fleeting 0; stale 6 (S0–S4 and the
         failure_classifier 01:00–03:00); priorities high 2 (high and critical both map to high).
By shift (the range starts at 09-01 00:00, so the first shift counts 6 h):
  08-31 22:00: 2 alerts over 6 h = 36 periods; 09-01 06:00: 17 alerts, flood 1 of 48 = 2.08 % (> 1 %);
  09-01 14:00: 3 alerts, stale 5; 09-01 22:00: stale 6 (S0–S4, the failure_classifier from 01:00);
  09-02 06:00: 2 alerts.
By week: 2026-W36, 48 h counted: 24 alerts, per technician per day 24 / 2 / 2 = 6, flood 1 of 288.
Bad actors over the range: 24 alerts on 17 conditions; top: P-1 machine 5, P-2 4, then eight with 1 each
  (F-01..F-08 by name): 17 / 24 = 70.8 % of all alerts (> 5 %, with more than 10 conditions: a warning).
Warnings (day): chattering (09-01: 3), fleeting (09-01: 1), stale (09-01 5, 09-02 6; worst 09-02: 6),
  bad actors (71 %); no rate, flood or priority warning. By shift the flood warning appears (2.1 %).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from fractions import Fraction

import pytest
from django.contrib.auth.models import User
from django.test import Client

from alerts.metrics.kpis import alarm_kpis, bucket_end, bucket_of
from alerts.metrics.params import MetricsQuery
from alerts.models import Alert, AlertEvent
from models_registry.models import ModelVersion
from plant.models import parse_shift_starts
from tests.conftest import make_asset, make_pump_type, make_site, make_user

NOW = datetime(2026, 9, 10, 12, 0, tzinfo=dt_timezone.utc)


def at(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 9) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=dt_timezone.utc)


def build_kpi_history() -> dict:
    north, east = make_site("north"), make_site("east")
    pump = make_pump_type("pump")
    version = ModelVersion.objects.create(
        name="pump-anomaly",
        version=1,
        kind="anomaly",
        asset_type=pump,
        onnx_file="models/pump-anomaly-1.onnx",
        sha256="0" * 64,
        feature_spec=[],
        open_threshold=10.0,
        clear_threshold=5.0,
        status="champion",
    )
    tess = make_user("tess", "technician", north)
    make_user("tom", "technician", north)
    make_user("erin", "technician", east)
    enzo = make_user("enzo", "engineer", north, east)
    assets = {tag: make_asset(north, tag.lower(), pump) for tag in ["P-1", "P-2", "P-3"]}
    assets.update({f"F-{i:02d}": make_asset(north, f"f-{i:02d}", pump) for i in range(1, 13)})

    def alert(
        tag, opened, *, kind="anomaly", category="machine_fault", severity="low", ack=None, closed=None
    ):
        row = Alert.objects.create(
            asset=assets[tag],
            model_version=version,
            kind=kind,
            category=category,
            severity=severity,
            state="auto_closed" if closed else "open",
            opened_at=opened,
            first_window_start=opened - timedelta(minutes=3),
            last_seen_at=opened,
            peak_score=12.0,
            peak_window_end=opened,
            window_count=3,
            closed_at=closed,
        )
        AlertEvent.objects.create(alert=row, at=opened, from_state="", to_state="open", reason="opened")
        if ack:
            AlertEvent.objects.create(
                alert=row, at=ack, actor=tess, from_state="open", to_state="acknowledged", reason="ack"
            )
        return row

    alert("P-3", at(31, 20, month=8))
    for i in range(1, 5):
        alert(f"F-{i:02d}", at(31, 21, month=8), kind="rul")
    alert("P-3", at(1, 1), kind="failure_classifier", ack=at(2, 3), closed=at(2, 4))
    alert("P-3", at(1, 2), kind="rul", ack=at(1, 23), closed=at(1, 23, 30))
    for i in range(12):
        opened = at(1, 8) + timedelta(seconds=40 * i)
        severity = {10: "medium", 11: "high"}.get(i, "low")
        alert(
            f"F-{i + 1:02d}",
            opened,
            severity=severity,
            ack=opened + timedelta(minutes=30),
            closed=opened + timedelta(hours=2),
        )
    for hour, minute in ((10, 0), (10, 20), (10, 50), (12, 30)):
        alert("P-1", at(1, hour, minute), closed=at(1, hour, minute) + timedelta(minutes=10))
    alert("P-1", at(1, 10, 5), category="sensor_fault", severity="medium", closed=at(1, 10, 35))
    alert("P-2", at(1, 15), closed=at(1, 15, 3))
    alert("P-2", at(1, 16), ack=at(1, 16, 1), closed=at(1, 16, 2))
    alert("P-2", at(1, 17), closed=at(1, 17, 10))
    alert("P-2", at(2, 9), severity="high", ack=at(2, 9, 10), closed=at(2, 10))
    alert("P-1", at(2, 12), severity="critical", ack=at(2, 12, 5), closed=at(2, 13))
    # Another site's alert in the same hours: never counted for North.
    e1 = make_asset(east, "e-1", pump)
    Alert.objects.create(
        asset=e1,
        model_version=version,
        kind="anomaly",
        state="open",
        opened_at=at(1, 8),
        first_window_start=at(1, 8),
        last_seen_at=at(1, 8),
        peak_score=12.0,
        peak_window_end=at(1, 8),
    )
    return {"north": north, "east": east, "engineer": enzo, "tess": tess}


RANGE = {"start": date(2026, 9, 1), "end": date(2026, 9, 2)}


@pytest.fixture
def kpi_history(db):
    return build_kpi_history()


def north_kpis(history, kpi_period):
    report = alarm_kpis(
        [history["north"].pk, history["east"].pk],
        MetricsQuery(site=history["north"], kpi_period=kpi_period, **RANGE),
        now=NOW,
    )
    assert [site.site for site in report.sites] == [history["north"]]
    return report, report.sites[0]


def test_the_daily_kpis_match_the_hand_count(kpi_history):
    report, north = north_kpis(kpi_history, "day")
    assert north.technicians == 2
    rows = {row.period: row for row in north.rows}
    assert list(rows) == ["2026-09-01", "2026-09-02"]
    first, second = rows["2026-09-01"], rows["2026-09-02"]
    assert (first.alerts, second.alerts) == (22, 2)
    assert Fraction(first.per_tech_per_day).limit_denominator(1000) == 11
    assert Fraction(first.per_tech_per_10min).limit_denominator(1000) == Fraction(11, 144)
    assert second.per_tech_per_day == pytest.approx(1)
    assert (first.ten_minute_periods, first.flood_periods, first.peak_10min) == (144, 1, 12)
    assert first.flood_pct == pytest.approx(1 / 144)
    assert (first.chattering, first.chattering_conditions, second.chattering) == (3, 1, 0)
    assert (first.fleeting, second.fleeting) == (1, 0)
    assert (first.stale, second.stale) == (5, 6)
    assert (first.stale_max_day, second.stale_max_day) == (5, 6)
    assert first.priorities == {"low": 19, "medium": 2, "high": 1}
    assert second.priorities == {"low": 0, "medium": 0, "high": 2}


def test_the_bad_actors_are_the_ten_most_frequent_conditions(kpi_history):
    _, north = north_kpis(kpi_history, "day")
    assert (north.alerts, north.conditions) == (24, 17)
    top = [(b.label, b.category, b.alerts) for b in north.bad_actors]
    assert top[:2] == [("P-1", "machine_fault", 5), ("P-2", "machine_fault", 4)]
    assert [label for label, _, _ in top[2:]] == [f"F-{i:02d}" for i in range(1, 9)]
    assert north.bad_actor_share == pytest.approx(17 / 24)


def test_the_kpis_per_shift_and_per_week_match_the_hand_count(kpi_history):
    _, north = north_kpis(kpi_history, "shift")
    rows = {row.period: row for row in north.rows}
    assert rows["2026-08-31 22:00"].alerts == 2
    assert rows["2026-08-31 22:00"].ten_minute_periods == 36
    morning = rows["2026-09-01 06:00"]
    assert (morning.alerts, morning.ten_minute_periods, morning.flood_periods) == (17, 48, 1)
    assert morning.per_tech_per_10min == pytest.approx(17 / 96)
    assert (rows["2026-09-01 14:00"].alerts, rows["2026-09-01 14:00"].stale) == (3, 5)
    assert rows["2026-09-01 22:00"].stale == 6
    assert rows["2026-09-02 06:00"].alerts == 2
    _, north = north_kpis(kpi_history, "week")
    (week,) = north.rows
    assert (week.period, week.alerts, week.ten_minute_periods, week.flood_periods) == ("2026-W36", 24, 288, 1)
    assert week.per_tech_per_day == pytest.approx(6)


def test_a_warning_names_each_kpi_out_of_its_band(kpi_history):
    report, _ = north_kpis(kpi_history, "day")
    found = {w.kpi: w for w in report.warnings}
    assert set(found) == {"chattering", "fleeting", "stale_max_day", "bad_actor_share"}
    assert (found["chattering"].worst_period, found["chattering"].worst) == ("2026-09-01", "3")
    assert found["stale_max_day"].periods == ("2026-09-01", "2026-09-02")
    assert (found["stale_max_day"].worst_period, found["stale_max_day"].worst) == ("2026-09-02", "6")
    assert found["bad_actor_share"].worst == "71%"
    assert "Stale alerts on one day" in found["stale_max_day"].message
    shift_report, _ = north_kpis(kpi_history, "shift")
    flood = next(w for w in shift_report.warnings if w.kpi == "flood_pct")
    assert (flood.worst_period, flood.worst) == ("2026-09-01 06:00", "2.1%")


def test_a_longer_respond_setting_makes_more_alerts_fleeting(kpi_history, settings):
    settings.VIGIL_KPI_RESPOND_MINUTES = 11  # now P-2 17:00 (10 min) and P-1's four (10 min) are fleeting too
    _, north = north_kpis(kpi_history, "day")
    assert north.rows[0].fleeting == 1 + 1 + 4


def test_shift_buckets_follow_the_site_time_zone_and_wrap_past_midnight():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    starts = parse_shift_starts("06:00,14:00,22:00")
    # 03:30 UTC on 1 September is 05:30 in Berlin: still the night shift that began at 22:00 the day before.
    start, label = bucket_of(at(1, 3, 30), "shift", berlin, starts)
    assert label == "2026-08-31 22:00"
    assert start == datetime(2026, 8, 31, 20, 0, tzinfo=dt_timezone.utc)
    assert bucket_end(start, "shift", berlin, starts) == datetime(2026, 9, 1, 4, 0, tzinfo=dt_timezone.utc)
    # The night the clocks go back (25 October 2026) the night shift lasts 9 hours.
    start, _ = bucket_of(datetime(2026, 10, 25, 0, 0, tzinfo=dt_timezone.utc), "shift", berlin, starts)
    assert (bucket_end(start, "shift", berlin, starts) - start).total_seconds() == 9 * 3600


# --- a shift still running ---------------------------------------------------------------------------------


def running_shift(minutes: int, alerts: int) -> tuple:
    """North (UTC, shifts 06/14/22) with one technician, ``alerts`` alerts one every 20 s from 22:00, and
    the KPIs by shift ``minutes`` after 22:00."""
    history = build_kpi_history()
    north, version = history["north"], ModelVersion.objects.get()
    Alert.objects.filter(asset__site=north).delete()
    User.objects.filter(username="tom").delete()  # one technician left: tess
    start = at(9, 22)
    for i in range(alerts):
        opened = start + timedelta(seconds=20 * i)
        row = Alert.objects.create(
            asset=make_asset(north, f"r-{i}", version.asset_type),
            model_version=version,
            kind="anomaly",
            state="open",
            opened_at=opened,
            first_window_start=opened,
            last_seen_at=opened,
            peak_score=12.0,
            peak_window_end=opened,
        )
        AlertEvent.objects.create(alert=row, at=opened, from_state="", to_state="open", reason="opened")
    now = start + timedelta(minutes=minutes)
    report = alarm_kpis([north.pk], MetricsQuery(site=north, kpi_period="shift"), now=now)
    (row,) = [row for row in report.sites[0].rows if row.period == "2026-09-09 22:00"]
    return report, row


def test_three_alerts_in_the_first_minutes_of_a_shift_are_no_rate_and_no_warning(db):
    report, row = running_shift(7, 3)
    # The old extrapolation read these as 3 / 1 / (7 min / 24 h) = 617 a day, out of band.
    assert (row.alerts, row.partial, row.running, row.rated) == (3, True, True, False)
    assert (row.per_tech_per_10min, row.per_tech_per_day) == (None, None)
    assert row.partial_text == "so far: 3 alerts in 7 min of 8 h"
    assert [w.kpi for w in report.warnings if w.kpi.startswith("per_tech")] == []


def test_a_running_shift_is_rated_over_its_elapsed_part_after_an_hour_and_says_so(db):
    report, row = running_shift(60, 13)  # 13 in an hour for one technician: > 2 per 10 minutes
    assert row.rated and row.per_tech_per_10min == pytest.approx(13 / 6)
    warning = next(w for w in report.warnings if w.kpi == "per_tech_per_10min")
    assert warning.worst_period == "2026-09-09 22:00 (so far: 13 alerts in 1 h of 8 h)"


def test_a_flood_at_the_start_of_a_shift_still_warns_before_the_hour(db):
    report, row = running_shift(7, 11)  # 11 in 3 min 40 s: more than 10 in one 10-minute period
    assert not row.rated and row.flood_periods == 1
    kpis = [w.kpi for w in report.warnings]
    assert "flood_pct" in kpis and not [kpi for kpi in kpis if kpi.startswith("per_tech")]


def test_the_page_says_what_a_running_shift_counts_and_gives_no_rate_before_the_hour(db, monkeypatch):
    running_shift(7, 3)
    monkeypatch.setattr("django.utils.timezone.now", lambda: at(9, 22, 7))
    client = Client()
    client.force_login(User.objects.get(username="enzo"))
    page = client.get("/alerts/health/kpis/?site=north&kpi_period=shift").content.decode()
    row = page[page.index('<tr data-period="2026-09-09 22:00">') :].split("</tr>")[0]
    assert "so far: 3 alerts in 7 min of 8 h" in row
    assert "not rated before 1 h has passed" in row
    assert 'id="kpi-warning-' not in page
