"""The demo's stand-in CMMS: the demo site's work orders reach its inbox through the generic adapter, and
its buttons close them in Vigil as an outcome would."""

from __future__ import annotations

from datetime import datetime

import httpx
import orjson
import pytest
from django.test import Client
from django.utils import timezone

from alerts.services import current_verdict, record_feedback
from demo.cmms_inbox import inbox_path, seed_demo_cmms
from demo.seed import DEMO_SITE
from handoff import tasks
from handoff.models import WorkOrder
from tests.alerts.builders import make_alert
from tests.conftest import make_asset, make_site, make_user
from tests.handoff.test_work_orders import undo_window_over


@pytest.fixture
def demo_site(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    site = make_site(DEMO_SITE[0])
    site.timezone = "America/Chicago"  # the demo's plant; the server's clock is UTC
    site.save(update_fields=["timezone"])
    return site


@pytest.fixture
def http_via_django(monkeypatch):
    """httpx.post answered by this Django (the demo server the worker would call)."""
    django = Client()

    def post(url: str, *, json=None, content=None, headers=None, **kwargs) -> httpx.Response:
        path = "/" + url.split("/", 3)[3]
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
        body = content if content is not None else orjson.dumps(json)
        answer = django.post(path, data=body, content_type="application/json", **extra)
        return httpx.Response(answer.status_code, content=answer.content, request=httpx.Request("POST", url))

    monkeypatch.setattr(httpx, "post", post)


def test_a_confirmed_fault_lands_in_the_demo_inbox_and_its_outcome_corrects_the_verdict(
    demo_site, champion, http_via_django, queued, client, settings, django_capture_on_commit_callbacks
):
    asset = make_asset(demo_site, tag="p-101", asset_type=champion.asset_type)
    technician = make_user("tess-demo", "technician", demo_site)
    connection = seed_demo_cmms("http://127.0.0.1:8000")
    assert connection.auto_create and connection.url == "http://127.0.0.1:8000/demo/cmms/orders"
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(alert, technician, "confirm:scheduled")
    undo_window_over(settings)  # the automatic order's countdown ran out
    for pk in queued["send"]:
        tasks.send_work_order_task.apply(args=[pk])
    order = WorkOrder.objects.get()
    assert order.status == "sent" and order.external_id == "DEMO-1"
    client.force_login(technician)
    page = client.get("/demo/cmms/").content.decode()
    assert 'id="demo-order-1"' in page and f"alert #{alert.pk}" in page
    received = orjson.loads(inbox_path().read_bytes())["orders"][0]["received_at"]
    shown = timezone.localtime(datetime.fromisoformat(received), demo_site.zone)
    assert f">{shown:%Y-%m-%d %H:%M:%S %Z}</time> (" in page  # the plant's clock, its zone named
    response = client.post("/demo/cmms/1/outcome", {"outcome": "no_fault_found", "findings": "all fine"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert page.count("DEMO-1: reported “No fault found” to Vigil") == 1  # the page's message, once
    assert current_verdict(alert).verdict == "false_alarm"
    order.refresh_from_db()
    assert order.outcome == "no_fault_found" and order.corrected == "Confirmed fault — Repair scheduled"
    assert "Reported: <strong>No fault found" in client.get("/demo/cmms/").content.decode()
    assert inbox_path().stat().st_mode & 0o777 == 0o600


def test_the_demo_inbox_refuses_a_wrong_credential_and_outsiders(demo_site, client, other_site):
    seed_demo_cmms("http://127.0.0.1:8000")
    answer = client.post(
        "/demo/cmms/orders", data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer nope"
    )
    assert answer.status_code == 401
    client.force_login(make_user("otto-demo", "technician", other_site))
    assert client.get("/demo/cmms/").status_code == 404
    assert client.post("/demo/cmms/1/outcome", {"outcome": "done"}).status_code == 404


def test_the_demo_inbox_tells_times_on_the_site_s_clock_and_priorities_in_words(demo_site, client):
    """The inbox showed 'Received 2026-12-05 22:26:59' (UTC, unlabelled) and 'priority 2' (the contract's
    code) to a site on Berlin time: now the site's clock, its zone named, and the severity's word."""
    demo_site.timezone = "Europe/Berlin"
    demo_site.save()
    client.force_login(make_user("tess-clock", "technician", demo_site))
    orders = [
        {
            "id": n,
            "title": f"order {n}",
            "priority": priority,
            "description": "",
            "alert": {"id": n, "link": ""},
        }
        for n, priority in ((1, 2), (2, 0), (3, 9))
    ]
    inbox_path().parent.mkdir(parents=True)
    received = "2026-12-05T22:26:59.567949+00:00"
    entries = [{"number": o["id"], "received_at": received, "order": o, "reported": None} for o in orders]
    inbox_path().write_text(orjson.dumps({"orders": entries}).decode())
    page = client.get("/demo/cmms/").content.decode()
    assert "Received <time" in page and ">2026-12-05 23:26:59 CET</time>" in page
    assert "22:26:59" not in page
    assert "ago</time>) · Vigil work order #1 · priority High ·" in page
    # How long ago, kept current by static/js/timewords.js as every page's relative times are.
    assert page.count('data-relative="ago">') == 3
    assert "priority Low ·" in page and "priority unknown (9) ·" in page
    assert "priority 2" not in page and "priority 0" not in page


def test_the_demo_inbox_refuses_a_work_order_that_is_not_an_object(demo_site, client):
    seed_demo_cmms("http://127.0.0.1:8000")
    credential = orjson.loads(inbox_path().read_bytes())["credential"]
    for body in (b'{"work_order": 5}', b'{"work_order": [1]}', b"[]", b"not json"):
        answer = client.post(
            "/demo/cmms/orders",
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {credential}",
        )
        assert answer.status_code == 400 and "work_order" in answer.json()["error"], body
    assert orjson.loads(inbox_path().read_bytes())["orders"] == []


def test_the_demo_inbox_reads_an_order_without_a_priority_and_one_an_older_inbox_stored_as_any_value(
    demo_site, client
):
    """The order endpoint took any work_order before it refused non-objects: a file it wrote then is still
    listed (it was a 500), and an order that gives no priority says so, not 'unknown (None)'."""
    client.force_login(make_user("tess-old", "technician", demo_site))
    inbox_path().parent.mkdir(parents=True)
    received = "2026-12-05T22:26:59+00:00"
    orders = [{"id": 1, "title": "no priority", "description": "", "alert": {"id": 1, "link": ""}}, 5]
    entries = [
        {"number": n, "received_at": received, "order": o, "reported": None} for n, o in enumerate(orders, 1)
    ]
    inbox_path().write_text(orjson.dumps({"orders": entries}).decode())
    answer = client.get("/demo/cmms/")
    assert answer.status_code == 200
    page = answer.content.decode()
    assert 'id="demo-order-2"' in page and "DEMO-1: no priority" in page
    assert "priority not given ·" in page and "None" not in page
    # Its outcome buttons answer 404 naming the order, not a 500 on the stored value.
    for number, order in ((2, 5), (3, {"id": "7"})):
        entries.append({"number": number + 1, "received_at": received, "order": order, "reported": None})
    inbox_path().write_text(orjson.dumps({"orders": entries}).decode())
    for number in (2, 3, 4):
        response = client.post(f"/demo/cmms/{number}/outcome", {"outcome": "done"})
        assert response.status_code == 404, number


@pytest.mark.parametrize(
    "body",
    [
        b'{"work_order": ' * 1000 + b"{}" + b"}" * 1000,  # Python's parser gives up (RecursionError)
        b"[1, 2]",
        b'{"work_order": "x"}',
        b'{"work_order": []}',
        b'{"work_order": {"title": "no id"}}',
        b'{"work_order": {"id": "7"}}',
        b'{"work_order": {"id": 1.5}}',
        b'{"work_order": {"id": true}}',
    ],
)
def test_the_demo_inbox_refuses_an_order_its_buttons_could_not_report(demo_site, client, body):
    """Found by tests/test_hostile_sweep_extremes.py's JSON bodies: a 500 for the deep one, and an order
    without an integer id was stored, so its outcome button failed (a 500) looking it up."""
    seed_demo_cmms("http://127.0.0.1:8000")
    credential = orjson.loads(inbox_path().read_bytes())["credential"]
    answer = client.post(
        "/demo/cmms/orders",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    assert answer.status_code == 400 and "work_order" in answer.json()["error"]
    assert orjson.loads(inbox_path().read_bytes())["orders"] == []


def test_the_demo_inbox_links_an_order_s_alert_only_to_a_web_address(demo_site, client):
    """An order's alert link was put into href as sent: whoever holds the credential could post
    'javascript:…'. Only http(s) addresses and paths on this server become links; the alert's number stays."""
    client.force_login(make_user("tess-link", "technician", demo_site))
    inbox_path().parent.mkdir(parents=True)
    links = ("javascript:alert(1)", " JavaScript:alert(2)", "https://vigil.example/alerts/3/", "/alerts/4/")
    orders = [
        {"id": n, "title": f"order {n}", "priority": 1, "description": "", "alert": {"id": n, "link": link}}
        for n, link in enumerate(links, 1)
    ]
    received = "2026-12-05T22:26:59+00:00"
    entries = [{"number": o["id"], "received_at": received, "order": o, "reported": None} for o in orders]
    inbox_path().write_text(orjson.dumps({"orders": entries}).decode())
    page = client.get("/demo/cmms/").content.decode()
    assert "javascript:" not in page.lower()
    assert (
        'href="https://vigil.example/alerts/3/">alert #3</a>' in page
        and 'href="/alerts/4/">alert #4</a>' in page
    )
    assert "alert #1" in page and "alert #2" in page
