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
    demo_site, champion, http_via_django, queued, client, django_capture_on_commit_callbacks
):
    asset = make_asset(demo_site, tag="p-101", asset_type=champion.asset_type)
    technician = make_user("tess-demo", "technician", demo_site)
    connection = seed_demo_cmms("http://127.0.0.1:8000")
    assert connection.auto_create and connection.url == "http://127.0.0.1:8000/demo/cmms/orders"
    alert = make_alert(asset, champion)
    with django_capture_on_commit_callbacks(execute=True):
        record_feedback(alert, technician, "confirm:scheduled")
    for pk in queued["send"]:
        tasks.send_work_order_task.apply(args=[pk])
    order = WorkOrder.objects.get()
    assert order.status == "sent" and order.external_id == "DEMO-1"
    client.force_login(technician)
    page = client.get("/demo/cmms/").content.decode()
    assert 'id="demo-order-1"' in page and f"alert #{alert.pk}" in page
    received = orjson.loads(inbox_path().read_bytes())["orders"][0]["received_at"]
    # On the plant's clock, as every other page of the site (it said the server's UTC time).
    at = timezone.localtime(datetime.fromisoformat(received), demo_site.zone)
    assert f'Received <time datetime="{at.isoformat()}">{at:%Y-%m-%d %H:%M:%S %Z}</time> ·' in page
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
