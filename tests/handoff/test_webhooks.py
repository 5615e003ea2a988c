"""Signed outgoing webhooks: every alert state change and verdict is POSTed to the site's endpoints, signed
(HMAC-SHA256 over timestamp + "." + body), with an idempotency key that survives retries and redeliveries,
retried with exponential backoff on the outbound queue — never inside scoring."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from alerts.models import AlertEvent
from alerts.services import record_feedback
from handoff import tasks
from handoff.dispatch import dispatch_event
from handoff.models import WebhookDelivery, WebhookEndpoint
from handoff.signing import SIGNATURE_HEADER, SignatureError, signature_header, verify
from handoff.webhooks import retry_delay, set_secret
from plant.connections.secrets import decrypt
from tests.alerts.builders import make_alert
from tests.alerts.conftest import OPEN, score, windows

SECRET = "whsec-0123456789abcdef"


def endpoint_for(site, url: str, secret: str = SECRET) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(site=site, name="ops", url=url)
    set_secret(endpoint, secret)
    endpoint.save()
    return endpoint


def run(delivery_ids: list[int]) -> None:
    for pk in delivery_ids:
        tasks.deliver_webhook_task.apply(args=[pk])


def test_a_verdict_reaches_the_receiver_signed_and_the_signature_verifies(
    asset, champion, technician, serve, queued, django_capture_on_commit_callbacks
):
    receiver = serve(lambda got: (200, {"ok": True}))
    endpoint_for(asset.site, receiver.url + "/hook")
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(alert, technician, "confirm:scheduled", "bearing noise")
    assert len(queued["deliver"]) == 1 and not receiver.received  # queued, not sent in the request
    run(queued["deliver"])
    (got,) = receiver.received
    timestamp = verify(SECRET, got.headers[SIGNATURE_HEADER], got.body, now=time.time())
    assert abs(timestamp - time.time()) < 5
    event = got.json()
    assert event["type"] == "alert.verdict" == got.headers["Vigil-Event-Type"]
    assert event["id"] == got.headers["Idempotency-Key"]
    assert event["alert"]["id"] == alert.pk and event["alert"]["state"] == "resolved"
    assert event["change"] == {
        "from_state": "open",
        "to_state": "resolved",
        "by": technician.username,
        "reason": event["change"]["reason"],
    }
    assert event["verdict"]["verdict"] == "confirmed_fault" and event["verdict"]["action"] == "scheduled"
    assert event["verdict"]["note"] == "bearing noise" and event["verdict"]["from_work_order"] is False
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.last_status_code == 200


def test_the_receiver_refuses_a_replayed_or_tampered_request():
    body = b'{"id": "x"}'
    header = signature_header(SECRET, 1_000_000, body)
    assert verify(SECRET, header, body, now=1_000_000 + 299) == 1_000_000
    with pytest.raises(SignatureError, match="replay window"):
        verify(SECRET, header, body, now=1_000_000 + 301)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, header, b'{"id": "y"}', now=1_000_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify("another-secret-0000", header, body, now=1_000_000)
    # The timestamp is signed: moving it forward to pass the window breaks the signature.
    moved = header.replace("t=1000000", "t=1000400")
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, moved, body, now=1_000_400)
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, None, body, now=0)


def test_a_failing_receiver_is_retried_with_backoff_and_the_same_idempotency_key(
    asset, champion, serve, queued, monkeypatch, django_capture_on_commit_callbacks
):
    answers = iter([(500, {"error": "down"}), (503, {"error": "busy"}), (200, {"ok": True})])
    receiver = serve(lambda got: next(answers))
    endpoint_for(asset.site, receiver.url)
    countdowns: list[float] = []

    def recorded_delay(attempts: int) -> float:
        countdowns.append(retry_delay(attempts))
        return countdowns[-1]

    monkeypatch.setattr(tasks, "retry_delay", recorded_delay)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    run(queued["deliver"])  # eager: each retry runs at once, its countdown recorded
    assert len(receiver.received) == 3
    keys = {got.headers["Idempotency-Key"] for got in receiver.received}
    bodies = {got.body for got in receiver.received}
    assert len(keys) == 1 and len(bodies) == 1
    assert countdowns == [settings.VIGIL_WEBHOOK_BACKOFF_S, 2 * settings.VIGIL_WEBHOOK_BACKOFF_S]
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "delivered" and delivery.attempts == 3 and delivery.last_error == ""
    assert str(delivery.event_id) in keys


def test_the_backoff_doubles_and_is_capped(settings):
    settings.VIGIL_WEBHOOK_BACKOFF_S, settings.VIGIL_WEBHOOK_BACKOFF_MAX_S = 10.0, 60.0
    assert [retry_delay(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_delivery_gives_up_after_the_last_attempt_and_logs_the_error(
    asset, champion, serve, queued, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_WEBHOOK_MAX_ATTEMPTS = 2
    receiver = serve(lambda got: (500, {"error": "receiver broken"}))
    endpoint_for(asset.site, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    run(queued["deliver"])
    delivery = WebhookDelivery.objects.get()
    assert len(receiver.received) == 2
    assert delivery.status == "failed" and delivery.attempts == 2 and delivery.last_status_code == 500
    assert delivery.last_error.startswith("HTTP 500") and "receiver broken" in delivery.last_error


def test_an_unreachable_receiver_is_logged_with_the_connection_error(
    asset, champion, queued, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_WEBHOOK_MAX_ATTEMPTS = 1
    endpoint_for(asset.site, "http://127.0.0.1:9/nothing-listens")
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    run(queued["deliver"])
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert "ConnectError" in delivery.last_error


def test_a_manual_redelivery_sends_the_same_event_again(
    asset, champion, serve, queued, engineer, client, django_capture_on_commit_callbacks
):
    receiver = serve(lambda got: (200, {}))
    endpoint_for(asset.site, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    run(queued["deliver"])
    delivery = WebhookDelivery.objects.get()
    client.force_login(engineer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/handoff/webhookdelivery/",
            {"action": "redeliver_selected", "_selected_action": [delivery.pk]},
        )
    assert response.status_code == 302
    assert queued["deliver"] == [delivery.pk, delivery.pk]
    run(queued["deliver"][1:])
    first, second = receiver.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] and first.body == second.body
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 1  # counted again from the redelivery


def test_an_outsider_cannot_redeliver_another_sites_events(
    asset, champion, serve, queued, outsider, client, django_capture_on_commit_callbacks
):
    outsider.is_staff = True
    outsider.save()
    receiver = serve(lambda got: (200, {}))
    endpoint_for(asset.site, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    delivery = WebhookDelivery.objects.get()
    client.force_login(outsider)
    client.post(
        "/admin/handoff/webhookdelivery/", {"action": "redeliver_selected", "_selected_action": [delivery.pk]}
    )
    assert queued["deliver"] == [delivery.pk]  # only the original


def test_the_secret_is_stored_encrypted_and_never_shown_back(site, engineer, client):
    client.force_login(engineer)
    response = client.post(
        "/admin/handoff/webhookendpoint/add/",
        {
            "site": site.pk,
            "name": "ops",
            "url": "https://hooks.example/vigil",
            "secret": SECRET,
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert SECRET not in endpoint.secret_encrypted and decrypt(endpoint.secret_encrypted) == SECRET
    page = client.get(f"/admin/handoff/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert SECRET not in page and endpoint.secret_encrypted not in page
    # Saving without a secret keeps the stored one; a new endpoint without one is refused.
    client.post(
        f"/admin/handoff/webhookendpoint/{endpoint.pk}/change/",
        {
            "site": site.pk,
            "name": "ops2",
            "url": "https://hooks.example/vigil",
            "secret": "",
            "enabled": "on",
        },
    )
    endpoint.refresh_from_db()
    assert endpoint.name == "ops2" and decrypt(endpoint.secret_encrypted) == SECRET
    refused = client.post(
        "/admin/handoff/webhookendpoint/add/", {"site": site.pk, "name": "x", "url": "https://h.example/"}
    )
    assert refused.status_code == 200 and "needs a signing secret" in refused.content.decode()


def test_a_failing_endpoint_never_delays_scoring(
    asset, champion, serve, queued, django_capture_on_commit_callbacks
):
    slow = serve(lambda got: (500, {"error": "slow and broken"}), delay_s=5.0)
    endpoint_for(asset.site, slow.url)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        opened = score(asset, champion, windows(0, [OPEN + 5] * 5))
    elapsed = time.monotonic() - started
    assert opened  # the scoring opened an alert ...
    assert not slow.received  # ... and made no HTTP call: the delivery is queued for the outbound worker
    assert elapsed < 5.0
    assert WebhookDelivery.objects.filter(status="pending").count() == len(queued["deliver"]) >= 1


def test_other_sites_and_disabled_endpoints_get_nothing(
    asset, other_asset, champion, serve, queued, django_capture_on_commit_callbacks
):
    receiver = serve(lambda got: (200, {}))
    endpoint_for(other_asset.site, receiver.url)
    disabled = endpoint_for(asset.site, receiver.url)
    disabled.enabled = False
    disabled.save()
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    assert not queued["deliver"] and not WebhookDelivery.objects.exists()


def test_a_delivery_whose_task_was_lost_is_queued_again_by_the_sweep(
    asset, champion, queued, django_capture_on_commit_callbacks
):
    endpoint_for(asset.site, "https://hooks.example/")
    make_alert(asset, champion)  # no on-commit run: as if the broker was down when it committed
    dispatch_event(AlertEvent.objects.get().pk)
    queued["deliver"].clear()  # the task is lost
    assert tasks.sweep_outbound_task() == 0  # too recent: its task may still be on its way
    WebhookDelivery.objects.update(created_at=timezone.now() - tasks.STALE_AFTER - timedelta(seconds=1))
    assert tasks.sweep_outbound_task() == 1
    assert queued["deliver"] == [WebhookDelivery.objects.get().pk]


def test_a_redelivered_failed_event_gets_the_full_attempts_again(
    asset, champion, serve, queued, engineer, client, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_WEBHOOK_MAX_ATTEMPTS = 2
    answers = iter([(500, {}), (500, {}), (500, {}), (200, {})])
    receiver = serve(lambda got: next(answers))
    endpoint_for(asset.site, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_alert(asset, champion)
    run(queued["deliver"])
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.attempts == 2
    client.force_login(engineer)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/admin/handoff/webhookdelivery/",
            {"action": "redeliver_selected", "_selected_action": [delivery.pk]},
        )
    run(queued["deliver"][1:])  # fails once more, then is retried and delivered
    delivery.refresh_from_db()
    assert len(receiver.received) == 4 and delivery.status == "delivered" and delivery.attempts == 2
