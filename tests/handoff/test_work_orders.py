"""Work orders: sent to the site's CMMS (generic JSON adapter and Odoo's maintenance.request over
JSON-RPC, each against a local server implementing the documented subset), their outcome coming back by
webhook or polling and becoming the alert's verdict and label — correcting a confirmed fault when nothing
was found — shown on the alert and counted as acted on."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.db.models import F
from django.utils import timezone

from alerts.metrics.facts import alert_facts, conditions
from alerts.models import Alert, Feedback
from alerts.services import current_verdict, record_feedback, undo_verdict
from handoff import tasks
from handoff.models import CmmsConnection, WorkOrder
from handoff.work_orders import create_work_order, poll_outcomes, work_order_request
from plant.connections.secrets import encrypt
from alerts.writeback import alert_words
from tests.alerts.builders import explanation_for, make_alert
from tests.handoff.conftest import FakeOdoo

CREDENTIAL = "cmms-bearer-0123456789"


def cmms_for(
    site, url: str, *, kind: str = "generic", auto: bool = False, credential: str = CREDENTIAL, **fields
) -> tuple[CmmsConnection, str]:
    connection = CmmsConnection(site=site, kind=kind, url=url, auto_create=auto, **fields)
    connection.credential_encrypted = encrypt(credential)
    token = connection.rotate_inbound_token()
    connection.save()
    return connection, token


def generic_cmms(serve):
    counter = iter(range(100, 200))
    return serve(lambda got: (201, {"id": f"WO-{next(counter)}"}))


def send(queued) -> None:
    for pk in queued["send"]:
        tasks.send_work_order_task.apply(args=[pk])
    queued["send"].clear()


def undo_window_over(settings) -> None:
    """The verdicts given so far were given longer ago than the undo window (a queued automatic order's
    countdown has run out)."""
    Feedback.objects.update(created_at=F("created_at") - timedelta(seconds=settings.VIGIL_VERDICT_UNDO_S + 1))


def post_outcome(client, order_pk: int, token: str, body) -> object:
    data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    return client.post(
        f"/api/v1/work-orders/{order_pk}/outcome",
        data=data,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_a_confirmed_fault_sends_a_work_order_to_the_generic_cmms_automatically(
    asset, champion, technician, serve, queued, settings, django_capture_on_commit_callbacks
):
    cmms = generic_cmms(serve)
    cmms_for(asset.site, cmms.url + "/orders", auto=True)
    alert = make_alert(asset, champion, severity="high")
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(alert, technician, "confirm:scheduled", "bearing noise")
    undo_window_over(settings)
    with django_capture_on_commit_callbacks(execute=True):
        send(queued)
    (got,) = cmms.received
    assert got.path == "/orders" and got.headers["Authorization"] == f"Bearer {CREDENTIAL}"
    order = WorkOrder.objects.get()
    assert got.headers["Idempotency-Key"] == str(order.uid)
    body = got.json()["work_order"]
    assert body["id"] == order.pk and body["priority"] == 2 and body["asset"]["tag"] == asset.tag
    assert body["alert"]["id"] == alert.pk and "bearing noise" in body["description"]
    assert body["outcome_url"].endswith(f"/api/v1/work-orders/{order.pk}/outcome")
    assert order.status == "sent" and order.external_id == "WO-100" and order.trigger == "automatic"


def test_an_undone_confirmation_sends_no_automatic_work_order(
    asset, champion, technician, serve, queued, settings, django_capture_on_commit_callbacks
):
    # QA (demo): "Inspected, no action" pressed by mistake and undone at once still put DEMO-3 in the CMMS
    # inbox ("Verdict: Confirmed fault — Inspected, no action") for a verdict nobody gave any more.
    cmms = generic_cmms(serve)
    cmms_for(asset.site, cmms.url + "/orders", auto=True)
    alert = make_alert(asset, champion, severity="high")
    with django_capture_on_commit_callbacks(execute=True):
        verdict = record_feedback(alert, technician, "confirm:inspected_no_action")
    assert queued["send_after"] == [settings.VIGIL_VERDICT_UNDO_S]  # sent once the undo has had its time
    with django_capture_on_commit_callbacks(execute=True):
        undo_verdict(Alert.objects.get(), technician, verdict.pk)
    with django_capture_on_commit_callbacks(execute=True):
        send(queued)
    assert cmms.received == [] and not WorkOrder.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):  # confirmed again for good: ordered then
        record_feedback(Alert.objects.get(), technician, "confirm:scheduled")
    undo_window_over(settings)
    with django_capture_on_commit_callbacks(execute=True):
        send(queued)
    (got,) = cmms.received
    assert "Verdict: Confirmed fault — Repair scheduled." in got.json()["work_order"]["description"]
    assert WorkOrder.objects.get().status == "sent"


def test_a_confirmation_given_again_after_an_undo_gets_its_own_undo_window(
    asset, champion, technician, serve, queued, settings, django_capture_on_commit_callbacks
):
    # Confirmed, undone and confirmed again within the window: the first confirmation's order (the only
    # one, auto_create_for orders no second) used to go when its countdown ran out, while the second
    # confirmation could still be undone — and undoing it then left the CMMS with an order nobody gave.
    cmms = generic_cmms(serve)
    cmms_for(asset.site, cmms.url + "/orders", auto=True)
    alert = make_alert(asset, champion, severity="high")
    with django_capture_on_commit_callbacks(execute=True):
        first = record_feedback(alert, technician, "confirm:scheduled")
    with django_capture_on_commit_callbacks(execute=True):
        undo_verdict(Alert.objects.get(), technician, first.pk)
    with django_capture_on_commit_callbacks(execute=True):
        again = record_feedback(Alert.objects.get(), technician, "confirm:scheduled")
    Feedback.objects.filter(pk=again.pk).update(created_at=F("created_at") - timedelta(seconds=4))
    assert queued["send_after"] == [settings.VIGIL_VERDICT_UNDO_S]  # one order, queued once
    with django_capture_on_commit_callbacks(execute=True):
        send(queued)  # the first countdown ran out: the second confirmation is 4 s old
    assert cmms.received == [] and WorkOrder.objects.get().status == "pending"
    assert 0 < queued["send_after"][-1] <= settings.VIGIL_VERDICT_UNDO_S - 4  # waits out the rest
    with django_capture_on_commit_callbacks(execute=True):
        undo_verdict(Alert.objects.get(), technician, again.pk)
    with django_capture_on_commit_callbacks(execute=True):
        send(queued)
    assert cmms.received == [] and not WorkOrder.objects.exists()


def test_the_work_order_says_why_in_the_boards_words_not_the_sensor_roles_key(asset, champion, trained):
    alert = make_alert(
        asset,
        champion,
        dominant_role="vibration",
        explanation=explanation_for(champion, trained, "vibration"),
    )
    cmms_for(asset.site, "http://127.0.0.1:9/orders")
    description = work_order_request(create_work_order(alert)).description

    sentence = alert_words(alert)["top_sensor_text"]
    assert sentence and sentence.startswith("Vibration") and f"Why: {sentence}." in description
    assert "Driven by: vibration." not in description


def test_no_automatic_work_order_without_the_sites_consent_or_for_a_false_alarm(
    asset, champion, technician, serve, queued, django_capture_on_commit_callbacks
):
    cmms = generic_cmms(serve)
    connection, _ = cmms_for(asset.site, cmms.url, auto=False)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(make_alert(asset, champion), technician, "confirm:repaired")
    connection.auto_create = True
    connection.save()
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(make_alert(asset, champion, age_min=90), technician, "false_alarm:sensor_glitch")
    assert not WorkOrder.objects.exists() and not queued["send"]


def test_no_fault_found_after_a_confirmed_fault_corrects_the_verdict_and_the_label(
    asset, champion, technician, serve, queued, client, settings, django_capture_on_commit_callbacks
):
    cmms = generic_cmms(serve)
    _, token = cmms_for(asset.site, cmms.url, auto=True)
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = record_feedback(alert, technician, "confirm:scheduled")
    undo_window_over(settings)
    send(queued)
    order = WorkOrder.objects.get()
    response = post_outcome(
        client, order.pk, token, {"outcome": "no_fault_found", "findings": "bearing fine"}
    )
    assert response.status_code == 200, response.content
    assert response.json() | {} == {
        "id": order.pk,
        "alert": alert.pk,
        "status": "closed",
        "outcome": "no_fault_found",
        "external_id": "WO-100",
        "corrected": "Confirmed fault — Repair scheduled",
        "verdict": "false_alarm",
    }
    verdict = current_verdict(alert)
    assert verdict.verdict == "false_alarm" and verdict.supersedes_id == confirmed.pk and verdict.user is None
    assert "no fault found" in verdict.note and "bearing fine" in verdict.note
    assert (
        verdict.label.kind == "normal" and verdict.label.pk == confirmed.label_id
    )  # the one label, relabelled
    event = verdict.event
    assert event.reason.startswith("verdict corrected: Confirmed fault — Repair scheduled → False alarm")
    # The same outcome again is accepted and changes nothing; another one is a conflict.
    assert post_outcome(client, order.pk, token, {"outcome": "no_fault_found"}).status_code == 200
    assert Feedback.objects.filter(alert=alert, kind="verdict").count() == 2
    conflict = post_outcome(client, order.pk, token, {"outcome": "done"})
    assert conflict.status_code == 409 and "already closed" in conflict.json()["error"]


@pytest.mark.parametrize(
    "category, reason, words",
    [
        ("sensor_fault", "sensor_reads_true", "Sensor checked, reads true"),
        ("data_link", "link_working", "Link checked, working"),
    ],
)
def test_no_fault_found_on_a_check_the_sensor_or_link_alert_says_what_was_checked_is_fine(
    asset,
    champion,
    technician,
    serve,
    queued,
    client,
    django_capture_on_commit_callbacks,
    category,
    reason,
    words,
):
    """Found in the demo: the CMMS's "No fault found" on P-103's stuck-sensor alert was recorded "False
    alarm — Unknown", while that alert's own false-alarm button is "Sensor checked, reads true"; a data-link
    alert's is "Link checked, working"."""
    cmms = generic_cmms(serve)
    _, token = cmms_for(asset.site, cmms.url)
    alert = make_alert(asset, champion, category=category, dominant_role="pressure")
    with django_capture_on_commit_callbacks(execute=True):
        order = create_work_order(alert, user=technician)
    send(queued)

    assert post_outcome(client, order.pk, token, {"outcome": "no_fault_found"}).status_code == 200

    verdict = current_verdict(alert)
    assert (verdict.verdict, verdict.reason) == ("false_alarm", reason)
    assert verdict.summary == f"False alarm — {words}"


def test_a_work_order_done_counts_as_acted_on(
    asset, champion, technician, serve, queued, client, django_capture_on_commit_callbacks
):
    cmms = generic_cmms(serve)
    _, token = cmms_for(asset.site, cmms.url)
    alert = make_alert(asset, champion)
    alerts = Alert.objects.filter(pk=alert.pk)
    actionable = conditions(timezone.now())["actionable"]
    with django_capture_on_commit_callbacks(execute=True):
        order = create_work_order(alert, user=technician)
    send(queued)
    assert alert_facts(alerts, condition=actionable) == []
    assert (
        post_outcome(client, order.pk, token, {"outcome": "done", "findings": "bearing replaced"}).status_code
        == 200
    )
    (facts,) = alert_facts(alerts, condition=actionable)
    assert facts.verdict == "confirmed_fault" and facts.verdict_action == "repaired"
    alert.refresh_from_db()
    assert alert.state == "resolved"
    label = current_verdict(alert).label
    assert label.kind == "fault" and "bearing replaced" in label.note


def test_a_cancelled_work_order_leaves_the_verdict_alone(
    asset, champion, technician, serve, queued, client, django_capture_on_commit_callbacks
):
    cmms = generic_cmms(serve)
    _, token = cmms_for(asset.site, cmms.url)
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = record_feedback(alert, technician, "confirm:scheduled")
        order = create_work_order(alert, user=technician)
    response = post_outcome(client, order.pk, token, {"outcome": "cancelled", "findings": None})
    assert response.status_code == 200 and response.json()["verdict"] is None
    assert current_verdict(alert).pk == confirmed.pk


@pytest.mark.parametrize(
    ("headers", "path", "body", "status", "message"),
    [
        ({}, None, {"outcome": "done"}, 401, "missing Authorization header"),
        ({"HTTP_AUTHORIZATION": "Token abc"}, None, {"outcome": "done"}, 401, "malformed Authorization"),
        ({"HTTP_AUTHORIZATION": "Bearer vwo_wrong"}, None, {"outcome": "done"}, 401, "invalid CMMS token"),
        ("other", None, {"outcome": "done"}, 404, "no work order #"),
        ("own", "/api/v1/work-orders/999999/outcome", {"outcome": "done"}, 404, "no work order #999999"),
        ("own", None, {"outcome": "fixed"}, 400, "unknown outcome 'fixed'; use one of: done, no_fault_found"),
        ("own", None, {}, 400, "unknown outcome 'None'"),
        ("own", None, b"{not json", 400, "body is not valid JSON"),
        ("own", None, b"[1, 2]", 400, "body must be a JSON object"),
        ("own", None, {"outcome": "done", "findings": 5}, 400, "findings must be a string"),
        ("own", None, b"x" * (64 * 1024 + 1), 413, "body too large"),
        # PostgreSQL stores no NUL in text: the findings reached the Feedback row as a 500
        ("own", None, {"outcome": "done", "findings": "bearing\x00"}, 400, "findings: "),
    ],
)
def test_bad_outcome_requests_get_a_4xx_naming_the_problem(
    asset, other_asset, champion, technician, client, queued, headers, path, body, status, message
):
    _, own = cmms_for(asset.site, "https://cmms.example/orders")
    _, other = cmms_for(other_asset.site, "https://cmms.example/orders")
    order = create_work_order(make_alert(asset, champion), user=technician)
    if headers == "own":
        headers = {"HTTP_AUTHORIZATION": f"Bearer {own}"}
    elif headers == "other":
        headers = {"HTTP_AUTHORIZATION": f"Bearer {other}"}
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post(
        path or f"/api/v1/work-orders/{order.pk}/outcome",
        data=data,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"].startswith(message)
    order.refresh_from_db()
    assert order.status == "pending" and not order.outcome


def test_the_outcome_endpoint_takes_only_post(client):
    response = client.get("/api/v1/work-orders/1/outcome")
    assert response.status_code == 405 and response.json()["error"].startswith("method GET not allowed")


def test_a_cmms_that_refuses_is_retried_then_marked_failed_with_its_answer(
    asset, champion, technician, serve, queued, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_CMMS_MAX_ATTEMPTS = 2
    cmms = serve(lambda got: (422, {"error": "unknown asset"}))
    cmms_for(asset.site, cmms.url)
    with django_capture_on_commit_callbacks(execute=True):
        order = create_work_order(make_alert(asset, champion), user=technician)
    send(queued)
    order.refresh_from_db()
    assert len(cmms.received) == 2
    assert order.status == "failed" and order.attempts == 2 and "HTTP 422" in order.last_error
    assert "unknown asset" in order.last_error


def test_a_generic_answer_without_an_id_is_an_error(asset, champion, technician, serve, queued, settings):
    settings.VIGIL_CMMS_MAX_ATTEMPTS = 1
    cmms = serve(lambda got: (200, {"ok": True}))
    cmms_for(asset.site, cmms.url)
    order = create_work_order(make_alert(asset, champion), user=technician)
    tasks.send_work_order_task.apply(args=[order.pk])
    order.refresh_from_db()
    assert order.status == "failed" and 'no "id"' in order.last_error


# --- Odoo maintenance.request over JSON-RPC ----------------------------------------------------------------


def odoo_connection(site, odoo, serve, **fields):
    server = serve(odoo.answer)
    return cmms_for(
        site,
        server.url,
        kind="odoo",
        odoo_database=odoo.db,
        odoo_login=odoo.login,
        credential=odoo.password,
        **fields,
    )


def test_odoo_gets_a_corrective_maintenance_request_on_the_assets_equipment(
    asset, champion, technician, serve, queued
):
    odoo = FakeOdoo()
    odoo.equipment[3]["name"] = asset.tag
    odoo_connection(asset.site, odoo, serve)
    alert = make_alert(asset, champion, severity="critical")
    order = create_work_order(alert, user=technician)
    tasks.send_work_order_task.apply(args=[order.pk])
    order.refresh_from_db()
    assert order.status == "sent" and order.external_id == "1"
    request = odoo.requests[1]
    assert request["maintenance_type"] == "corrective" and request["equipment_id"] == 3
    assert request["priority"] == "3" and f"alert #{alert.pk}" in request["name"]
    assert f"/alerts/{alert.pk}/" in request["description"]
    assert [call[:2] for call in odoo.calls] == [
        ("common", "login"),
        ("object", "execute_kw"),
        ("object", "execute_kw"),
    ]


@pytest.mark.parametrize(
    ("stage", "archive", "outcome", "verdict"),
    [
        (3, False, "done", "confirmed_fault"),
        (4, False, "no_fault_found", "false_alarm"),
        (1, True, "cancelled", "confirmed_fault"),
    ],
)
def test_odoo_outcomes_are_polled_from_the_requests_stage(
    asset,
    champion,
    technician,
    serve,
    queued,
    stage,
    archive,
    outcome,
    verdict,
    django_capture_on_commit_callbacks,
):
    odoo = FakeOdoo()
    odoo_connection(asset.site, odoo, serve)
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(alert, technician, "confirm:scheduled")
        order = create_work_order(alert, user=technician)
    send(queued)
    assert poll_outcomes() == 0  # still "New Request"
    odoo.set_stage(1, stage)
    odoo.requests[1]["archive"] = archive
    assert poll_outcomes() == 1
    order.refresh_from_db()
    assert order.status == "closed" and order.outcome == outcome and order.outcome_source == "poll"
    assert current_verdict(alert).verdict == verdict
    assert poll_outcomes() == 0  # closed orders are not read again


def test_odoo_refusing_the_login_is_recorded_on_the_work_order(
    asset, champion, technician, serve, queued, settings
):
    settings.VIGIL_CMMS_MAX_ATTEMPTS = 1
    odoo = FakeOdoo()
    connection, _ = odoo_connection(asset.site, odoo, serve)
    connection.credential_encrypted = encrypt("wrong")
    connection.save()
    order = create_work_order(make_alert(asset, champion), user=technician)
    tasks.send_work_order_task.apply(args=[order.pk])
    order.refresh_from_db()
    assert order.status == "failed" and "refused the login" in order.last_error


# --- the alert page, "what was done last time" and the health page ------------------------------------------


def test_a_technician_creates_a_work_order_from_the_alert_page(
    asset, champion, technician, outsider, client, queued, django_capture_on_commit_callbacks
):
    cmms_for(asset.site, "https://cmms.example/orders")
    alert = make_alert(asset, champion)
    client.force_login(outsider)
    assert client.post(f"/handoff/alerts/{alert.pk}/work-order/").status_code == 404
    client.force_login(technician)
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert 'id="create-work-order"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/handoff/alerts/{alert.pk}/work-order/")
    assert response.status_code == 302
    order = WorkOrder.objects.get()
    assert order.requested_by == technician and order.trigger == "manual" and queued["send"] == [order.pk]
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert f'id="work-order-{order.pk}"' in page and 'id="create-work-order"' not in page
    assert f"Created by {technician.get_username()}, " in page and "Created by a person by" not in page
    again = client.post(f"/handoff/alerts/{alert.pk}/work-order/", follow=True)
    assert "already has work order" in again.content.decode() and WorkOrder.objects.count() == 1


def test_the_board_card_offers_a_work_order_while_the_alert_has_none_open(
    asset, champion, technician, client, queued, django_capture_on_commit_callbacks
):
    alert = make_alert(asset, champion)
    button = 'data-action="work-order"'
    client.force_login(technician)
    assert button not in client.get("/alerts/").content.decode()  # no CMMS on the site
    cmms_for(asset.site, "https://cmms.example/orders")
    card = client.get("/alerts/").content.decode()
    assert button in card and f'action="/handoff/alerts/{alert.pk}/work-order/"' in card
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/handoff/alerts/{alert.pk}/work-order/")
    assert response.status_code == 302 and WorkOrder.objects.count() == 1
    assert button not in client.get("/alerts/").content.decode()  # one open work order per alert
    # A card pushed live posts with htmx: the browser is sent to the alert page, which says why not again.
    again = client.post(f"/handoff/alerts/{alert.pk}/work-order/", headers={"HX-Request": "true"})
    assert again.status_code == 200 and again["HX-Redirect"] == f"/alerts/{alert.pk}/"


def test_without_a_cmms_the_alert_page_offers_no_work_order(asset, champion, technician, client):
    alert = make_alert(asset, champion)
    client.force_login(technician)
    assert 'id="work-orders"' not in client.get(f"/alerts/{alert.pk}/").content.decode()
    response = client.post(f"/handoff/alerts/{alert.pk}/work-order/", follow=True)
    assert "has no CMMS connection" in response.content.decode() and not WorkOrder.objects.exists()


def test_the_outcome_shows_on_the_alert_and_on_what_was_done_last_time(
    asset, champion, technician, client, queued
):
    _, token = cmms_for(asset.site, "https://cmms.example/orders")
    earlier = make_alert(asset, champion, age_min=600, dominant_role="vibration")
    order = create_work_order(earlier, user=technician)
    post_outcome(
        client, order.pk, token, {"outcome": "done", "findings": "outer race worn, bearing replaced"}
    )
    later = make_alert(asset, champion, opened=timezone.now(), dominant_role="vibration")
    client.force_login(technician)
    page = client.get(f"/alerts/{earlier.pk}/").content.decode()
    assert 'data-outcome="done"' in page and "outer race worn" in page
    page = client.get(f"/alerts/{later.pk}/").content.decode()
    assert "Last similar alert" in page and "outer race worn, bearing replaced" in page


def test_the_health_page_counts_work_orders_and_their_labels(
    asset, champion, technician, engineer, client, queued
):
    _, token = cmms_for(asset.site, "https://cmms.example/orders")
    for outcome in ("done", "no_fault_found", None):
        order = create_work_order(make_alert(asset, champion), user=technician)
        if outcome:
            post_outcome(client, order.pk, token, {"outcome": outcome})
    client.force_login(engineer)
    page = client.get("/alerts/health/").content.decode()
    assert 'id="wo-created">3<' in page and 'id="wo-closed">2<' in page
    assert (
        'id="wo-done">1<' in page and 'id="wo-no_fault_found">1<' in page and 'id="wo-cancelled">0<' in page
    )
    assert 'id="wo-labels">2<' in page


def test_the_openapi_document_describes_the_outcome_endpoint_and_the_webhook_event(client):
    from openapi_spec_validator import validate

    document = orjson.loads(client.get("/api/v1/openapi.json").content)
    validate(document)
    operation = document["paths"]["/api/v1/work-orders/{id}/outcome"]["post"]
    assert {"200", "400", "401", "404", "409", "413"} <= set(operation["responses"])
    assert document["components"]["securitySchemes"]["cmmsToken"]["scheme"] == "bearer"
    event = document["webhooks"]["alertEvent"]["post"]
    assert event["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookEvent")
    assert {p["name"] for p in event["parameters"]} == {
        "Vigil-Signature",
        "Idempotency-Key",
        "Vigil-Event-Type",
    }


def test_an_outcome_the_alert_cannot_take_is_a_409_not_a_500(asset, champion, technician, client, queued):
    _, token = cmms_for(asset.site, "https://cmms.example/orders")
    alert = make_alert(asset, champion)
    order = create_work_order(alert, user=technician)
    Alert.objects.filter(pk=alert.pk).update(is_shadow=True)  # shadow alerts take no feedback
    response = post_outcome(client, order.pk, token, {"outcome": "done"})
    assert response.status_code == 409 and "shadow alerts take no feedback" in response.json()["error"]
    order.refresh_from_db()
    assert order.status == "pending"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_confirmation_given_again_while_the_undone_order_is_dropped_still_gets_a_work_order(
    asset, champion, technician, serve, queued, monkeypatch
):
    # The task read "no confirmed fault" (undone), the technician confirmed again and its automatic order
    # was not made (the pending one still stood), then the task deleted the pending one: a confirmed fault
    # with no work order. The task now decides under the verdicts' lock on the alert.
    import threading

    from handoff import work_orders

    cmms = generic_cmms(serve)
    cmms_for(asset.site, cmms.url + "/orders", auto=True)
    alert = make_alert(asset, champion, severity="high")
    first = record_feedback(alert, technician, "confirm:scheduled")
    undo_verdict(Alert.objects.get(), technician, first.pk)
    (order,) = WorkOrder.objects.all()
    read, confirmed_again = threading.Event(), threading.Event()
    real = work_orders.current_verdict

    def slow_read(alert):
        verdict = real(alert)
        read.set()
        confirmed_again.wait(timeout=2)  # with the lock held the confirmation waits for this task instead
        return verdict

    monkeypatch.setattr(work_orders, "current_verdict", slow_read)
    task = threading.Thread(target=work_orders.send_work_order, args=[order.pk])
    task.start()
    try:
        assert read.wait(timeout=10)
        record_feedback(Alert.objects.get(), technician, "confirm:scheduled")
        confirmed_again.set()
    finally:
        task.join(timeout=30)
    assert current_verdict(Alert.objects.get()).verdict == "confirmed_fault"
    assert WorkOrder.objects.filter(alert=alert).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_undo_waiting_for_the_alerts_lock_is_timed_when_it_gets_it(asset, champion, technician, settings):
    # The automatic order's task times the undo window under the alert's lock and sends once it is over; an
    # undo that started 9 s after the verdict but got the lock after the task had sent was still let through
    # (timed before it waited), leaving the CMMS an order for a verdict nobody gave.
    import threading
    import time

    from django.db import transaction

    from alerts.services import FeedbackError

    alert = make_alert(asset, champion, severity="high")
    verdict = record_feedback(alert, technician, "confirm:scheduled")
    Feedback.objects.filter(pk=verdict.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.VIGIL_VERDICT_UNDO_S - 1)
    )
    locked = threading.Event()

    def task_holding_the_lock() -> None:
        with transaction.atomic():
            list(Alert.objects.select_for_update().filter(pk=alert.pk))
            locked.set()
            time.sleep(2)

    task = threading.Thread(target=task_holding_the_lock)
    task.start()
    try:
        assert locked.wait(timeout=10)
        with pytest.raises(FeedbackError, match="can no longer be undone"):
            undo_verdict(Alert.objects.get(), technician, verdict.pk)
    finally:
        task.join(timeout=30)
    assert current_verdict(Alert.objects.get()).pk == verdict.pk
