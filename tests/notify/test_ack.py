"""The signed one-click acknowledge link: a confirm page, then the lifecycle's own acknowledge, once,
within its lifetime, and only for someone who may see the alert."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from django.utils import timezone

from alerts.choices import AlertState, FeedbackKind
from alerts.models import Alert, AlertEvent, Feedback
from notify.models import AckToken
from notify.services import ack_link
from tests.alerts.builders import make_alert
from alerts.services import record_feedback
from tests.conftest import PASSWORD, make_user


def link_path(alert) -> str:
    return re.sub(r"^https?://[^/]+", "", ack_link(alert))


def test_the_link_shows_a_confirm_page_and_acknowledges_only_on_post(client, asset, version, technician):
    alert = make_alert(asset, version)
    path = link_path(alert)
    client.force_login(technician)
    page = client.get(path)
    assert page.status_code == 200 and b"Acknowledge alert #" in page.content
    assert Alert.objects.get().state == AlertState.OPEN  # a link scanner's GET acknowledges nothing
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == f"/alerts/{alert.pk}/"
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    event = alert.events.last()
    assert (event.to_state, event.actor) == (AlertState.ACKNOWLEDGED, technician)
    assert Feedback.objects.get().kind == FeedbackKind.ACKNOWLEDGE
    assert AckToken.objects.get().used_by == technician


def test_the_link_works_once(client, asset, version, technician):
    alert = make_alert(asset, version)
    path = link_path(alert)
    client.force_login(technician)
    assert client.post(path).status_code == 302
    again = client.post(path)
    assert again.status_code == 400 and b"already used" in again.content
    assert client.get(path).status_code == 400


def test_the_link_expires(client, asset, version, technician, settings):
    settings.VIGIL_NOTIFY_ACK_MAX_AGE_S = 3600
    alert = make_alert(asset, version)
    path = link_path(alert)
    client.force_login(technician)
    with time_machine.travel(timezone.now() + timedelta(hours=1, seconds=5)):
        expired = client.post(path)
    assert expired.status_code == 400 and b"expired" in expired.content
    assert Alert.objects.get().state == AlertState.OPEN
    assert AckToken.objects.get().used_at is None


def test_a_forged_or_altered_link_is_refused(client, asset, version, technician):
    alert = make_alert(asset, version)
    other = make_alert(asset, version, kind="rul")
    path = link_path(alert)
    client.force_login(technician)
    forged = path.replace(f"/ack/{alert.pk}.", f"/ack/{other.pk}.")
    assert client.post(forged).status_code == 400
    assert client.post("/notify/ack/nonsense/").status_code == 400
    assert set(Alert.objects.values_list("state", flat=True)) == {AlertState.OPEN}


def test_an_acknowledged_alert_keeps_the_link_unused_and_says_why(client, asset, version, technician):
    alert = make_alert(asset, version, state="acknowledged")
    path = link_path(alert)
    client.force_login(technician)
    refused = client.post(path)
    assert refused.status_code == 400 and b"acknowledged" in refused.content
    assert AckToken.objects.get().used_at is None


def test_someone_from_another_site_gets_a_404_and_anonymous_users_log_in_first(
    client, asset, version, outsider
):
    alert = make_alert(asset, version)
    path = link_path(alert)
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.login(username=outsider.username, password=PASSWORD)
    assert client.post(path).status_code == 404
    assert Alert.objects.get().state == AlertState.OPEN and AckToken.objects.get().used_at is None


def test_a_link_to_an_alert_answered_meanwhile_says_by_whom_and_offers_no_button(
    client, site, asset, version, technician
):
    # The message went out; a colleague resolved the alert before the paged technician opened the link.
    alert = make_alert(asset, version)
    path = link_path(alert)
    colleague = make_user("carl", "technician", site)
    record_feedback(alert, colleague, "confirm:repaired")
    # Later events that change no state (the episode ending) do not hide who answered it.
    AlertEvent.objects.create(
        alert=alert, from_state="resolved", to_state="resolved", reason="the episode is over"
    )
    client.force_login(technician)

    page = client.get(path)

    html = page.content.decode()
    assert page.status_code == 200 and "Nothing to acknowledge" in html
    assert f"Alert #{alert.pk} on {asset.name} is already resolved" in html
    assert "resolved by carl" in html and "Confirmed fault — Repaired" in html
    assert 'method="post"' not in html.split('id="ack"')[1] and "Acknowledge alert #" not in html
    assert AckToken.objects.get().used_at is None


def test_the_confirm_page_button_wears_the_sites_button_style(client, asset, version, technician):
    client.force_login(technician)
    html = client.get(link_path(make_alert(asset, version))).content.decode()
    assert '<button type="submit" class="button">Acknowledge</button>' in html
