"""Golden metrics: a scripted three-month history on two sites, built through the real feedback services
with explicit timestamps, and its metrics worked out by hand (the numbers below are written out, not
recomputed).

The history (times UTC, 2026; FT = follow-through window of 24 h):

North (P-101 and P-102, pumps; "pump-anomaly" v1 champion from May, v2 from 1 August)
  June  J1 P-101 06-02 08:00 "Check the sensor" (the gate's category), confirmed/sensor replaced 10:00 (2 h)
        J2 P-101 06-05 08:00 "Check the data link", acknowledged 08:30, confirmed/scheduled ("fix
           scheduled") 12:00 (ack 30 min)
        (J1 and J2 count as verdicts, confirmed, actionable and followed through like any alert, but not in
        precision or recall: the gate sent the technician to the sensor and the link, not the model)
        J3 P-102 06-10 08:00 false alarm/sensor glitch 09:00 (1 h)
        J4 P-102 06-12 08:00 auto-closed 20:00, untouched (ignored)
        J7 P-101 06-25 08:00 false alarm 10:00, corrected to confirmed/repaired on 06-27 (counts as confirmed)
        J8 P-102 06-28 08:00 opened inside maintenance, auto-closed while suppressed (never shown:
           not counted)
        missed failures: P-102 from 06-18, P-101 from 06-29 (reported later; both count in June)
  July  K1 P-101 07-01 false alarm/sensor glitch after 1 h
        K2 P-101 07-03 snoozed after 1 h, auto-closed (a human touch: not ignored, no verdict)
        K3 P-101 07-06 auto-closed untouched (ignored)
        K4 P-101 07-08 auto-closed, then false alarm/unknown 28 h after opening (late: not followed through)
        K5 P-102 07-10 08:00 opened in maintenance, open at 13:00 when it ended, confirmed/repaired at 15:00
           (its clock starts at 13:00: 2 h)
        K6 P-102 07-15 false alarm/maintenance activity after 10 min
  Aug.  L1, L2 P-101 auto-closed untouched (ignored); L3 P-102 not actionable after 1 h;
        L4 P-101 08-10 08:00 false alarm 26 h later, corrected by an engineer to not actionable;
        L6 P-102 acknowledged after 5 min, confirmed/repaired; a shadow alert on P-101 (not counted)
        missed failure: P-101 from 08-25 (counts against v2)
South (F-201, a fan; "fan-anomaly" v1)
  June  J5 not actionable after 6 h; J6 confirmed/inspected, no action after 48 h (late)
  July  K7 confirmed/repaired after 1 h; K8 07-31 22:00 confirmed/scheduled 08-01 06:00 (counts in July)
        missed failure from 07-25
  Aug.  L5 confirmed/repaired after 30 min
East (not one of the engineer's sites): one alert in June, never counted for him.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from fractions import Fraction

import pytest

from alerts.choices import AlertCategory
from alerts.metrics import MetricsQuery, health_report, metric_rows, trust_warnings
from alerts.metrics.rows import MetricsRow
from alerts.models import Alert, MaintenanceWindow
from alerts.services import record_feedback, record_missed_failure
from models_registry.models import ModelStatusChange, ModelVersion
from plant.models import Asset, AssetType, Site
from tests.alerts.builders import make_alert
from tests.conftest import make_asset, make_pump_type, make_site, make_user

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=dt_timezone.utc)


def at(month: int, day: int, hour: int = 8, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=dt_timezone.utc)


def make_version(asset_type: AssetType, name: str, number: int, *, champion_at: datetime, retired_at=None):
    """A registered version whose champion history says when it was deployed (and retired)."""
    version = ModelVersion.objects.create(
        name=name,
        version=number,
        kind="anomaly",
        asset_type=asset_type,
        onnx_file=f"models/{name}-{number}.onnx",
        sha256="0" * 64,
        feature_spec=[],
        open_threshold=10.0,
        clear_threshold=5.0,
        status="retired" if retired_at else "champion",
    )
    moves = [("candidate", "champion", champion_at)]
    if retired_at:
        moves.append(("champion", "retired", retired_at))
    for from_status, to_status, moment in moves:
        change = ModelStatusChange.objects.create(
            version=version, from_status=from_status, to_status=to_status
        )
        ModelStatusChange.objects.filter(pk=change.pk).update(at=moment)
    return version


def open_alert(
    asset: Asset,
    version: ModelVersion,
    opened: datetime,
    *,
    suppressed=False,
    shadow=False,
    category: str = AlertCategory.MACHINE_FAULT,
) -> Alert:
    """An alert as the scorer opens it (filed in ``category`` by the gate): the row and its creation event
    at ``opened``."""
    return make_alert(
        asset,
        version,
        opened=opened,
        state="suppressed" if suppressed else "open",
        reason="opened",
        is_shadow=shadow,
        category=category,
        first_window_start=opened - timedelta(minutes=3),
        last_seen_at=opened,
        peak_score=12.0,
        peak_window_end=opened,
    )


def auto_close(alert: Alert, moment: datetime) -> None:
    alert.refresh_from_db()
    alert.transition("auto_closed", reason="condition cleared", at=moment)


@dataclass
class Golden:
    north: Site
    south: Site
    p101: Asset
    p102: Asset
    f201: Asset
    pump_v1: ModelVersion
    pump_v2: ModelVersion
    fan_v1: ModelVersion
    engineer: object
    tess: object
    alerts: dict[str, Alert]


def build_golden_history() -> Golden:
    north, south, east = make_site("north"), make_site("south"), make_site("east")
    pump, fan = make_pump_type("pump"), make_pump_type("fan")
    p101, p102 = make_asset(north, "p-101", pump), make_asset(north, "p-102", pump)
    f201, e301 = make_asset(south, "f-201", fan), make_asset(east, "e-301", pump)
    pump_v1 = make_version(pump, "pump-anomaly", 1, champion_at=at(5, 1), retired_at=at(8, 1, 0))
    pump_v2 = make_version(pump, "pump-anomaly", 2, champion_at=at(8, 1, 0))
    fan_v1 = make_version(fan, "fan-anomaly", 1, champion_at=at(5, 1))
    tess = make_user("tess", "technician", north)
    sam = make_user("sam", "technician", south)
    make_user("erin", "technician", east)
    enzo = make_user("enzo", "engineer", north, south)
    alerts: dict[str, Alert] = {}

    def alert(name, asset, version, opened, **kwargs):
        alerts[name] = open_alert(asset, version, opened, **kwargs)
        return alerts[name]

    def say(name, user, action, moment):
        record_feedback(alerts[name], user, action, now=moment)

    # June
    alert("J1", p101, pump_v1, at(6, 2), category=AlertCategory.SENSOR_FAULT)
    say("J1", tess, "confirm:sensor_replaced", at(6, 2, 10))
    alert("J2", p101, pump_v1, at(6, 5), category=AlertCategory.DATA_LINK)
    say("J2", tess, "acknowledge", at(6, 5, 8, 30))
    say("J2", tess, "confirm:scheduled", at(6, 5, 12))
    alert("J3", p102, pump_v1, at(6, 10))
    say("J3", tess, "false_alarm:sensor_glitch", at(6, 10, 9))
    auto_close(alert("J4", p102, pump_v1, at(6, 12)), at(6, 12, 20))
    alert("J5", f201, fan_v1, at(6, 15))
    say("J5", sam, "not_actionable", at(6, 15, 14))
    alert("J6", f201, fan_v1, at(6, 20))
    say("J6", sam, "confirm:inspected_no_action", at(6, 22))
    alert("J7", p101, pump_v1, at(6, 25))
    say("J7", tess, "false_alarm:normal_operating_change", at(6, 25, 10))
    say("J7", tess, "confirm:repaired", at(6, 27, 10))
    MaintenanceWindow.objects.create(asset=p102, start=at(6, 28, 6), end=at(6, 28, 14), reason="seal change")
    auto_close(alert("J8", p102, pump_v1, at(6, 28), suppressed=True), at(6, 28, 12))
    auto_close(alert("E1", e301, pump_v1, at(6, 3)), at(6, 3, 12))
    record_missed_failure(p102, tess, start=at(6, 18, 0), end=at(6, 18, 6), fault_type="seal leak")
    record_missed_failure(p101, tess, start=at(6, 29, 10), end=at(6, 29, 12), fault_type="bearing")
    # July
    alert("K1", p101, pump_v1, at(7, 1))
    say("K1", tess, "false_alarm:sensor_glitch", at(7, 1, 9))
    alert("K2", p101, pump_v1, at(7, 3))
    say("K2", tess, "snooze:8h", at(7, 3, 9))
    auto_close(alerts["K2"], at(7, 3, 20))
    auto_close(alert("K3", p101, pump_v1, at(7, 6)), at(7, 6, 18))
    auto_close(alert("K4", p101, pump_v1, at(7, 8)), at(7, 8, 18))
    say("K4", tess, "false_alarm:unknown", at(7, 9, 12))
    MaintenanceWindow.objects.create(asset=p102, start=at(7, 10, 6), end=at(7, 10, 12), reason="overhaul")
    alert("K5", p102, pump_v1, at(7, 10), suppressed=True)
    alerts["K5"].transition(
        "open", reason="maintenance window over; the condition persists", at=at(7, 10, 13)
    )
    say("K5", tess, "confirm:repaired", at(7, 10, 15))
    alert("K6", p102, pump_v1, at(7, 15))
    say("K6", tess, "false_alarm:maintenance_activity", at(7, 15, 8, 10))
    alert("K7", f201, fan_v1, at(7, 20))
    say("K7", sam, "confirm:repaired", at(7, 20, 9))
    alert("K8", f201, fan_v1, at(7, 31, 22))
    say("K8", sam, "confirm:scheduled", at(8, 1, 6))
    record_missed_failure(f201, sam, start=at(7, 25, 0), end=at(7, 25, 4), fault_type="belt")
    # August
    auto_close(alert("L1", p101, pump_v2, at(8, 3)), at(8, 3, 18))
    auto_close(alert("L2", p101, pump_v2, at(8, 5)), at(8, 5, 18))
    alert("L3", p102, pump_v2, at(8, 7))
    say("L3", tess, "not_actionable", at(8, 7, 9))
    alert("L4", p101, pump_v2, at(8, 10))
    say("L4", tess, "false_alarm:sensor_glitch", at(8, 11, 10))
    say("L4", enzo, "not_actionable", at(8, 12, 10))
    alert("L5", f201, fan_v1, at(8, 12))
    say("L5", sam, "confirm:repaired", at(8, 12, 8, 30))
    alert("L6", p102, pump_v2, at(8, 20))
    say("L6", tess, "acknowledge", at(8, 20, 8, 5))
    say("L6", tess, "confirm:repaired", at(8, 20, 11))
    Alert.objects.filter(pk=alert("SH", p101, pump_v2, at(8, 15), shadow=True).pk).update(is_shadow=True)
    record_missed_failure(p101, tess, start=at(8, 25, 0), end=at(8, 25, 8), fault_type="bearing")
    return Golden(north, south, p101, p102, f201, pump_v1, pump_v2, fan_v1, enzo, tess, alerts)


def F(n: int, d: int) -> Fraction:
    return Fraction(n, d)


# period, site: alerts, verdicts, confirmed, false_alarms, not_actionable, missed,
#               precision, recall, follow_through, actionability, tta_median_s, tta_p90_s, ignored, by reason
# June on the north site and P-101: precision and recall count J7 (confirmed) and J3 (false alarm) only, not
# the confirmed sensor (J1) and data-link (J2) alerts: 1/2 and 1/(1 + 2 missed); P-101 1/1 and 1/(1 + 1).
# J1 and J2 are still in confirmed (3), verdicts, actionability (3 of 4) and follow-through.
BY_SITE_MONTH = {
    ("2026-06", "north"): (5, 4, 3, 1, 0, 2, F(1, 2), F(1, 3), F(4, 5), F(3, 4), 5400, 7200, 1,
                           {"sensor_glitch": 1}),
    ("2026-06", "south"): (2, 2, 1, 0, 1, 0, F(1, 1), F(1, 1), F(1, 2), F(0, 2), 97200, 172800, 0, {}),
    ("2026-07", "north"): (6, 4, 1, 3, 0, 0, F(1, 4), F(1, 1), F(3, 6), F(1, 4), 3600, 100800, 1,
                           {"sensor_glitch": 1, "maintenance_activity": 1, "unknown": 1}),
    ("2026-07", "south"): (2, 2, 2, 0, 0, 1, F(1, 1), F(2, 3), F(2, 2), F(2, 2), 16200, 28800, 0, {}),
    ("2026-08", "north"): (5, 3, 1, 0, 2, 1, F(1, 1), F(1, 2), F(2, 5), F(1, 3), 3600, 93600, 2, {}),
    ("2026-08", "south"): (1, 1, 1, 0, 0, 0, F(1, 1), F(1, 1), F(1, 1), F(1, 1), 1800, 1800, 0, {}),
}  # fmt: skip
BY_ASSET_MONTH = {
    ("2026-06", "P-101"): (3, 3, 3, 0, 0, 1, F(1, 1), F(1, 2), F(3, 3), F(3, 3), 7200, 7200, 0, {}),
    ("2026-06", "P-102"): (2, 1, 0, 1, 0, 1, F(0, 1), F(0, 1), F(1, 2), F(0, 1), 3600, 3600, 1,
                           {"sensor_glitch": 1}),
    ("2026-07", "P-101"): (4, 2, 0, 2, 0, 0, F(0, 2), None, F(1, 4), F(0, 2), 3600, 100800, 1,
                           {"sensor_glitch": 1, "unknown": 1}),
    ("2026-07", "P-102"): (2, 2, 1, 1, 0, 0, F(1, 2), F(1, 1), F(2, 2), F(1, 2), 3900, 7200, 0,
                           {"maintenance_activity": 1}),
    ("2026-08", "P-101"): (3, 1, 0, 0, 1, 1, None, F(0, 1), F(0, 3), F(0, 1), 93600, 93600, 2, {}),
}  # fmt: skip
FIELDS = ("alerts", "verdicts", "confirmed", "false_alarms", "not_actionable", "missed", "precision",
          "recall", "follow_through", "actionability", "tta_median_s", "tta_p90_s", "ignored",
          "false_alarms_by_reason")  # fmt: skip


def as_expected(row: MetricsRow) -> tuple:
    return tuple(getattr(row, name) for name in FIELDS)


def assert_rows(rows, expected: dict, label_of) -> None:
    got = {(row.period, label_of(row)): row for row in rows}
    assert set(got) >= set(expected), f"missing rows: {set(expected) - set(got)}"
    for where, numbers in expected.items():
        row = got[where]
        for name, want, have in zip(FIELDS, numbers, as_expected(row), strict=True):
            if want is None or isinstance(want, dict):
                assert have == want, f"{where} {name}: {have!r} != {want!r}"
            else:
                assert have == pytest.approx(float(want)), f"{where} {name}: {have!r} != {want!r}"


def site_ids(golden: Golden) -> list[int]:
    return [golden.north.pk, golden.south.pk]


def test_site_rows_per_month_match_the_hand_worked_numbers(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="site", period="month"), now=NOW)
    assert_rows(rows, BY_SITE_MONTH, lambda row: row.label.lower())
    assert len(rows) == 6, "one row per (month, site) that had alerts; nothing from the east site"


def test_asset_rows_per_month_match_the_hand_worked_numbers(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="asset", period="month"), now=NOW)
    assert_rows(rows, BY_ASSET_MONTH, lambda row: row.label.split(" · ")[0])


def test_precision_and_recall_leave_out_the_sensor_and_data_link_verdicts_and_say_how_many(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="site", period="month"), now=NOW)
    june = next(row for row in rows if (row.period, row.label) == ("2026-06", "North"))
    # Confirmed J1 (sensor), J2 (data link), J7 (machine); false alarm J3 (machine).
    assert (june.confirmed, june.false_alarms) == (3, 1)
    assert (june.machine_confirmed, june.machine_judged, june.routed_judged) == (1, 2, 2)
    assert (june.precision, june.recall) == (0.5, pytest.approx(1 / 3))
    # What the operators did still counts them: J1 and J2 were followed through and acted on.
    assert (june.followed, june.due, june.actionable, june.verdicts) == (4, 5, 3, 4)
    assert june.as_dict()["routed_judged"] == 2


def test_model_version_rows_charge_missed_failures_to_the_champion_of_their_time(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="model_version", period="month"), now=NOW)
    by = {(row.period, row.label): row for row in rows}
    assert set(by) == {
        ("2026-06", "pump-anomaly v1"), ("2026-07", "pump-anomaly v1"), ("2026-08", "pump-anomaly v2"),
        ("2026-06", "fan-anomaly v1"), ("2026-07", "fan-anomaly v1"), ("2026-08", "fan-anomaly v1"),
    }  # fmt: skip
    # The same alerts as the north site each month (v1 until August, v2 after), incl. the missed failures.
    assert [by[("2026-06", "pump-anomaly v1")].missed, by[("2026-07", "pump-anomaly v1")].missed] == [2, 0]
    assert by[("2026-08", "pump-anomaly v2")].missed == 1
    assert by[("2026-08", "pump-anomaly v2")].recall == pytest.approx(0.5)
    assert by[("2026-08", "pump-anomaly v2")].key == golden.pump_v2.pk
    assert by[("2026-07", "fan-anomaly v1")].recall == pytest.approx(2 / 3)


def test_asset_type_rows_group_both_pumps_together(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="asset_type", period="month"), now=NOW)
    by = {(row.period, row.label): row for row in rows}
    assert (by[("2026-07", "Pump")].alerts, by[("2026-07", "Pump")].followed) == (6, 3)
    assert (by[("2026-06", "Fan")].alerts, by[("2026-06", "Fan")].not_actionable) == (2, 1)


def test_week_rows_put_an_alert_in_the_iso_week_it_opened(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(group_by="site", period="week"), now=NOW)
    by = {(row.period, row.label): row for row in rows}
    # K8 opened Friday 31 July (week 31); its verdict came on Saturday 1 August, same week.
    w31 = by[("2026-W31", "South")]
    assert (w31.alerts, w31.confirmed, w31.follow_through, w31.tta_median_s) == (1, 1, 1.0, 28800)
    assert ("2026-W31", "North") not in by
    # Week 27 (29 June – 5 July): K1 (false alarm after 1 h), K2 (snoozed after 1 h) and the missed failure
    # of 29 June on P-101.
    w27 = by[("2026-W27", "North")]
    assert as_expected(w27) == (2, 1, 0, 1, 0, 1, 0.0, 0.0, 0.5, 0.0, 3600, 3600, 0, {"sensor_glitch": 1})


def test_totals_and_the_trust_warning_of_the_golden_history(golden):
    report = health_report(site_ids(golden), MetricsQuery(), now=NOW)
    totals = {row.period: row for row in report.totals}
    assert [(p, r.alerts, r.followed, r.due) for p, r in totals.items()] == [
        ("2026-06", 7, 5, 7), ("2026-07", 8, 5, 8), ("2026-08", 6, 3, 6)
    ]  # fmt: skip
    assert [row.key for row in report.totals] == [None, None, None]
    # June → July falls by 0.089 (< 0.15) and stays above 0.60; August is at 0.50: only August is flagged.
    assert [w.period for w in report.warnings] == ["2026-08"]
    warning = report.warnings[0]
    assert warning.follow_through == pytest.approx(0.5)
    assert warning.reasons == ("below 60%",)
    assert [(d.label, d.dismissed, d.ignored) for d in warning.assets] == [
        ("P-101 · North", 1, 2),
        ("P-102 · North", 1, 0),
    ]
    assert [(d.label, d.count) for d in warning.models] == [("pump-anomaly v2", 4)]


def test_a_site_filter_and_a_date_range_narrow_the_rows(golden):
    query = MetricsQuery(group_by="site", period="month", site=golden.north)
    assert {row.label for row in metric_rows(site_ids(golden), query, now=NOW)} == {"North"}
    july = MetricsQuery(start=at(7, 1).date(), end=at(7, 31).date())
    rows = metric_rows(site_ids(golden), july, now=NOW)
    assert {(row.period, row.label) for row in rows} == {("2026-07", "North"), ("2026-07", "South")}
    south = next(row for row in rows if row.label == "South")
    assert (south.alerts, south.missed) == (2, 1), "K8 of 31 July 22:00 and the failure of 25 July are in"


def test_suppressed_alerts_count_only_once_shown_and_from_then_on(golden):
    counted = metric_rows(site_ids(golden), MetricsQuery(group_by="asset"), now=NOW)
    june_p102 = next(r for r in counted if r.period == "2026-06" and r.label.startswith("P-102"))
    assert june_p102.alerts == 2, "J8 never left maintenance suppression: not counted"
    july_p102 = next(r for r in counted if r.period == "2026-07" and r.label.startswith("P-102"))
    # K5 was shown at 13:00 when maintenance ended and confirmed at 15:00: 2 h, not the 7 h since opening.
    assert sorted(july_p102.tta_s) == [600.0, 7200.0]


def test_a_late_verdict_changes_the_opening_period_and_a_correction_counts_as_the_latest(golden):
    rows = metric_rows(site_ids(golden), MetricsQuery(), now=NOW)
    north = {row.period: row for row in rows if row.label == "North"}
    before = (north["2026-08"].not_actionable, north["2026-08"].false_alarms)
    assert before == (2, 0), "L4's false alarm was corrected to not actionable"
    # A verdict given today on L1 (auto-closed in August) changes August, not November.
    record_feedback(golden.alerts["L1"], golden.tess, "confirm:repaired", now=NOW)
    rows = metric_rows(site_ids(golden), MetricsQuery(), now=NOW)
    north = {row.period: row for row in rows if row.label == "North"}
    assert set(north) == {"2026-06", "2026-07", "2026-08"}
    assert (north["2026-08"].confirmed, north["2026-08"].ignored, north["2026-08"].followed) == (2, 1, 2)


def test_an_alert_still_inside_its_window_is_not_yet_counted_against_follow_through(golden):
    open_alert(golden.f201, golden.fan_v1, NOW - timedelta(hours=2))
    rows = metric_rows(site_ids(golden), MetricsQuery(), now=NOW)
    november = next(row for row in rows if row.period == "2026-11")
    assert (november.alerts, november.due, november.follow_through) == (1, 0, None)
    later = metric_rows(site_ids(golden), MetricsQuery(), now=NOW + timedelta(hours=23))
    november = next(row for row in later if row.period == "2026-11")
    assert (november.due, november.follow_through) == (1, 0.0)


def test_rates_are_none_not_zero_when_nothing_was_counted():
    row = MetricsRow(period="2026-01", key=1, alerts=0)
    assert (row.precision, row.recall, row.follow_through, row.actionability) == (None, None, None, None)
    assert (row.tta_median_s, row.tta_p90_s) == (None, None)
    assert trust_warnings([row], [], []) == []


def test_the_follow_through_window_is_a_setting(golden, settings):
    settings.VIGIL_FOLLOW_THROUGH_HOURS = 48
    rows = metric_rows(site_ids(golden), MetricsQuery(), now=NOW)
    by = {(row.period, row.label): row for row in rows}
    # Within 48 h: J6 (48 h, south June), K4 (28 h, north July) and L4 (26 h, north August) now count.
    assert by[("2026-06", "South")].follow_through == pytest.approx(1.0)
    assert by[("2026-07", "North")].follow_through == pytest.approx(4 / 6)
    assert by[("2026-08", "North")].follow_through == pytest.approx(3 / 5)
