"""The data-quality gate: flagged sensors that drive the score make a sensor fault, others do not."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.choices import AlertCategory, AlertEventKind, ExplanationStatus, Verdict
from alerts.choices import AlertState as AlertState_
from alerts.metrics.kpis import alarm_kpis
from alerts.metrics.params import MetricsQuery
from alerts.models import Alert
from alerts.services import categorize, record_feedback
from alerts.services.overrides import calibration_category
from alerts.writeback import alert_words
from connectivity.writeback import AlertState
from detection.explain import dominant_roles
from notify.choices import MessageKind
from notify import tasks as notify_tasks
from notify.models import Notification, Rule
from notify.services import compose, plan_event
from plant.builders import make_asset
from plant.choices import QualityFlag
from plant.models import Label, Reading
from tests.alerts.builders import explanation_for, make_alert
from tests.alerts.conftest import OPEN, fault_x, score, window_end, windows
from tests.conftest import T0, make_readings
from tests.notify.conftest import make_channel


def explanation_of(shares: dict[str, float]) -> dict:
    return {"features": [{"name": f"{role}__mean", "phi": phi} for role, phi in shares.items()]}


def test_dominant_roles_are_the_fewest_covering_sixty_percent_of_the_pushes_at_most_three():
    assert dominant_roles(explanation_of({"vibration": 7, "current": 2, "pressure": 1})) == ["vibration"]
    # Current lowered the score: it is no reason for the alert, so not among the roles that drove it.
    assert dominant_roles(explanation_of({"vibration": 4, "current": -3, "pressure": 2, "x": 1})) == [
        "vibration",
        "pressure",
    ]
    flat = explanation_of({f"r{i}": 1.0 for i in range(10)})
    assert len(dominant_roles(flat)) == 3
    assert dominant_roles(explanation_of({"a": 0.0})) == []


# Pressure's features push hard both ways (net +0.4 of a summed |φ| 9.6); vibration alone pushes +2.
CANCELLING = {
    "features": [
        {"name": "pressure__std", "phi": 5.0},
        {"name": "pressure__mean", "phi": -4.6},
        {"name": "vibration__mean", "phi": 2.0},
    ]
}


def test_the_gate_checks_the_sensors_that_pushed_the_score_not_one_whose_features_cancel_out():
    stuck = int(QualityFlag.STUCK)
    # A stuck vibration sensor drove the score: "Check the sensor", the sensor the words name first.
    assert categorize(CANCELLING, {"vibration": stuck}) == AlertCategory.SENSOR_FAULT
    # A stuck pressure sensor whose features cancel out did not: the alert stays a machine fault.
    assert categorize(CANCELLING, {"pressure": stuck}) == AlertCategory.MACHINE_FAULT


def test_drift_alone_does_not_make_a_sensor_fault():
    explanation = explanation_of({"vibration": 9, "current": 1})
    assert categorize(explanation, {"vibration": int(QualityFlag.DRIFT)}) == AlertCategory.MACHINE_FAULT
    assert categorize(explanation, {"vibration": int(QualityFlag.STUCK)}) == AlertCategory.SENSOR_FAULT


def test_a_gap_on_a_driving_sensor_is_the_data_link_and_a_value_flag_still_the_sensor():
    explanation = explanation_of({"vibration": 5, "current": 4, "pressure": 1})
    gap, stuck, spike = int(QualityFlag.GAP), int(QualityFlag.STUCK), int(QualityFlag.SPIKE)
    assert categorize(explanation, {"vibration": gap}) == AlertCategory.DATA_LINK
    assert categorize(explanation, {"vibration": gap, "current": gap}) == AlertCategory.DATA_LINK
    # A flagged value on a driving sensor is the sensor's, with or without a gap beside it.
    assert categorize(explanation, {"vibration": gap | stuck}) == AlertCategory.SENSOR_FAULT
    assert categorize(explanation, {"vibration": gap, "current": stuck}) == AlertCategory.SENSOR_FAULT
    # A spike is left out of the features and may be the first reading of a real process change: it decides
    # nothing (the demo's cavitation fault read "Check the sensor"; persistent spikes are sensor_faults').
    assert categorize(explanation, {"vibration": spike}) == AlertCategory.MACHINE_FAULT
    assert categorize(explanation, {"vibration": gap, "current": spike}) == AlertCategory.DATA_LINK
    # A gap on a sensor that does not drive the score decides nothing.
    assert categorize(explanation, {"pressure": gap}) == AlertCategory.MACHINE_FAULT
    assert categorize(None, {"pressure": gap}) == AlertCategory.DATA_LINK
    assert AlertCategory.DATA_LINK.label == "Check the data link"


def test_a_stuck_sensor_dominating_the_explanation_makes_a_sensor_fault(asset, champion, trained):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    alert = Alert.objects.get()
    assert alert.explanation_status == ExplanationStatus.READY
    assert dominant_roles(alert.explanation) == ["vibration"]
    assert alert.category == AlertCategory.SENSOR_FAULT
    assert alert.get_category_display() == "Check the sensor"


def test_a_flagged_but_non_dominant_sensor_leaves_a_machine_fault(asset, champion, trained):
    x = fault_x(trained, "vibration")
    flagged = {"temperature": int(QualityFlag.STUCK | QualityFlag.SPIKE), "vibration": 0}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=flagged))
    alert = Alert.objects.get()
    assert "temperature" not in dominant_roles(alert.explanation)
    assert alert.category == AlertCategory.MACHINE_FAULT


def test_without_an_explanation_any_flagged_sensor_decides_provisionally(asset, champion):
    flagged = {"temperature": int(QualityFlag.OUT_OF_RANGE)}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=None, flagged=flagged))
    alert = Alert.objects.get()
    assert alert.explanation_status == ExplanationStatus.PENDING
    assert alert.category == AlertCategory.SENSOR_FAULT


GAP_SENTENCE = (
    "No data from the vibration sensor north.p-101.vibration from 07:55 to 08:00 (5 min): check its data "
    "link (the gateway, bridge, network or PLC connection), not the sensor"
)


def gap_readings(asset, roles=("vibration",)) -> None:
    """The sensors' readings every 10 s until 07:55, none until 08:00:10 (flagged as ending a gap)."""
    for role in roles:
        sensor = asset.sensors.get(role__key=role)
        make_readings(sensor, T0 - timedelta(minutes=10), [30.0] * 31, period_s=10)
        make_readings(sensor, window_end(1), [30.0], quality=int(QualityFlag.GAP))


def card_of(client, alert) -> str:
    page = client.get(reverse("alerts:board")).content.decode()
    start = page.index(f'id="alert-{alert.pk}"')
    return page[start : page.index("</article>", start)]


def test_a_gap_on_the_driving_sensor_opens_and_holds_a_data_link_alert_in_the_links_words(
    asset, champion, trained, technician, client
):
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    flagged = {"vibration": int(QualityFlag.GAP)}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=flagged))
    alert = Alert.objects.get()
    assert dominant_roles(alert.explanation) == ["vibration"]
    assert alert.category == AlertCategory.DATA_LINK
    assert alert.get_category_display() == "Check the data link"
    # Later windows (clean now) attach to the same alert, which stays a data-link alert.
    score(asset, champion, windows(3, [OPEN + 1] * 2, x=x, flagged={}))
    alert = Alert.objects.get()
    assert (alert.window_count, alert.category) == (5, AlertCategory.DATA_LINK)

    client.force_login(technician)
    card = card_of(client, alert)
    assert 'data-category="data_link"' in card and "Check the data link" in card
    assert f"{GAP_SENTENCE[:1].upper()}{GAP_SENTENCE[1:]}." in card
    assert "Check the sensor" not in card and "data_link" not in card.replace('data-category="data_link"', "")
    assert "Data link was down:" in card and "Real fault:" not in card and "Link restored" in card
    detail = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "Check the data link" in detail and GAP_SENTENCE in detail and "Check the sensor" not in detail

    # The notifications, work orders and the HMI say it the same way (alerts.writeback.alert_words).
    words = alert_words(alert)
    assert (words["category"], words["category_label"]) == ("data_link", "vibration data link")
    assert words["text"] == "P-101 vibration data link alert, low"
    assert words["top_sensor_text"] == GAP_SENTENCE
    hmi = AlertState(
        asset_tag=asset.tag,
        state=alert.state,
        severity=alert.severity,
        category=words["category"],
        category_label=words["category_label"],
    )
    assert hmi.text == "p-101 vibration data link alert, low"
    title, body = compose(alert, MessageKind.OPENED)
    assert title == "P-101 vibration data link alert, low"
    assert body.splitlines()[:2] == ["P-101 vibration data link alert, low.", GAP_SENTENCE]
    # A notification rule for sensor faults is not told; one for the data link is.
    assert not Rule(site=asset.site, category="sensor_fault").matches(alert)
    assert Rule(site=asset.site, category="data_link").matches(alert)


def test_a_data_link_alert_without_the_gaps_readings_still_names_the_sensor_and_the_link(
    asset, champion, trained
):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.GAP)}))
    alert = Alert.objects.get()
    assert alert_words(alert)["top_sensor_text"] == (
        "Readings of the vibration sensor went missing in this alert's window: check its data link "
        "(the gateway, bridge, network or PLC connection), not the sensor"
    )


def test_a_pending_data_link_alert_names_the_sensor_whose_readings_stopped(asset, champion):
    gap_readings(asset, roles=("temperature",))
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=None, flagged={"temperature": int(QualityFlag.GAP)}))
    alert = Alert.objects.get()
    assert (alert.explanation_status, alert.category) == (ExplanationStatus.PENDING, AlertCategory.DATA_LINK)
    words = alert_words(alert)
    assert (words["category_label"], words["text"]) == (
        "temperature data link",
        "P-101 temperature data link alert, low",
    )
    assert words["top_sensor_text"].startswith(
        "No data from the temperature sensor north.p-101.temperature from"
    )
    # Without the readings either, it still says what to check, with no made-up sensor name.
    Reading.objects.all().delete()
    words = alert_words(Alert.objects.get())
    assert (words["category_label"], words["text"]) == ("data link", "P-101 data link alert, low")
    assert words["top_sensor_text"].startswith("Readings of the driving sensor went missing")


def test_a_link_down_for_several_sensors_names_them_all(asset, champion, trained):
    gap_readings(asset, roles=("vibration", "current"))
    x = fault_x(trained, "vibration")
    gap = int(QualityFlag.GAP)
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": gap, "current": gap}))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.DATA_LINK
    assert alert_words(alert)["top_sensor_text"] == (
        "No data from the vibration and current sensors (north.p-101.vibration, north.p-101.current) from "
        "07:55 to 08:00 (5 min): check their data link (the gateway, bridge, network or PLC connection), "
        "not the sensors"
    )


def test_a_gap_on_a_sensor_marked_for_calibration_is_still_the_data_link(asset, champion, trained):
    asset.sensors.filter(role__key="vibration").update(needs_calibration=True)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.GAP)}))
    assert Alert.objects.get().category == AlertCategory.DATA_LINK
    # A machine-fault reading of the same sensor is still held as a sensor issue.
    assert (
        calibration_category(asset.pk, "vibration", AlertCategory.MACHINE_FAULT) == AlertCategory.SENSOR_FAULT
    )


def test_a_stuck_driving_sensor_still_says_check_the_sensor_on_the_card(
    asset, champion, trained, technician, client
):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.SENSOR_FAULT
    client.force_login(technician)
    card = card_of(client, alert)
    assert "Check the sensor" in card and "data link" not in card and "No data from" not in card
    # The inbox, the HMI and the work order name the sensor to check, not the machine's vibration.
    words = alert_words(alert)
    assert (words["category_label"], words["text"]) == (
        "Vibration sensor",
        "P-101 Vibration sensor alert, low",
    )
    assert compose(alert, MessageKind.OPENED)[0] == "P-101 Vibration sensor alert, low"


def test_a_verdict_on_a_data_link_alert_writes_no_label(asset, champion, trained, technician):
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.GAP)}))
    alert = Alert.objects.get()
    feedback = record_feedback(alert, technician, "confirm:repaired", "switch port replaced")
    alert.refresh_from_db()
    assert alert.state == AlertState_.RESOLVED and feedback.verdict == Verdict.CONFIRMED_FAULT
    # A link fault is neither the machine's fault nor its normal running: nothing is relabelled.
    assert feedback.label is None and not Label.objects.exists()
    record_feedback(alert, technician, "false_alarm:unknown")
    assert not Label.objects.exists()


def test_a_data_link_fix_scheduled_waits_in_work_for_link_restored_not_for_a_repair(
    asset, champion, trained, technician, client
):
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.GAP)}))
    alert = Alert.objects.get()
    record_feedback(alert, technician, "confirm:scheduled")
    client.force_login(technician)
    card = card_of(client, alert)
    assert 'data-lane="in-work"' in card
    assert "Fix of the data link scheduled; when it is done:" in card and "Link restored" in card
    assert "Repair scheduled; when it is done" not in card and ">Repaired<" not in card


def test_the_alarm_load_counts_data_link_sensor_and_machine_alerts_apart(
    site, asset, champion, trained, engineer, client
):
    linked, stuck = make_asset(site, "p-102"), make_asset(site, "p-103")
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={}))
    score(linked, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.GAP)}))
    score(stuck, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    query = MetricsQuery(site=site, kpi_period="day", start=T0.date(), end=T0.date())
    (north,) = alarm_kpis([site.pk], query, now=T0 + timedelta(hours=1)).sites
    assert north.categories == [
        (AlertCategory.MACHINE_FAULT, 1),
        (AlertCategory.SENSOR_FAULT, 1),
        (AlertCategory.DATA_LINK, 1),
    ]
    assert sorted(b.category_label for b in north.bad_actors) == [
        "Check the data link",
        "Check the sensor",
        "Machine fault",
    ]
    assert north.as_dict()["categories"] == {"machine_fault": 1, "sensor_fault": 1, "data_link": 1}


# --- the category follows the evidence while the alert is open ---------------------------------------------


GAP = {"vibration": int(QualityFlag.GAP)}


def category_events(alert) -> list[str]:
    return list(alert.events.filter(kind=AlertEventKind.CATEGORY).values_list("reason", flat=True))


def test_a_data_link_alert_becomes_a_machine_fault_once_the_data_flows_and_the_condition_persists(
    asset, champion, trained, technician, client
):
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=GAP))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.DATA_LINK
    # Two clean windows are not yet the evidence that opens an alert (M = 3): no change.
    score(asset, champion, windows(3, [OPEN + 1] * 2, x=x, flagged={}))
    alert.refresh_from_db()
    assert alert.category == AlertCategory.DATA_LINK and not category_events(alert)
    # The third clean anomalous window in a row moves it, on the same alert, with an event on its timeline.
    changed = score(asset, champion, windows(5, [OPEN + 1], x=x, flagged={}))
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.pk in changed
    assert alert.category == AlertCategory.MACHINE_FAULT
    assert category_events(alert) == [
        "category Check the data link → Machine fault: the condition persists over the last 3 windows and "
        "their readings no longer point at the data link"
    ]
    client.force_login(technician)
    card = card_of(client, alert)
    assert (
        'data-category="machine_fault"' in card
        and "Real fault:" in card
        and "Data link was down:" not in card
    )
    assert "Check the data link" not in card
    # Without notification rules the category change sends nothing; a later escalation speaks of the machine.
    assert plan_event(alert.events.get(kind=AlertEventKind.CATEGORY).pk) == []
    title, body = compose(alert, MessageKind.ESCALATED, 2)
    assert title == "Escalated: P-101 Vibration alert, low" and "data link" not in body
    assert Rule(site=asset.site, category="machine_fault").matches(alert)


def test_a_data_link_alert_that_becomes_a_machine_fault_tells_maintenance_once_and_it_no_more(
    asset, champion, trained, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(notify_tasks.send_notification_task, "delay", lambda pk: None)  # no broker
    site = asset.site
    it = make_channel(site, "IT", f"vigil://{site.slug}/it")
    maintenance = make_channel(site, "maintenance", f"vigil://{site.slug}/maintenance")
    Rule.objects.create(site=site, name="links", category="data_link", tier=1, channel=it)
    Rule.objects.create(site=site, name="faults", category="machine_fault", tier=1, channel=maintenance)
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=GAP))
    [opened] = Notification.objects.all()
    assert (opened.channel, opened.kind, opened.tier) == (it, MessageKind.OPENED, 1)
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, champion, windows(3, [OPEN + 1] * 3, x=x, flagged={}))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.MACHINE_FAULT
    [told] = Notification.objects.exclude(pk=opened.pk)
    assert (told.channel, told.kind, told.tier) == (maintenance, MessageKind.CATEGORY, 1)
    assert told.title == f"Now machine fault: {alert_words(alert)['text']}"
    assert (
        "Category changed: Check the data link → Machine fault: the condition persists over the last 3 "
        "windows and their readings no longer point at the data link." in told.body
    )
    assert "/notify/ack/" in told.body
    # IT was told of it already; more scoring (the alert stays a machine fault) tells nobody again.
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, champion, windows(6, [OPEN + 1] * 3, x=x, flagged={}))
    assert Notification.objects.count() == 2
    assert plan_event(alert.events.get(kind=AlertEventKind.CATEGORY).pk) == []


def test_a_flapping_link_or_a_score_below_the_open_threshold_keeps_the_data_link(asset, champion, trained):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=GAP))
    for k in range(3, 9):  # clean, gap, clean, gap...: never three clean windows in a row
        score(asset, champion, windows(k, [OPEN + 1], x=x, flagged={} if k % 2 else GAP))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.DATA_LINK
    # Clean windows between the thresholds keep the alert open but are not evidence of a machine fault.
    score(asset, champion, windows(9, [(OPEN + 5.0) / 2 + 1] * 3, x=x, flagged={}))
    alert.refresh_from_db()
    assert alert.is_active and alert.category == AlertCategory.DATA_LINK and not category_events(alert)


def test_a_sensor_fault_becomes_a_machine_fault_once_the_sensor_reads_clean_and_it_persists(
    asset, champion, trained
):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    assert Alert.objects.get().category == AlertCategory.SENSOR_FAULT
    score(asset, champion, windows(3, [OPEN + 1] * 3, x=x, flagged={}))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.MACHINE_FAULT
    assert category_events(alert)[0].endswith("no longer point at the sensor")


def test_a_sensor_marked_for_calibration_keeps_its_alert_a_sensor_fault(asset, champion, trained):
    asset.sensors.filter(role__key="vibration").update(needs_calibration=True)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    score(asset, champion, windows(3, [OPEN + 1] * 3, x=x, flagged={}))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.SENSOR_FAULT and not category_events(alert)


def test_a_provisional_category_follows_the_later_windows(asset, champion):
    # No explanation yet: any flagged sensor decided "Check the sensor" provisionally.
    flagged = {"temperature": int(QualityFlag.OUT_OF_RANGE)}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=None, flagged=flagged))
    assert Alert.objects.get().category == AlertCategory.SENSOR_FAULT
    score(asset, champion, windows(3, [OPEN + 1] * 3, x=None, flagged={}))
    alert = Alert.objects.get()
    assert alert.explanation_status == ExplanationStatus.PENDING
    assert alert.category == AlertCategory.MACHINE_FAULT


def test_a_machine_fault_stays_a_machine_fault_when_its_link_drops_later(asset, champion, trained):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={}))
    score(asset, champion, windows(3, [OPEN + 1] * 4, x=x, flagged=GAP))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.MACHINE_FAULT and not category_events(alert)


# --- a confirmed data-link alert speaks of the link -------------------------------------------------------


def test_a_confirmed_data_link_alert_says_the_link_was_down_not_that_a_repair_is_scheduled(
    asset, champion, trained, technician, engineer, client
):
    gap_readings(asset)
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=GAP))
    alert = Alert.objects.get()
    feedback = record_feedback(alert, technician, "confirm:scheduled")
    assert feedback.summary == "Data link was down — Fix scheduled"
    assert alert.events.filter(reason="Data link was down — Fix scheduled").exists()
    client.force_login(technician)
    detail = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "Data link was down — Fix scheduled" in detail and "Repair scheduled" not in detail
    # The health page's drill-down of the alerts says it the same way (alerts.choices.verdict_summary).
    client.force_login(engineer)
    drill = client.get(
        reverse("alerts:health_alerts"), {"period": "2026-01", "key": "all", "metric": "alerts"}
    )
    assert [a.verdict_text for a in drill.context["alerts"]] == ["Data link was down — Fix scheduled"]
    corrected = record_feedback(alert, technician, "confirm:repaired")
    assert corrected.summary == "Data link was down — Link restored"
    assert alert.events.filter(
        reason="verdict corrected: Data link was down — Fix scheduled → Data link was down — Link restored"
    ).exists()
    # A machine fault keeps the machine's words; a false alarm on a data-link alert is a false alarm.
    machine = make_alert(asset, champion, explanation=explanation_for(champion, trained, "current"))
    assert (
        record_feedback(machine, technician, "confirm:scheduled").summary
        == "Confirmed fault — Repair scheduled"
    )
    link = make_alert(asset, champion, category=AlertCategory.DATA_LINK)
    assert record_feedback(link, technician, "false_alarm:unknown").summary == "False alarm — Unknown"


def board_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("alerts:board")).status_code == 200
    return len(queries)


def test_the_board_names_a_similar_data_link_verdict_in_the_links_words_at_no_query_per_card(
    asset, site, champion, trained, technician, client
):
    explanation = explanation_for(champion, trained, "vibration")
    client.force_login(technician)

    def similar_pair(on):
        earlier = make_alert(
            on, champion, explanation=explanation, age_min=900, category=AlertCategory.DATA_LINK
        )
        record_feedback(earlier, technician, "confirm:repaired")
        return make_alert(on, champion, explanation=explanation)

    current = similar_pair(asset)
    one = board_queries(client)
    history = card_of(client, current)
    assert "Data link was down — Link restored" in history and "Confirmed fault" not in history
    for i in range(5):
        similar_pair(make_asset(site, tag=f"l-{i}"))
    assert board_queries(client) == one
