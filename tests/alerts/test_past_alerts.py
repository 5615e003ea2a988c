"""The asset page lists the asset's past alerts (alerts.asset_panels.past_alerts, handed to plant's page
through plant.views.provide_asset_panels): what the machine alerted on before and what was found, on the
site's clock, newest first, a page at a time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from alerts.asset_panels import PAST_ALERTS_SHOWN
from alerts.services import record_feedback
from tests.alerts.builders import explanation_for, make_alert
from tests.alerts.test_feedback import login

# The whole asset page (its chart and every panel) with past alerts, whatever their number: the alerts, their
# verdicts, their versions and their sensor roles (alerts.services.board.decorate) on top of the page's own.
QUERIES = 17


def past_section(body: str) -> str:
    match = re.search(r'<div id="past-alerts".*?</div>', body, re.S)
    assert match, "no past-alerts section"
    return match.group(0)


def items(section: str) -> list[str]:
    return re.findall(r'<li class="past-alert" data-alert="(\d+)">', section)


@pytest.fixture
def tokyo_site(site):
    site.timezone = "Asia/Tokyo"
    site.save(update_fields=["timezone"])
    return site


def test_the_asset_page_lists_past_alerts_with_their_verdicts_on_the_sites_clock(
    client, tokyo_site, asset, other_asset, champion, trained, technician
):
    explanation = explanation_for(champion, trained, "vibration")
    opened = datetime(2026, 3, 4, 23, 30, tzinfo=dt_timezone.utc)  # 08:30 on the 5th in Tokyo
    repaired = make_alert(asset, champion, explanation=explanation, state="resolved", opened=opened)
    record_feedback(repaired, technician, "confirm:repaired", "bearing replaced")
    unjudged = make_alert(
        asset, champion, explanation=explanation, state="auto_closed", opened=opened + timedelta(days=2)
    )
    glitch = make_alert(
        asset, champion, explanation=explanation, state="resolved", opened=opened + timedelta(days=1)
    )
    record_feedback(glitch, technician, "false_alarm:sensor_glitch")
    open_now = make_alert(asset, champion, explanation=explanation)
    shadow = make_alert(asset, champion, explanation=explanation, state="resolved", is_shadow=True)
    elsewhere = make_alert(other_asset, champion, explanation=explanation, state="resolved")

    body = login(client, technician).get(asset.get_absolute_url()).content.decode()
    section = past_section(body)
    # Newest first; the open alert is on the board, a shadow alert is a model on trial, not this asset's.
    assert items(section) == [str(unjudged.pk), str(glitch.pk), str(repaired.pk)]
    for hidden in (open_now, shadow, elsewhere):
        assert f'data-alert="{hidden.pk}"' not in section
    row = re.search(rf'data-alert="{repaired.pk}">.*?</li>', section, re.S).group(0)
    assert f'href="{reverse("alerts:detail", args=[repaired.pk])}"' in row
    assert ">Vibration alert</a>" in row and "Machine fault" in row
    local = opened.astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"opened {local:%a %d %b %H:%M}, closed {local + timedelta(minutes=10):%a %d %b %H:%M}" in row
    assert "Thu 05 Mar 08:30" in row
    assert repaired.feedback.get(kind="verdict").summary in row
    assert "Confirmed fault" in row
    assert "False alarm — Sensor glitch" in section
    assert "Auto-closed without a verdict" in section


def test_past_alerts_come_a_page_at_a_time_in_a_bounded_number_of_queries(
    client, asset, champion, trained, technician, django_assert_max_num_queries
):
    explanation = explanation_for(champion, trained, "vibration")
    make_alert(asset, champion, explanation=explanation, state="resolved", age_min=60 * 24 * 40)
    login(client, technician)
    with django_assert_max_num_queries(QUERIES) as one:
        client.get(asset.get_absolute_url())
    alerts = [
        make_alert(asset, champion, explanation=explanation, state="resolved", age_min=60 * (k + 1))
        for k in range(PAST_ALERTS_SHOWN + 2)
    ]
    with django_assert_max_num_queries(len(one.captured_queries)) as many:
        body = client.get(asset.get_absolute_url()).content.decode()
    section = past_section(body)
    assert items(section) == [str(a.pk) for a in alerts[:PAST_ALERTS_SHOWN]]
    older = reverse("alerts:asset_past_alerts", args=[asset.pk]) + "?page=2"
    assert f'hx-get="{older}"' in section and "Newer alerts" not in section
    assert len(many.captured_queries) == len(one.captured_queries)

    page = client.get(older, headers={"HX-Request": "true"})
    assert page.status_code == 200
    second = page.content.decode()
    assert second.lstrip().startswith('<div id="past-alerts"') and "<html" not in second
    assert len(items(second)) == 3 and "Older alerts" not in second and "Newer alerts" in second
    # Without htmx the link shows the whole asset page at that page of past alerts.
    whole = client.get(older).content.decode()
    assert "<html" in whole and items(past_section(whole)) == items(second)


@pytest.mark.parametrize("page", ["0", "x", "-1", "1234567", "2\x00"])
def test_a_bad_page_number_is_refused_with_words(client, asset, technician, page):
    response = login(client, technician).get(
        reverse("alerts:asset_past_alerts", args=[asset.pk]), {"page": page}
    )
    assert response.status_code == 400 and b"page" in response.content


def test_an_outsider_sees_no_past_alerts_of_another_site(client, asset, champion, outsider):
    make_alert(asset, champion, state="resolved")
    response = login(client, outsider).get(reverse("alerts:asset_past_alerts", args=[asset.pk]))
    assert response.status_code == 404


def test_an_alert_in_work_is_not_listed_as_past_until_it_is_repaired(
    client, asset, champion, trained, technician
):
    """'Repair scheduled' closes the alert for the operator but keeps it on the board's in-work lane and in
    the site page's alert column; the asset page listed it among past alerts as 'closed 11:41' (found in the
    demo on P-102). Once 'Repaired' takes it out of the lane, it is a past alert."""
    explanation = explanation_for(champion, trained, "vibration")
    alert = make_alert(asset, champion, explanation=explanation)
    record_feedback(alert, technician, "confirm:scheduled")
    alert.refresh_from_db()
    assert alert.in_work and alert.state == "resolved"
    client = login(client, technician)
    assert items(past_section(client.get(asset.get_absolute_url()).content.decode())) == []

    record_feedback(alert, technician, "confirm:repaired")
    assert items(past_section(client.get(asset.get_absolute_url()).content.decode())) == [str(alert.pk)]
