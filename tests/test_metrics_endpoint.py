"""GET /metrics: off unless a token or networks are set, then the Prometheus exposition (parsed with
prometheus_client's own parser) of figures read from the database and Redis at scrape time, moving as
readings are ingested, alerts open and close, assets wait, tasks queue, boards connect."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.consumers import BOARD_CLIENT_TTL_S, BOARD_CLIENTS_KEY, _presence
from alerts.models import AlertEvent, ScoringDue
from bench.live_server import free_port
from config import metrics
from config.celery import app
from config.embedded_redis import start_embedded_redis
from plant.models import Connection, ConnectionState
from tests.alerts.builders import bare_champion, make_alert

TOKEN = "s3cret-metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A Redis of this module's own: the counters live in one hash, the queues are named lists."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = start_embedded_redis(url, tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def redis(redis_url, monkeypatch, settings):
    """The app's broker (and the board consumer's REDIS_URL) pointed at the module's Redis, emptied."""
    monkeypatch.setattr(app.conf, "broker_url", redis_url)
    monkeypatch.setattr(app, "_pool", None)  # the pool of the previous URL
    monkeypatch.setattr(metrics, "_down_until", 0.0)
    settings.REDIS_URL = redis_url
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.flushdb()
        yield client


@pytest.fixture
def scrape(client, settings):
    settings.VIGIL_METRICS_TOKEN = TOKEN

    def get() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics", headers=AUTH)
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain; version=")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return get


def test_metrics_are_off_without_a_token_or_a_network(db, client, settings):
    settings.VIGIL_METRICS_TOKEN = ""
    settings.VIGIL_METRICS_ALLOWED_NETWORKS = []
    response = client.get("/metrics")
    assert response.status_code == 404 and b"VIGIL_METRICS_TOKEN" in response.content


def test_a_scrape_needs_the_bearer_token(db, client, settings, redis):
    settings.VIGIL_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 403
    assert client.get("/metrics", headers=AUTH).status_code == 200
    assert client.post("/metrics", headers=AUTH).status_code == 405


def test_a_scrape_from_outside_the_allowed_networks_is_refused(db, client, settings, redis):
    from ipaddress import ip_network

    settings.VIGIL_METRICS_TOKEN = ""
    settings.VIGIL_METRICS_ALLOWED_NETWORKS = [ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    settings.VIGIL_METRICS_TOKEN = TOKEN  # both set: both are needed
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", headers=AUTH).status_code == 200


def test_a_bad_allowed_network_stops_the_settings_with_its_name(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import env_networks

    monkeypatch.setenv("VIGIL_METRICS_ALLOWED_NETWORKS", "10.0.0.0/8, not-a-net")
    with pytest.raises(ImproperlyConfigured, match="VIGIL_METRICS_ALLOWED_NETWORKS: 'not-a-net'"):
        env_networks("VIGIL_METRICS_ALLOWED_NETWORKS")


def test_ingest_counters_move_with_the_readings_posted(
    db, client, redis, scrape, asset, gateway_token, django_capture_on_commit_callbacks
):
    before = scrape()
    key = asset.sensors.order_by("key").first().key
    now = time.time()
    body = {
        "readings": [{"sensor": key, "ts": now - 60 + i, "value": 1.0 + i} for i in range(30)]
        + [
            {"sensor": "nowhere.p-1.current", "ts": now, "value": 1.0},
            {"sensor": key, "ts": now + 3600, "value": 1.0},
            {"sensor": key, "ts": now - 59, "value": "x"},
            {"sensor": key, "ts": now - 60, "value": 5.0},  # a duplicate of the first
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/readings",
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {gateway_token}"},
        )
    assert response.status_code == 200 and response.json()["accepted"] == 30
    after = scrape()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("vigil_ingest_readings_total", outcome="accepted") == 30
    assert delta("vigil_ingest_readings_total", outcome="duplicate") == 1
    assert delta("vigil_ingest_readings_rejected_total", reason="unknown_sensor") == 1
    assert delta("vigil_ingest_readings_rejected_total", reason="future_timestamp") == 1
    assert delta("vigil_ingest_readings_rejected_total", reason="bad_value") == 1
    assert delta("vigil_ingest_readings_rejected_total", reason="too_old") == 0


def test_readings_of_a_rolled_back_transaction_are_not_counted(db, redis, scrape, asset):
    from django.db import transaction

    from plant.ingest import ParsedBatch, ingest_readings

    key = asset.sensors.first().key
    before = scrape()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            ingest_readings(
                None, ParsedBatch.from_arrays([key] * 3, [time.time() - i for i in range(3)], [1, 2, 3])
            )
            raise RuntimeError("rolled back")
    assert scrape()[("vigil_ingest_readings_total", (("outcome", "accepted"),))] == before.get(
        ("vigil_ingest_readings_total", (("outcome", "accepted"),)), 0.0
    )


def test_alert_openings_and_closings_are_counted_from_their_events(db, redis, scrape, asset):
    version = bare_champion(asset.asset_type)
    opened = ("vigil_alerts_opened_total", (("shadow", "false"),))
    closed = ("vigil_alerts_closed_total", (("shadow", "false"),))
    before = scrape()
    alert = make_alert(asset, version)
    make_alert(asset, version, is_shadow=True, state="auto_closed")
    middle = scrape()
    assert middle[opened] == before[opened] + 1 and middle[closed] == before[closed]
    assert middle[("vigil_alerts_opened_total", (("shadow", "true"),))] == 1
    AlertEvent.objects.create(alert=alert, from_state="open", to_state="auto_closed", reason="cleared")
    AlertEvent.objects.create(
        alert=alert, from_state="auto_closed", to_state="auto_closed", reason="category"
    )
    assert scrape()[closed] == before[closed] + 1


def test_edge_alerts_awaiting_their_readings_are_counted_apart_from_pending_explanations(
    db, redis, scrape, asset
):
    version = bare_champion(asset.asset_type)
    make_alert(asset, version, age_min=300, raised_at_edge=True, explanation_status="awaiting")
    # One whose readings will never come (its agent sent everything it held) is no longer waited for.
    make_alert(
        asset, version, age_min=400, state="auto_closed", raised_at_edge=True, explanation_status="lost"
    )
    figures = scrape()
    assert figures[("vigil_explanations_awaiting_readings", ())] == 1
    # Not the explain queue's backlog: neither pending nor the oldest pending one.
    assert figures[("vigil_explanations_pending", ())] == 0
    assert figures[("vigil_explanation_oldest_pending_seconds", ())] == 0


def test_scoring_lag_is_per_asset_type_and_queue_depths_are_the_queue_lengths(db, redis, scrape, asset):
    slug = asset.asset_type.slug
    assert scrape()[("vigil_scoring_lag_seconds", (("asset_type", slug),))] == 0.0
    ScoringDue.objects.update_or_create(
        asset=asset, defaults={"due": True, "seq": 1, "marked_at": timezone.now() - timedelta(seconds=90)}
    )
    redis.lpush("scoring", b"{}", b"{}")
    redis.lpush("explain", b"{}")
    samples = scrape()
    assert 90 <= samples[("vigil_scoring_lag_seconds", (("asset_type", slug),))] < 120
    assert samples[("vigil_assets_due", (("asset_type", slug),))] == 1
    assert samples[("vigil_queue_depth", (("queue", "scoring"),))] == 2
    assert samples[("vigil_queue_depth", (("queue", "explain"),))] == 1
    assert samples[("vigil_queue_depth", (("queue", "default"),))] == 0


async def test_board_sockets_are_counted_until_they_leave_or_go_stale(redis, scrape):
    from asgiref.sync import sync_to_async

    get = sync_to_async(scrape)
    gauge = ("vigil_board_websocket_clients", ())
    await _presence("refresh", "specific.a")
    await _presence("refresh", "specific.b")
    assert (await get())[gauge] == 2
    await _presence("remove", "specific.a")
    # A socket of a killed web process stops being refreshed: past the TTL it is not counted.
    redis.zadd(BOARD_CLIENTS_KEY, {"specific.dead": time.time() - BOARD_CLIENT_TTL_S - 1})
    assert (await get())[gauge] == 1


def test_explanation_latency_is_a_histogram_fed_by_the_explain_task(db, redis, scrape, asset):
    version = bare_champion(asset.asset_type)
    alert = make_alert(asset, version)
    task = SimpleNamespace(name="alerts.tasks.complete_explanation_task")
    metrics.on_task_postrun(task=task, args=(alert.pk,), retval="ready", state="SUCCESS")
    metrics.on_task_postrun(task=task, args=(alert.pk,), retval=None, state="SUCCESS")  # nothing to do
    metrics.record_explanation_latency(3.0)
    samples = scrape()

    def bucket(le: str) -> float:
        return samples[("vigil_explanation_latency_seconds_bucket", (("le", le),))]

    assert samples[("vigil_explanation_latency_seconds_count", ())] == 2
    assert bucket("2.5") == 1 and bucket("5") == 2 and bucket("+Inf") == 2  # the alert's is ~0 s old
    assert 3.0 <= samples[("vigil_explanation_latency_seconds_sum", ())] < 4.0


def test_each_bridge_connection_has_its_status(db, redis, scrape, site):
    connection = Connection.objects.create(
        site=site, name="skid", protocol="modbus", endpoint="modbus://h:502"
    )
    ConnectionState.objects.create(
        connection=connection, running=True, connected=False, stored=120, errors=3, updated_at=timezone.now()
    )
    labels = (("connection", "skid"), ("protocol", "modbus"), ("site", site.slug))
    samples = scrape()
    assert samples[("vigil_bridge_running", labels)] == 1
    assert samples[("vigil_bridge_connected", labels)] == 0
    assert samples[("vigil_bridge_readings_stored_total", labels)] == 120
    assert samples[("vigil_bridge_errors_total", labels)] == 3
    assert samples[("vigil_bridge_last_message_age_seconds", labels)] == -1


def test_a_bridge_that_stopped_reporting_is_neither_running_nor_connected(db, redis, scrape, site, settings):
    # A SIGKILLed bridge's last report stays "running, connected"; only its age tells. The gauges said 1.
    settings.VIGIL_BRIDGE_STATUS_S = 2.0
    connection = Connection.objects.create(site=site, name="skid", protocol="mqtt", endpoint="mqtt://h")
    ConnectionState.objects.create(
        connection=connection, running=True, connected=True, updated_at=timezone.now() - timedelta(minutes=2)
    )
    labels = (("connection", "skid"), ("protocol", "mqtt"), ("site", site.slug))
    samples = scrape()
    assert samples[("vigil_bridge_running", labels)] == 0
    assert samples[("vigil_bridge_connected", labels)] == 0
    assert samples[("vigil_bridge_report_age_seconds", labels)] >= 120


def test_with_redis_down_the_database_figures_are_still_served(db, client, settings, monkeypatch, asset):
    settings.VIGIL_METRICS_TOKEN = TOKEN
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'vigil_metrics_source_up{source="redis"} 0.0' in text
    assert 'vigil_metrics_source_up{source="database"} 1.0' in text
    assert "vigil_scoring_lag_seconds{" in text and "vigil_queue_depth" not in text


def test_recording_with_redis_down_neither_fails_nor_waits_twice(monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(metrics, "_down_until", 0.0)
    metrics.record({"ingest:accepted": 5})
    assert metrics._down_until > time.monotonic()
    began = time.monotonic()
    metrics.record({"ingest:accepted": 5})  # within the back-off: not even tried
    assert time.monotonic() - began < 0.05
