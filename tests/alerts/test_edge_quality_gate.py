"""Alerts decided at the edge go through the server's quality gate: the agent sends no quality flags, so the
server categorises its alert from the flags of the deciding window's stored readings (plant.quality flags
them on ingest), at once when they are there and again when the scorer scores that window."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.choices import AlertCategory, AlertEventKind, AlertState, ExplanationStatus
from alerts.models import Alert, AlertEvent, Score
from alerts.scoring import score_assets
from alerts.services import lifecycle, mark_explanation_failed, record_feedback
from alerts.tasks import complete_explanation_task, sweep_pending_explanations_task
from bench import versions
from detection.runtime import ModelRuntimeError
from models_registry import cache
from models_registry.baseline import calibrate
from models_registry.edge_rollout import assign
from models_registry.models import EdgeAssignment, EdgeStage
from plant.choices import QualityFlag
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import EdgeAgent, Label, Reading
from tests.conftest import PASSWORD
from tests.scoring.conftest import NAMES, vibration_model

EVENTS = "/api/v1/edge/events"
LEVELS = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}


@pytest.fixture
def champion(asset):
    """A champion whose score is the window's mean vibration (open 10, clear 5)."""
    return vibration_model(asset.asset_type)


@pytest.fixture
def at() -> float:
    """The end of the window the agent decided on: a window end (a multiple of the step), an hour ago."""
    return math.floor((time.time() - 3600) / 10) * 10.0


def vibration(at: float, *, stuck_from: float | None = None):
    """A wearing machine: vibration ramps from 2 to 25 mm/s over the minute from at - 200 s (a ramp, not a
    step, which the quality rules would rightly call a spike). ``stuck_from``: the sensor repeats one value
    from then on."""

    def values(t: np.ndarray) -> np.ndarray:
        series = 2.0 + 23.0 * np.clip((t - (at - 200)) / 60.0, 0.0, 1.0)
        series = series + np.random.default_rng(int(t[0]) % 1000).normal(0, 0.05, len(t))
        if stuck_from is not None:
            series[t >= stuck_from] = 24.93
        return series

    return values


def store(asset, start_s: float, end_s: float, values, *, gaps: dict[str, tuple[float, float]] | None = None):
    """1 Hz readings of every sensor of the asset over [start_s, end_s] through ingest (which flags them, as
    it does the agent's uploads): vibration follows ``values``, the others sit at their level with noise;
    ``gaps``: role -> (start, end), no reading of that role in between."""
    keys, ts, vs = readings(asset, start_s, end_s, values, gaps=gaps)
    result = ingest_readings(None, ParsedBatch.from_arrays(keys, ts, vs))
    assert not result.rejected


def readings(
    asset, start_s: float, end_s: float, values, *, gaps: dict[str, tuple[float, float]] | None = None
):
    """The readings ``store`` stores: (sensor keys, times, values)."""
    t = np.arange(start_s, end_s + 1, dtype=np.float64)
    rng = np.random.default_rng(int(start_s) % 1000)
    keys, ts, vs = [], [], []
    for sensor in asset.sensors.select_related("role"):
        role = sensor.role.key
        series = values(t) if role == "vibration" else LEVELS[role] + rng.normal(0, 0.05, len(t))
        low, high = (gaps or {}).get(role, (0.0, 0.0))
        keep = ~((t > low) & (t < high))
        keys += [sensor.key] * int(keep.sum())
        ts.append(t[keep])
        vs.append(series[keep])
    return keys, np.concatenate(ts), np.concatenate(vs)


def send_event(client, token, champion, asset, kind: str, decided_at: float, at: float) -> dict:
    """The agent's ``kind`` event of the episode it opened at ``at``, decided at window ``decided_at``; the
    server's result for it."""
    event = {
        "key": f"{asset.tag}/{champion.sha256[:8]}/{at:.0f}/{decided_at:.0f}/{kind}",
        "kind": kind,
        "asset": asset.tag,
        "at": decided_at,
        "first": at - 20,
        "peak_at": at - 10,
        "peak_score": 25.0,
        "level": 2,
        "model_sha256": champion.sha256,
    }
    response = client.post(
        EVENTS,
        data=json.dumps({"events": [event]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content
    [result] = response.json()["results"]
    return result


def send_opened(client, token, champion, asset, at: float) -> Alert:
    result = send_event(client, token, champion, asset, "opened", at, at)
    assert result["outcome"] == "opened", result
    return Alert.objects.get(pk=result["alert"])


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def vibration_flags(asset, start_s: float, end_s: float) -> int:
    """The OR of the stored vibration readings' quality flags over (start_s, end_s]."""
    bits = 0
    for quality in Reading.objects.filter(
        sensor__asset=asset, sensor__role__key="vibration", ts__gt=utc(start_s), ts__lte=utc(end_s)
    ).values_list("quality", flat=True):
        bits |= quality
    return bits


def category_events(alert) -> list[str]:
    return list(
        AlertEvent.objects.filter(alert=alert, kind=AlertEventKind.CATEGORY).values_list("reason", flat=True)
    )


@pytest.mark.parametrize(
    "fault, flag, category",
    [
        ("gap", QualityFlag.GAP, AlertCategory.DATA_LINK),
        ("stuck", QualityFlag.STUCK, AlertCategory.SENSOR_FAULT),
    ],
)
def test_an_edge_alert_whose_stored_window_has_a_gap_or_a_stuck_driving_sensor_is_not_a_machine_fault(
    client, gateway_token, champion, asset, at, fault, flag, category
):
    if fault == "gap":
        store(asset, at - 400, at + 5, vibration(at), gaps={"vibration": (at - 30, at - 20)})
    else:
        store(asset, at - 400, at + 5, vibration(at, stuck_from=at - 50))
    # ingest flagged them, as it flags the agent's uploads
    assert vibration_flags(asset, at - 60, at) & flag

    alert = send_opened(client, gateway_token, champion, asset, at)

    assert alert.raised_at_edge and alert.state == AlertState.OPEN
    assert alert.category == category


def test_an_edge_alert_on_clean_readings_stays_a_machine_fault(client, gateway_token, champion, asset, at):
    store(asset, at - 400, at + 5, vibration(at))
    assert not vibration_flags(asset, at - 60, at)

    alert = send_opened(client, gateway_token, champion, asset, at)

    assert alert.category == AlertCategory.MACHINE_FAULT


def test_a_flag_outside_the_deciding_window_or_on_a_sensor_the_model_ignores_decides_nothing(
    client, gateway_token, champion, asset, at
):
    store(asset, at - 400, at + 5, vibration(at), gaps={"vibration": (at - 150, at - 140)})  # windows before
    assert vibration_flags(asset, at - 400, at) & QualityFlag.GAP

    alert = send_opened(client, gateway_token, champion, asset, at)

    assert alert.category == AlertCategory.MACHINE_FAULT


def test_an_edge_alert_opens_at_once_without_its_readings_and_is_categorised_when_they_are_scored(
    client, gateway_token, champion, asset, at
):
    store(asset, at - 400, at - 100, vibration(at))  # the agent sends its event before the latest readings

    alert = send_opened(client, gateway_token, champion, asset, at)
    assert alert.state == AlertState.OPEN and alert.category == AlertCategory.MACHINE_FAULT

    store(asset, at - 99, at + 30, vibration(at), gaps={"vibration": (at - 30, at - 20)})
    score_assets([asset.pk])

    assert Score.objects.filter(model_version=champion, window_end=alert.opened_at).get().flagged == {
        "vibration": int(QualityFlag.GAP)
    }
    alert.refresh_from_db()
    assert alert.category == AlertCategory.DATA_LINK
    [moved] = category_events(alert)
    assert "Machine fault → Check the data link" in moved and "edge agent decided on" in moved
    assert Alert.objects.filter(is_shadow=False).count() == 1


def test_clean_readings_arriving_later_leave_the_machine_fault_without_an_event(
    client, gateway_token, champion, asset, at
):
    alert = send_opened(client, gateway_token, champion, asset, at)

    store(asset, at - 400, at + 30, vibration(at))
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT
    assert category_events(alert) == []


def test_an_alert_the_edge_cleared_while_offline_is_categorised_when_its_readings_arrive(
    client, gateway_token, champion, asset, at
):
    # Back online, the agent sends its queued events first: the alert opens and closes before any reading.
    alert = send_opened(client, gateway_token, champion, asset, at)
    send_event(client, gateway_token, champion, asset, "cleared", at + 120, at)
    alert.refresh_from_db()
    assert alert.state == AlertState.AUTO_CLOSED

    store(asset, at - 400, at + 30, vibration(at, stuck_from=at - 50))
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.state == AlertState.AUTO_CLOSED
    assert alert.category == AlertCategory.SENSOR_FAULT


def test_an_edge_alert_whose_explanation_gave_up_is_explained_and_gated_on_the_driving_sensor_when_scored(
    client, gateway_token, champion, asset, at
):
    # Offline for longer than the explanation task's retries: the explanation failed for want of readings.
    alert = send_opened(client, gateway_token, champion, asset, at)
    assert mark_explanation_failed(alert.pk, "no complete window yet")

    # Back online: the readings of the window show a gap on the temperature sensor, which the model (the
    # mean vibration) does not read: with no explanation, any flagged sensor would have decided.
    store(asset, at - 400, at + 30, vibration(at), gaps={"temperature": (at - 30, at - 20)})
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert Score.objects.get(model_version=champion, window_end=alert.opened_at).flagged == {
        "temperature": int(QualityFlag.GAP)
    }
    assert alert.explanation_status == ExplanationStatus.READY
    assert (
        alert.dominant_role == "vibration" and alert.explanation["window_end"] == alert.opened_at.isoformat()
    )
    assert alert.category == AlertCategory.MACHINE_FAULT


def test_an_alert_of_a_version_the_server_replaced_is_explained_by_its_own_artifact_when_its_readings_arrive(
    client, gateway_token, asset, at
):
    # The agent still runs the previous champion when the server scores with the new one, and was offline
    # for longer than the explanation task's retries: the explanation gave up for want of readings.
    previous = vibration_model(asset.asset_type, name="pump-vib-previous")
    alert = send_opened(client, gateway_token, previous, asset, at)
    assert mark_explanation_failed(alert.pk, "no complete window yet")
    champion = vibration_model(asset.asset_type, weight=1.5)
    assert champion.kind == previous.kind

    store(asset, at - 400, at + 30, vibration(at), gaps={"vibration": (at - 30, at - 20)})
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.model_version == previous
    assert alert.explanation_status == ExplanationStatus.READY
    # The previous artifact's own score of the window (the mean vibration), not its successor's 1.5 times
    # that: the words on the card are of the model that decided.
    served = Score.objects.get(model_version=champion, window_end=alert.opened_at).score
    assert alert.explanation["output"] == pytest.approx(served / 1.5, rel=1e-4)
    assert alert.explanation["window_end"] == alert.opened_at.isoformat()
    assert alert.dominant_role == "vibration"
    assert alert.category == AlertCategory.DATA_LINK


def test_the_explanation_task_explains_an_alert_of_a_replaced_version_by_that_version(
    client, gateway_token, asset, at
):
    # The readings are stored when the event arrives (an agent that was not offline): its task explains it.
    previous = vibration_model(asset.asset_type, name="pump-vib-previous")
    champion = vibration_model(asset.asset_type, weight=1.5)
    store(asset, at - 400, at + 30, vibration(at))
    alert = send_opened(client, gateway_token, previous, asset, at)
    assert alert.model_version == previous and alert.explanation_status == ExplanationStatus.PENDING

    assert lifecycle.complete_explanation(alert.pk) == ExplanationStatus.READY
    alert.refresh_from_db()
    score_assets([asset.pk])  # the new champion's score of the same window, to compare with
    served = Score.objects.get(model_version=champion, window_end=alert.opened_at).score
    assert alert.explanation["output"] == pytest.approx(served / 1.5, rel=1e-4)
    assert alert.dominant_role == "vibration" and alert.category == AlertCategory.MACHINE_FAULT


def test_an_edge_alert_judged_before_its_readings_arrived_keeps_the_category_of_its_verdict(
    client, gateway_token, champion, asset, at, technician
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    record_feedback(alert, technician, "confirm:repaired", "bearing replaced")
    label = Label.objects.get()

    store(asset, at - 400, at + 30, vibration(at), gaps={"vibration": (at - 30, at - 20)})
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.category == AlertCategory.MACHINE_FAULT and category_events(alert) == []
    assert Label.objects.get() == label


def test_an_event_is_recorded_when_its_window_cannot_be_rebuilt(
    client, gateway_token, champion, asset, at, monkeypatch
):
    store(asset, at - 400, at + 5, vibration(at), gaps={"vibration": (at - 30, at - 20)})

    def broken(*args, **kwargs):
        raise ValueError("a regime step that cannot standardise these readings")

    monkeypatch.setattr(lifecycle, "asset_windows_between", broken)
    alert = send_opened(client, gateway_token, champion, asset, at)

    assert alert.state == AlertState.OPEN and alert.category == AlertCategory.MACHINE_FAULT


def test_once_its_opening_window_is_scored_an_active_edge_alert_costs_the_scorer_no_edge_query(
    client, gateway_token, champion, asset, at
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    store(asset, at - 400, at + 30, vibration(at))
    score_assets([asset.pk])
    store(asset, at + 31, at + 90, vibration(at))

    with CaptureQueriesContext(connection) as queries:
        score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN and alert.last_seen_at.timestamp() == at + 90
    wheres = [q["sql"].split("WHERE", 1)[-1] for q in queries.captured_queries if "WHERE" in q["sql"]]
    assert not [where for where in wheres if "raised_at_edge" in where]


def test_readings_of_an_episode_the_edge_opened_and_cleared_while_offline_open_no_second_alert(
    client, gateway_token, champion, asset, at
):
    # The agent decided the whole episode offline; its windows up to the clear were the episode's, so the
    # server scoring them when they arrive must not raise it again (people would be paged for it twice).
    alert = send_opened(client, gateway_token, champion, asset, at)
    assert send_event(client, gateway_token, champion, asset, "cleared", at + 180, at)["outcome"] == "closed"
    # The readings the agent decided on: still high for a while after the opening, then back to normal for
    # the clear run (the six windows up to at + 180 below the clear threshold); ramps, which the quality
    # rules rightly do not call spikes.
    wearing = vibration(at)
    easing = lambda t: 2.0 + 23.0 * np.clip((at + 100 - t) / 60.0, 0.0, 1.0)  # noqa: E731 (back down over a minute)
    store(asset, at - 400, at + 190, lambda t: np.minimum(wearing(t), easing(t)))
    ends = Score.objects.filter(asset=asset, score__gte=10.0, window_end__gt=utc(at)).values_list(
        "window_end", flat=True
    )
    score_assets([asset.pk])
    assert len(ends) >= 3  # enough windows above the open threshold after the opening to open an alert
    # No second alert of the model (the sensor rules may file the synthetic ramp's vibration as drifting
    # against the flat other sensors on some noise draws: their own alert kind, not the episode again).
    model_alerts = Alert.objects.filter(asset=asset, is_shadow=False, kind=champion.kind)
    assert list(model_alerts.values_list("pk", flat=True)) == [alert.pk]


# --- the explanation of an edge alert waits for its window's readings ---------------------------------------


@pytest.fixture
def tech_client(client, technician):
    client.login(username=technician.username, password=PASSWORD)
    return client


def last_try(alert: Alert) -> str | None:
    """What the explanation task's last retry returns (after it, a failure is for good)."""
    return complete_explanation_task.apply(
        args=(alert.pk,), retries=complete_explanation_task.max_retries
    ).get()


def waiting_words(alert: Alert) -> str:
    """The card's words for an alert awaiting its readings, with the deciding time in the site's zone."""
    decided = alert.opened_at.astimezone(ZoneInfo(alert.asset.site.timezone))
    return (
        "Explanation follows when the readings the edge agent decided on reach the server (decided at the "
        f"edge at {decided:%H:%M}; readings not received yet)."
    )


def test_an_edge_alert_whose_readings_have_not_arrived_awaits_them_instead_of_failing(
    client, gateway_token, champion, asset, at, tech_client
):
    asset.site.timezone = "America/New_York"  # the deciding time is said in the site's zone
    asset.site.save(update_fields=["timezone"])
    alert = send_opened(client, gateway_token, champion, asset, at)
    assert alert.explanation_status == ExplanationStatus.PENDING

    # Its task finds no reading of the window, not even a later one: the agent has not forwarded them yet.
    assert complete_explanation_task(alert.pk) == ExplanationStatus.AWAITING
    # Nothing to retry, and even a last retry does not give up on it.
    assert last_try(alert) == ExplanationStatus.AWAITING
    alert.refresh_from_db()
    assert alert.explanation_status == ExplanationStatus.AWAITING and alert.explanation is None

    board = tech_client.get(reverse("alerts:board")).content.decode()
    page = tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    for html in (board, page):
        assert waiting_words(alert) in html
        assert "could not be computed" not in html and "No explanation could be computed" not in html
    assert "still being computed" not in page


def test_an_awaiting_edge_alert_is_explained_when_its_readings_arrive_and_are_scored(
    client, gateway_token, champion, asset, at, tech_client
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    assert complete_explanation_task(alert.pk) == ExplanationStatus.AWAITING

    store(asset, at - 400, at + 30, vibration(at))
    score_assets([asset.pk])

    alert.refresh_from_db()
    assert alert.explanation_status == ExplanationStatus.READY
    assert alert.explanation["window_end"] == alert.opened_at.isoformat()
    assert alert.dominant_role == "vibration"
    board = tech_client.get(reverse("alerts:board")).content.decode()
    assert "Explanation follows when" not in board and "Working out which sensors" not in board
    assert 'class="why-sensor" data-role="vibration"' in board and "alert-why-pending" not in board


def test_an_edge_alert_whose_readings_are_there_but_whose_explanation_fails_ends_failed(
    client, gateway_token, champion, asset, at, monkeypatch
):
    store(asset, at - 400, at + 30, vibration(at))
    alert = send_opened(client, gateway_token, champion, asset, at)

    def broken(version):
        raise ModelRuntimeError("artifact unreadable")

    monkeypatch.setattr(cache, "loaded", broken)
    with pytest.raises(ModelRuntimeError):
        complete_explanation_task(alert.pk)  # retried, not awaited: the readings are there
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.PENDING
    assert last_try(alert) == "failed"
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.FAILED


def test_an_awaiting_alert_whose_readings_arrived_but_could_not_be_explained_is_swept_and_fails_for_good(
    client, gateway_token, champion, asset, at, monkeypatch, settings
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    assert complete_explanation_task(alert.pk) == ExplanationStatus.AWAITING
    Alert.objects.filter(pk=alert.pk).update(created_at=alert.created_at - timedelta(hours=2))
    sent: list[int] = []
    monkeypatch.setattr(complete_explanation_task, "delay", sent.append)
    assert sweep_pending_explanations_task() == 0  # no readings yet: nothing to retry

    # The readings arrive, but the model cannot explain them, at the scorer as in the task.
    def broken(version):
        raise ModelRuntimeError("artifact unreadable")

    monkeypatch.setattr(cache, "loaded", broken)
    store(asset, at - 400, at + 30, vibration(at))
    score_assets([asset.pk])
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.AWAITING

    assert sweep_pending_explanations_task() == 1 and sent == [alert.pk]
    assert last_try(alert) == "failed"
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.FAILED


# --- the wait ends: lost for good, or "out of contact since" -------------------------------------------------

HEARTBEAT = "/api/v1/edge/heartbeat"
NEW_YORK = ZoneInfo("America/New_York")


def heartbeat(client, token, *, readings: int = 0, oldest: float | None = None, drops=()) -> None:
    """The agent's report: ``readings`` still queued, the oldest of them timed ``oldest``."""
    payload = {
        "queue": {
            "readings": readings,
            "events": 0,
            "oldest_ts": oldest,
            "bytes_used": 0,
            "max_bytes": 1 << 20,
        },
        "drops": list(drops),
    }
    response = client.post(
        HEARTBEAT,
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content


def dated(moment: datetime) -> str:
    return f"{moment.astimezone(NEW_YORK):%a %d %b %H:%M}"


def card_time(moment: datetime) -> str:
    """A moment on a card in New York: the time today, else the date and time."""
    local = moment.astimezone(NEW_YORK)
    return (
        f"{local:%H:%M}"
        if local.date() == datetime.now(timezone.utc).astimezone(NEW_YORK).date()
        else dated(moment)
    )


def pages(tech_client, alert: Alert) -> list[str]:
    return [
        tech_client.get(reverse("alerts:board")).content.decode(),
        tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode(),
    ]


@pytest.fixture
def new_york(asset):
    asset.site.timezone = "America/New_York"  # times are said in the site's zone
    asset.site.save(update_fields=["timezone"])


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The explanation tasks the sweep queues."""
    queued: list[int] = []
    monkeypatch.setattr(complete_explanation_task, "delay", queued.append)
    return queued


def awaiting(alert: Alert) -> None:
    """Its task found no readings (and looked at it now); the alert is older than the sweep's delay."""
    assert complete_explanation_task(alert.pk) == ExplanationStatus.AWAITING
    Alert.objects.filter(pk=alert.pk).update(created_at=datetime.now(timezone.utc) - timedelta(hours=2))


def test_an_awaiting_alert_ends_lost_once_its_agent_reports_it_holds_nothing_from_before_the_decision(
    client, gateway_token, champion, asset, at, tech_client, new_york, sent
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    awaiting(alert)
    assert sweep_pending_explanations_task() == 0 and not sent  # no word from the agent yet

    # Back in contact, still sending what it held from before the decision: the wait goes on, and its
    # reports (every heartbeat while the backlog lasts) re-queue nothing: the task would find the same.
    heartbeat(client, gateway_token, readings=5000, oldest=at - 600)
    assert complete_explanation_task(alert.pk) == ExplanationStatus.AWAITING
    heartbeat(client, gateway_token, readings=4000, oldest=at - 300)
    assert sweep_pending_explanations_task() == 0 and not sent

    # Its next report: nothing left from before the decision (a wiped agent holds nothing at all), and
    # none of the window's readings has reached the server.
    heartbeat(client, gateway_token, readings=0, oldest=None)
    assert sweep_pending_explanations_task() == 1 and sent == [alert.pk]
    assert complete_explanation_task(alert.pk) == ExplanationStatus.LOST

    alert.refresh_from_db()
    reported = EdgeAgent.objects.get().last_contact_at
    words = (
        "The readings the edge agent decided on never reached the server: the agent (gateway edge-1) reported "
        f"at {dated(reported)} that it had nothing left to send from before the decision, so they were lost "
        "on the gateway or refused by the server."
    )
    assert alert.explanation_status == ExplanationStatus.LOST and alert.explanation is None
    assert alert.lost_readings_text == words
    for html in pages(tech_client, alert):
        assert words in html
        assert "Explanation follows when" not in html and "could not be computed" not in html
    # Ended: the sweep and a last retry leave it alone.
    assert sweep_pending_explanations_task() == 0
    assert last_try(alert) is None
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.LOST


def test_the_sweep_re_queues_an_awaiting_alert_once_its_agent_reports_holding_only_later_readings(
    client, gateway_token, champion, asset, at, sent
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    awaiting(alert)
    heartbeat(client, gateway_token, readings=900, oldest=at)  # the decision's own time: not sent yet
    assert sweep_pending_explanations_task() == 0 and not sent
    heartbeat(client, gateway_token, readings=300, oldest=at + 5)  # what it holds is all from after it
    assert sweep_pending_explanations_task() == 1 and sent == [alert.pk]


def test_an_alert_whose_window_its_agent_dropped_from_a_full_buffer_waits_for_its_report_then_ends_lost(
    client, gateway_token, champion, asset, at, tech_client, new_york
):
    heartbeat(client, gateway_token)  # in contact before its outage
    alert = send_opened(client, gateway_token, champion, asset, at)
    # Back online after its buffer overflowed: the readings it still held (after the window) arrive before
    # its report of the drop. Not a failure of the explanation: the agent has not said what it dropped.
    store(asset, at + 60, at + 400, vibration(at))
    assert last_try(alert) == ExplanationStatus.AWAITING

    now = datetime.now(timezone.utc).timestamp()
    drop = {"at": now, "count": 1500, "first_ts": at - 900, "last_ts": at + 50}
    heartbeat(client, gateway_token, drops=[drop])
    assert complete_explanation_task(alert.pk) == ExplanationStatus.LOST

    words = (
        "The readings the edge agent decided on never reached the server: the agent (gateway edge-1) dropped "
        f"1500 readings timed {dated(utc(at - 900))} to {dated(utc(at + 50))} from its full buffer."
    )
    assert Alert.objects.get(pk=alert.pk).lost_readings_text == words
    for html in pages(tech_client, alert):
        assert words in html and "could not be computed" not in html


def test_an_alert_whose_window_is_incomplete_on_the_server_though_its_agent_sent_everything_fails_not_lost(
    client, gateway_token, champion, asset, at
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    # Every sensor's readings reached the server but vibration's for the window's last two minutes, and the
    # agent has nothing left to send and dropped nothing: not a delivery the server waits for or lost.
    store(asset, at - 400, at + 30, vibration(at), gaps={"vibration": (at - 120, at + 31)})
    heartbeat(client, gateway_token, readings=0, oldest=None)
    assert last_try(alert) == "failed"
    assert Alert.objects.get(pk=alert.pk).explanation_status == ExplanationStatus.FAILED


def test_an_awaiting_alert_older_than_the_server_accepts_readings_ends_lost_though_its_agent_never_returns(
    client, gateway_token, champion, asset, at, settings, sent
):
    alert = send_opened(client, gateway_token, champion, asset, at)
    awaiting(alert)
    assert sweep_pending_explanations_task() == 0
    settings.VIGIL_INGEST_MAX_AGE_DAYS = 2
    Alert.objects.filter(pk=alert.pk).update(
        opened_at=datetime.now(timezone.utc) - timedelta(days=2, minutes=1)
    )

    assert sweep_pending_explanations_task() == 1 and sent == [alert.pk]
    assert complete_explanation_task(alert.pk) == ExplanationStatus.LOST
    assert Alert.objects.get(pk=alert.pk).explanation_note == (
        "they are older than the 2 days the server accepts readings for"
    )


def test_the_card_of_an_alert_awaiting_a_silent_agent_says_since_when_it_has_been_out_of_contact(
    client, gateway_token, champion, asset, at, tech_client, new_york, sent, settings
):
    settings.VIGIL_EDGE_SILENT_AFTER_S = 300
    heartbeat(client, gateway_token)
    alert = send_opened(client, gateway_token, champion, asset, at)
    awaiting(alert)
    last_contact = utc(at + 30)
    EdgeAgent.objects.update(last_contact_at=last_contact)  # it went silent after the decision

    silent = f" The edge agent has been out of contact since {card_time(last_contact)}."
    for html in pages(tech_client, alert):
        assert waiting_words(alert) + silent in html
    assert sweep_pending_explanations_task() == 0  # it still waits: the agent may come back with them

    # Back in contact, still sending its backlog: the card no longer says it is out of contact.
    heartbeat(client, gateway_token, readings=900, oldest=at - 60)
    for html in pages(tech_client, alert):
        assert waiting_words(alert) in html and "out of contact" not in html


# --- the calibration the agent scored with ------------------------------------------------------------------


def steady(level: float):
    """A healthy vibration at ``level`` mm/s, with the noise of a live sensor (not stuck)."""
    return lambda t: level + np.random.default_rng(int(t[0]) % 1000).normal(0, 0.05, len(t))


@pytest.mark.parametrize("explainer", ["task", "scorer"])
def test_an_edge_alert_is_explained_with_the_calibration_of_its_agents_bundle_not_a_later_one(
    client, gateway_token, asset, at, settings, tmp_path, explainer
):
    settings.VIGIL_EDGE_SIGNING_KEY = str(tmp_path / "edge-key.pem")
    version = versions.vibration_version(
        asset.asset_type,
        NAMES,
        name="pump-vib-baselined",
        output_spec={**versions.SPEC, "baseline": "per_asset"},
        open_threshold=10.0,
        clear_threshold=5.0,
        background=np.random.default_rng(5).normal(0.0, 0.5, size=(20, len(NAMES))),
    )
    # Calibrated at 2 mm/s; the bundle assigned to the agent ships that, and the agent switched to it.
    store(asset, at - 5000, at - 4000, steady(2.0))
    calibrate(asset, None, utc(at - 5000), utc(at - 4000))
    [assignment] = assign(version, [asset])
    EdgeAssignment.objects.filter(pk=assignment.pk).update(stage=EdgeStage.ACTIVE, outcome_at=utc(at - 3600))
    # Recalibrated on the server afterwards, at 5 mm/s: the agent still runs its bundle's 2 mm/s.
    store(asset, at - 3000, at - 2000, steady(5.0))
    calibrate(asset, None, utc(at - 3000), utc(at - 2000))

    alert = send_opened(client, gateway_token, version, asset, at)
    store(asset, at - 400, at + 30, vibration(at))
    if explainer == "task":
        assert lifecycle.complete_explanation(alert.pk) == ExplanationStatus.READY
    else:  # the scorer scores the window with the server's calibration, and explains it with the agent's
        score_assets([asset.pk])
        assert Score.objects.filter(model_version=version, window_end=alert.opened_at).exists()

    alert.refresh_from_db()
    assert alert.explanation_status == ExplanationStatus.READY
    [mean] = [f for f in alert.explanation["features"] if f["name"] == "vibration__mean"]
    assert mean["baseline"] == pytest.approx(2.0, abs=0.05)  # the bundle's, not the server's 5.0
    assert mean["raw"] - mean["value"] == pytest.approx(mean["baseline"])
    # Without a recorded assignment (a bundle installed by hand) the server's current calibration is used.
    EdgeAssignment.objects.all().delete()
    assert lifecycle._input_baseline(alert)[NAMES.index("vibration__mean")] == pytest.approx(5.0, abs=0.05)
