"""Alerts decided at the edge reach the server once, merge with what the server decided, and bad events
are rejected one by one with the reason; heartbeats record the agent's queue and every drop."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertEvent, EdgeEvent
from alerts.services import ScoredWindow
from bench.edgekit import TRAIN_S, make_bundle
from detection.bundle import load_bundle
from edge.model import EdgeModel
from edge.sources import LEVELS
from models_registry.bundle import build_bundle
from plant.models import EdgeAgent, EdgeDrop, Gateway
from tests.alerts.conftest import CLEAR, OPEN, score
from tests.edge.conftest import set_back_episodes

EVENTS = "/api/v1/edge/events"
HEARTBEAT = "/api/v1/edge/heartbeat"


def post(client, token, url, payload):
    return client.post(
        url, data=json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def opened(champion, asset, *, at=None, key="p-101/ab/1/opened", **extra):
    at = at or timezone.now() - timedelta(minutes=30)
    return {
        "key": key,
        "kind": "opened",
        "asset": asset.tag,
        "at": at.timestamp(),
        "first": (at - timedelta(seconds=20)).timestamp(),
        "peak_at": (at - timedelta(seconds=10)).timestamp(),
        "peak_score": OPEN * 1.6,
        "level": 2,
        "model_sha256": champion.sha256,
        **extra,
    }


@pytest.fixture
def sent(client, champion, asset, gateway_token):
    """An 'opened' event accepted by the server: (event, response body)."""
    event = opened(champion, asset)
    response = post(client, gateway_token, EVENTS, {"events": [event]})
    assert response.status_code == 200, response.content
    return event, response.json()


def test_an_edge_alert_opens_with_the_agents_times_and_is_marked_raised_at_the_edge(sent, asset):
    event, body = sent
    [result] = body["results"]
    assert result["outcome"] == "opened"
    alert = Alert.objects.get(pk=result["alert"])
    assert alert.raised_at_edge and alert.state == AlertState.OPEN and not alert.is_shadow
    assert alert.asset == asset
    assert alert.opened_at.timestamp() == pytest.approx(event["at"])
    assert alert.peak_window_end.timestamp() == pytest.approx(event["peak_at"])
    assert alert.peak_score == pytest.approx(event["peak_score"])
    assert "decided at the edge" in AlertEvent.objects.get(alert=alert).reason


def test_a_resent_event_changes_nothing(client, sent, gateway_token):
    event, body = sent
    again = post(client, gateway_token, EVENTS, {"events": [event]}).json()
    assert again["results"][0]["outcome"] == "duplicate"
    assert again["results"][0]["alert"] == body["results"][0]["alert"]
    assert Alert.objects.count() == 1 and EdgeEvent.objects.count() == 1


def test_an_alert_the_server_already_opened_is_merged_not_doubled(client, champion, asset, gateway_token):
    start = timezone.now() - timedelta(hours=1)
    batch = [
        ScoredWindow(end=start + timedelta(seconds=10 * k), score=OPEN * 2, x=None, flagged={})
        for k in range(4)
    ]
    score(asset, champion, batch)
    server_alert = Alert.objects.get()
    event = opened(champion, asset, at=batch[-1].end)
    body = post(client, gateway_token, EVENTS, {"events": [event]}).json()
    assert body["results"][0] == {
        "index": 0,
        "key": event["key"],
        "outcome": "merged",
        "alert": server_alert.pk,
    }
    assert Alert.objects.count() == 1
    server_alert.refresh_from_db()
    assert server_alert.raised_at_edge


@pytest.mark.parametrize("criticality", ["low", "medium", "high"])
def test_the_agent_tells_the_plant_the_severity_the_server_gives_its_alert(
    client, champion, asset, gateway_token, tmp_path, criticality
):
    # The server shifts an alert's severity by the asset's criticality; the agent's bundle for the asset
    # carries the shift, so the HMI hears the severity the board and the server's write-back show.
    asset.criticality = criticality
    asset.save(update_fields=["criticality"])
    path = tmp_path / "bundle.zip"
    path.write_bytes(build_bundle(champion, asset))
    params = EdgeModel(load_bundle(str(path))).rule_params
    peak = OPEN + 3 * (OPEN - CLEAR)  # three bands past the open threshold: "medium" before the shift

    response = post(client, gateway_token, EVENTS, {"events": [opened(champion, asset, peak_score=peak)]})
    [result] = response.json()["results"]
    alert = Alert.objects.get(pk=result["alert"])

    assert alert.severity == criticality  # "medium" moved one level down or up by the criticality
    assert LEVELS[params.level(peak)] == alert.severity


def test_a_cleared_event_closes_the_live_edge_alert(client, sent, champion, asset, gateway_token):
    event, body = sent
    cleared = {**event, "key": "p-101/ab/1/cleared", "kind": "cleared", "at": event["at"] + 120}
    result = post(client, gateway_token, EVENTS, {"events": [cleared]}).json()["results"][0]
    assert result["outcome"] == "closed"
    alert = Alert.objects.get(pk=body["results"][0]["alert"])
    assert alert.state == AlertState.AUTO_CLOSED
    assert "cleared at the edge" in alert.events.order_by("-id").first().reason


def test_an_episode_decided_after_the_gateways_clock_was_set_back_opens_its_own_alert(
    client, champion, asset, gateway_token, tmp_path, monkeypatch
):
    """The agent's events over a fault, its clear, the clock set back an hour and the fault again at the
    same (set-back) times: the second opening is a new episode, not a resend, and must not be dropped."""
    decided = set_back_episodes(make_bundle(tmp_path).path, monkeypatch)
    assert [e.kind for e in decided] == ["opened", "cleared", "opened"] and decided[0].first == decided[
        2
    ].first
    # The simulated pump's times are 1970's: moved to three hours ago, the model and asset to the server's.
    offset = round(timezone.now().timestamp() - 3 * 3_600 - TRAIN_S, -1)
    events = [
        {
            **e.body(),
            "asset": asset.tag,
            "model_sha256": champion.sha256,
            **{name: getattr(e, name) + offset for name in ("at", "first", "peak_at")},
        }
        for e in decided
    ]
    results = post(client, gateway_token, EVENTS, {"events": events}).json()["results"]
    assert [r["outcome"] for r in results] == ["opened", "closed", "opened"]
    assert Alert.objects.count() == 2 and results[0]["alert"] != results[2]["alert"]
    # A resend of every event (the agent's queue after a lost acknowledgement) changes nothing.
    again = post(client, gateway_token, EVENTS, {"events": events}).json()["results"]
    assert [r["outcome"] for r in again] == ["duplicate"] * 3
    assert Alert.objects.count() == 2 and EdgeEvent.objects.count() == 3


@pytest.mark.parametrize(
    "change, error",
    [
        ({"kind": "exploded"}, "kind must be one of"),
        ({"asset": "p-999"}, "is not an asset of site"),
        ({"model_sha256": "0" * 64}, "has sha256"),
        ({"model_sha256": "xyz"}, "64 lowercase hex"),
        ({"at": "yesterday"}, "at must be epoch seconds"),
        ({"at": 1e300}, "not a representable time"),
        ({"peak_score": float("nan")}, None),  # NaN is not JSON: the body is refused as a whole
        ({"first": 4_000_000_000}, "in the future"),
        ({"key": ""}, "key must be a non-empty string"),
        # PostgreSQL stores no NUL in text nor jsonb: each was a 500 there (and stored on SQLite)
        ({"key": "a\x00b"}, "event.key contains a NUL character"),
        ({"asset": "p-101\x00"}, "event.asset contains a NUL character"),
        ({"note": {"why": "\x00"}}, "event.note.why contains a NUL character"),
        ({"extra\x00": 1}, "event has a key with a NUL character"),
    ],
)
def test_a_wrong_event_is_rejected_with_its_reason_and_the_others_kept(
    client, champion, asset, gateway_token, change, error
):
    good = opened(champion, asset, key="good")
    bad = {**opened(champion, asset, key="bad"), **change}
    response = client.post(
        EVENTS,
        data=json.dumps({"events": [bad, good]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {gateway_token}",
    )
    if error is None:
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
        return
    assert response.status_code == 200
    rejected, kept = response.json()["results"]
    assert rejected["outcome"] == "rejected" and error in rejected["error"]
    assert kept["outcome"] == "opened"


def test_another_sites_gateway_cannot_touch_this_sites_assets(client, champion, asset, other_site):
    _, token = Gateway.issue(other_site, "other gateway")
    result = post(client, token, EVENTS, {"events": [opened(champion, asset)]}).json()["results"][0]
    assert result["outcome"] == "rejected" and "is not an asset of site" in result["error"]
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    "body, status",
    [("[]", 400), ('{"events": 3}', 400), ("{", 400), ("", 400)],
)
def test_malformed_bodies_are_4xx_with_a_message(client, gateway_token, body, status):
    response = client.post(
        EVENTS, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {gateway_token}"
    )
    assert response.status_code == status and response.json()["error"]


def test_no_token_no_events(client, champion, asset):
    response = client.post(EVENTS, data=json.dumps({"events": []}), content_type="application/json")
    assert response.status_code == 401


def test_a_heartbeat_records_the_queue_and_each_drop_once(client, site, gateway_token):
    now = timezone.now().timestamp()
    drop = {"at": now - 5, "count": 1500, "first_ts": now - 4000, "last_ts": now - 3000}
    payload = {
        "agent_version": "1.0",
        "models": {"p-101": "ab" * 32},
        "queue": {
            "readings": 120,
            "events": 1,
            "oldest_ts": now - 60,
            "bytes_used": 4096,
            "max_bytes": 1 << 20,
            "dropped_total": 1500,
        },
        "drops": [drop],
    }
    for _ in range(2):
        response = post(client, gateway_token, HEARTBEAT, payload)
        assert response.status_code == 200, response.content
    agent = EdgeAgent.objects.get()
    assert agent.queue_readings == 120 and agent.dropped_total == 1500
    assert agent.models_in_use == {"p-101": "ab" * 32}
    assert EdgeDrop.objects.get().count == 1500  # the resent drop is stored once


def test_a_wrong_heartbeat_field_is_named(client, gateway_token):
    response = post(client, gateway_token, HEARTBEAT, {"drops": [{"count": -1}]})
    assert response.status_code == 400 and "drops[0].count" in response.json()["error"]


@pytest.mark.parametrize(
    "change, error",
    [
        ({"agent_version": "1.0\x00"}, "heartbeat.agent_version contains a NUL character"),
        ({"models": {"p-101\x00": "ab" * 32}}, "heartbeat.models has a key with a NUL character"),
        ({"models": {"p-101": "\x00"}}, "heartbeat.models.p-101 contains a NUL character"),
    ],
)
def test_a_nul_character_in_a_heartbeat_is_a_400_naming_the_field(client, gateway_token, change, error):
    response = post(client, gateway_token, HEARTBEAT, {"drops": [], **change})
    assert response.status_code == 400 and error in response.json()["error"]
    assert not EdgeAgent.objects.exists()


def test_the_board_and_the_detail_page_say_raised_at_the_edge(client, sent, technician):
    _, body = sent
    client.force_login(technician)
    assert "raised at the edge" in client.get("/alerts/").content.decode()
    assert "raised at the edge" in client.get(f"/alerts/{body['results'][0]['alert']}/").content.decode()
