"""The CMMS outcome token in the console: shown once on the answer page (add or rotate), stored as a hash,
never cached, and only for the engineer's own sites."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from handoff.models import CmmsConnection, WebhookEndpoint

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"vwo_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def console(client, engineer):
    client.force_login(engineer)
    return client


def rotate(console, connection):
    return console.post(
        reverse("admin:handoff_cmmsconnection_changelist"),
        {"action": "issue_outcome_token", ACTION_CHECKBOX_NAME: [connection.pk]},
    )


def test_adding_a_cmms_connection_shows_its_outcome_token_once(console, site):
    response = console.post(
        reverse("admin:handoff_cmmsconnection_add"),
        {"site": site.pk, "kind": "generic", "url": "https://cmms.example/orders", "enabled": "on"},
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    (token,) = TOKEN.findall(page)
    assert 'id="cmmsconnection-tokens"' in page and "Authorization: Bearer" in page
    connection = CmmsConnection.objects.get(site=site)
    assert connection.accepts(token) and connection.inbound_token_hint == token[:10]
    assert token not in str(list(CmmsConnection.objects.values()))
    listing = console.get(reverse("admin:handoff_cmmsconnection_changelist")).content.decode()
    assert token not in listing


def test_a_new_outcome_token_replaces_the_old_one(console, site):
    connection = CmmsConnection(site=site, url="https://cmms.example/orders")
    old = connection.rotate_inbound_token()
    connection.save()
    response = rotate(console, connection)
    (token,) = TOKEN.findall(response.content.decode())
    connection.refresh_from_db()
    assert token != old and connection.accepts(token) and not connection.accepts(old)
    assert "no-store" in response["Cache-Control"]


def test_an_engineer_cannot_rotate_another_sites_cmms_token(console, other_site):
    connection = CmmsConnection(site=other_site, url="https://cmms.example/orders")
    old = connection.rotate_inbound_token()
    connection.save()
    response = rotate(console, connection)
    assert not TOKEN.findall(response.content.decode())
    connection.refresh_from_db()
    assert connection.accepts(old)


def test_the_console_lists_a_post_only_url_as_text_not_a_link(console, site):
    # QA: the CMMS connection list linked the demo's POST-only /demo/cmms/orders (405 when clicked).
    CmmsConnection.objects.create(site=site, url="http://127.0.0.1:8000/demo/cmms/orders")
    WebhookEndpoint.objects.create(site=site, name="hook", url="https://receiver.example/vigil")
    for model in ("cmmsconnection", "webhookendpoint"):
        page = console.get(reverse(f"admin:handoff_{model}_changelist")).content.decode()
        cell = re.search(r'<td class="field-url_text">(.*?)</td>', page)
        assert cell and cell.group(1) in (
            "http://127.0.0.1:8000/demo/cmms/orders",
            "https://receiver.example/vigil",
        )
        assert 'href="http://127.0.0.1:8000/demo/cmms/orders"' not in page
        assert 'href="https://receiver.example/vigil"' not in page
