"""Times in words are read on the site's clock: the board's snooze end, the alert page's feedback list and
model details, and the sentences stored in an alert's history ("snoozed until …", "re-opened: worse than
when judged on …"). They were written on the server's clock (UTC) while the rest of the page was local."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.services.lifecycle import reopen_sentence
from tests.alerts.builders import explanation_for, make_alert
from tests.alerts.test_feedback import login, post

ZONE = "Asia/Kolkata"  # +05:30 all year: no UTC reading of a time can match its local one


@pytest.fixture
def local_site(site):
    site.timezone = ZONE
    site.save(update_fields=["timezone"])
    return site


def on_site_clock(moment):
    return moment.astimezone(ZoneInfo(ZONE))


def test_the_board_says_until_when_an_alert_is_snoozed_on_the_sites_clock(
    client, local_site, asset, champion, technician
):
    until = timezone.now() + timedelta(hours=1)
    make_alert(asset, champion, state="snoozed", snoozed_until=until)

    body = login(client, technician).get(reverse("alerts:board")).content.decode()

    assert f">{on_site_clock(until):%H:%M}</time>" in body
    assert f">{until.astimezone(ZoneInfo('UTC')):%H:%M}</time>" not in body


def test_the_snooze_in_the_alerts_history_is_written_on_the_sites_clock(
    client, local_site, asset, champion, trained, technician
):
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained))
    post(login(client, technician), alert, "snooze:1h")
    alert.refresh_from_db()

    event = alert.events.latest("at", "id")

    assert (
        event.reason
        == f"snoozed until {on_site_clock(alert.snoozed_until):%Y-%m-%d %H:%M}: for 1 h from the board"
    )


def test_the_alert_pages_feedback_list_is_on_the_sites_clock_like_its_history(
    client, local_site, asset, champion, trained, technician
):
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained))
    post(login(client, technician), alert, "acknowledge", next_page="detail")
    given = alert.feedback.get().created_at

    body = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    feedback_list = body.split("<h3>Feedback</h3>", 1)[1].split("</ul>", 1)[0]
    assert f">{on_site_clock(given):%Y-%m-%d %H:%M}</time> · <strong>Acknowledged</strong>" in feedback_list


@pytest.mark.parametrize("page", ["alerts:board", "alerts:detail"])
def test_model_details_give_the_explained_windows_end_on_the_sites_clock_not_as_iso_text(
    client, local_site, asset, champion, trained, technician, page
):
    explanation = explanation_for(champion, trained)
    alert = make_alert(asset, champion, explanation=explanation)
    args = [alert.pk] if page == "alerts:detail" else []

    body = login(client, technician).get(reverse(page, args=args)).content.decode()

    details = body.split('<details class="model-details">', 1)[1].split("</details>", 1)[0]
    end = datetime.fromisoformat(explanation["window_end"])
    assert f">{on_site_clock(end):%Y-%m-%d %H:%M:%S}</time>" in details
    assert explanation["window_end"] not in details


def test_a_reopened_alert_says_when_the_episode_was_judged_on_the_sites_clock(local_site, asset, champion):
    judged = make_alert(asset, champion, state="resolved")

    sentence = reopen_sentence(judged)

    assert sentence == (
        f"re-opened: worse than when judged on {on_site_clock(judged.closed_at):%Y-%m-%d %H:%M} by a technician"
    )


def test_the_health_drill_down_lists_alerts_on_their_sites_clock_with_the_window_in_words(
    client, local_site, asset, champion, engineer
):
    alert = make_alert(asset, champion)
    client.force_login(engineer)
    period = f"{alert.opened_at:%Y-%m}"

    body = client.get(
        reverse("alerts:health_alerts"),
        {"group_by": "site", "period": period, "key": "all", "metric": "alerts"},
    ).content.decode()

    row = body.split(f'<tr data-alert="{alert.pk}">', 1)[1].split("</tr>", 1)[0]
    assert f'data-label="Opened">{on_site_clock(alert.opened_at):%Y-%m-%d %H:%M}' in row
    assert "Follow-through window 24 h." in body and "0:00:00" not in body
