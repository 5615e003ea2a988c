"""The site page shows each asset's active alert (severity, age, in work) next to its data health, with a
count in the header (plant.views.provide_site_alerts, filled by alerts); the board's snooze end."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.urls import reverse
from django.utils import timezone

from tests.alerts.builders import make_alert
from tests.alerts.test_feedback import login
from tests.conftest import make_asset


def row_of(body: str, name: str) -> str:
    match = re.search(
        rf"<tr>\s*<th scope=\"row\" data-label=\"Asset\"><a [^>]*>{re.escape(name)}</a>.*?</tr>", body, re.S
    )
    assert match, name
    return match.group(0)


def test_the_site_page_shows_active_alerts_beside_data_health_with_a_count(
    client, site, asset, champion, technician
):
    quiet = make_asset(site, tag="quiet-1")
    work = make_asset(site, tag="work-1")
    make_alert(asset, champion, severity="critical", age_min=360)
    make_alert(work, champion, severity="medium", state="resolved", episode="in_work")
    make_alert(quiet, champion, severity="high", state="resolved")  # closed: not active
    body = login(client, technician).get(reverse("plant:site", args=[site.slug])).content.decode()
    assert "2 assets with an active alert" in body
    mine = row_of(body, asset.name)
    assert "Critical" in mine and "6\xa0hours" in mine and "In work" not in mine
    assert "In work" in row_of(body, work.name) and "Medium" in row_of(body, work.name)
    # The age is the alert's, not how long the repair has been scheduled: "In work for 30 minutes" misled.
    assert re.search(r"opened <time [^>]*>30\xa0minutes ago</time>", row_of(body, work.name))
    assert "High" not in row_of(body, quiet.name) and ">no open alert<" in row_of(body, quiet.name)
    assert 'data-label="Data health"' in mine


def test_a_snooze_ending_another_day_shows_the_date(client, asset, champion, technician):
    tomorrow = timezone.localtime() + timedelta(days=1)
    make_alert(asset, champion, state="snoozed", snoozed_until=tomorrow)
    body = login(client, technician).get(reverse("alerts:board")).content.decode()
    assert 'snoozed until <time class="snooze-end"' in body
    assert f"{tomorrow:%a %d %b %H:%M}</time>" in body


def test_the_site_page_says_an_alert_is_snoozed_and_until_when_on_the_sites_clock(
    client, site, asset, champion, technician
):
    site.timezone = "Asia/Tokyo"
    site.save(update_fields=["timezone"])
    acked = make_asset(site, tag="acked-1")
    until = timezone.now() + timedelta(days=1)
    make_alert(asset, champion, severity="high", state="snoozed", snoozed_until=until)
    make_alert(acked, champion, severity="low", state="acknowledged")
    body = login(client, technician).get(reverse("plant:site", args=[site.slug])).content.decode()
    mine = row_of(body, asset.name)
    local = timezone.localtime(until, ZoneInfo("Asia/Tokyo"))
    assert "High" in mine and "Snoozed" in mine
    assert re.search(rf'until <time class="snooze-end" datetime="[^"]+">{local:%a %d %b %H:%M}</time>', mine)
    assert "Acknowledged" in row_of(body, acked.name) and "until" not in row_of(body, acked.name)
