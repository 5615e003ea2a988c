"""Roles: technicians see and act on their own sites' alerts only; every refusal is a 403/404/redirect."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.models import Feedback
from tests.alerts.builders import make_alert
from tests.conftest import PASSWORD, LoginClient


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def alert(asset, champion):
    return make_alert(asset, champion)


def test_an_outsider_does_not_see_another_sites_alert_on_the_board_or_its_partial(
    client, outsider, other_asset, alert, champion
):
    theirs = make_alert(other_asset, champion)
    login(client, outsider)
    for url in (reverse("alerts:board"), reverse("alerts:board_list")):
        html = client.get(url, headers={"HX-Request": "true"}).content.decode()
        assert f'id="alert-{alert.pk}"' not in html and f'id="alert-{theirs.pk}"' in html


def test_an_outsider_gets_404_for_another_sites_alert_detail_and_feedback(client, outsider, alert):
    login(client, outsider)
    assert client.get(reverse("alerts:detail", args=[alert.pk])).status_code == 404
    response = client.post(reverse("alerts:feedback", args=[alert.pk]), {"action": "acknowledge"})
    assert response.status_code == 404
    alert.refresh_from_db()
    assert alert.state == "open" and not Feedback.objects.exists()


def test_an_outsider_cannot_report_a_missed_failure_on_another_sites_asset(client, outsider, asset):
    login(client, outsider)
    url = reverse("alerts:asset_missed_failure", args=[asset.pk])
    data = {"missed-start": "2026-01-05T08:00", "missed-end": "2026-01-05T09:00", "missed-fault_type": "seal"}
    assert client.post(url, data).status_code == 404
    assert not Feedback.objects.exists()


def test_an_outsider_cannot_narrow_the_board_to_another_sites_asset(client, outsider, asset):
    login(client, outsider)
    assert client.get(reverse("alerts:board") + f"?asset={asset.pk}").status_code == 404


def test_shadow_alerts_are_404_even_for_members(client, technician, asset, champion):
    shadow = make_alert(asset, champion, is_shadow=True)
    login(client, technician)
    assert client.get(reverse("alerts:detail", args=[shadow.pk])).status_code == 404
    assert (
        client.post(reverse("alerts:feedback", args=[shadow.pk]), {"action": "acknowledge"}).status_code
        == 404
    )


def test_anonymous_users_are_sent_to_the_login_page(client, alert, asset):
    for url in (
        reverse("alerts:board"),
        reverse("alerts:board_list"),
        reverse("alerts:detail", args=[alert.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    response = client.post(reverse("alerts:feedback", args=[alert.pk]), {"action": "acknowledge"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    response = client.post(reverse("alerts:asset_missed_failure", args=[asset.pk]), {})
    assert response.status_code == 302
    assert not Feedback.objects.exists()


def test_feedback_and_missed_failures_only_accept_post(client, technician, alert, asset):
    login(client, technician)
    assert client.get(reverse("alerts:feedback", args=[alert.pk])).status_code == 405
    assert client.get(reverse("alerts:asset_missed_failure", args=[asset.pk])).status_code == 405


def test_feedback_without_the_csrf_token_is_refused(technician, alert):
    client = LoginClient(enforce_csrf_checks=True)
    login(client, technician)
    response = client.post(reverse("alerts:feedback", args=[alert.pk]), {"action": "acknowledge"})
    assert response.status_code == 403 and not Feedback.objects.exists()


def test_only_engineers_reach_the_console_and_the_model_registry(client, technician, engineer, champion):
    registry = reverse("admin:models_registry_modelversion_changelist")
    login(client, technician)
    assert client.get(reverse("admin:index")).status_code == 302
    assert client.get(registry).status_code == 302
    client.logout()
    login(client, engineer)
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(registry).status_code == 200


def test_engineers_see_only_their_member_sites_on_the_board(client, engineer, alert, other_asset, champion):
    theirs = make_alert(other_asset, champion)
    html = login(client, engineer).get(reverse("alerts:board")).content.decode()
    assert f'id="alert-{alert.pk}"' in html and f'id="alert-{theirs.pk}"' not in html
