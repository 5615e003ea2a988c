"""Moments under a minute old read "just now" and "open for under a minute", never "0 minutes ago" or "open
for 0 minutes" (plant/templatetags/timewords.py; static/js/timewords.js keeps them current in the same
words, tests/e2e/test_timewords.py and test_board_verdicts.py)."""

from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from plant.templatetags.timewords import age, ago
from tests.alerts.builders import make_alert
from tests.alerts.test_feedback import login


def test_the_words_under_a_minute_and_after():
    now = timezone.now()
    assert (age(now - timedelta(seconds=59), now), ago(now - timedelta(seconds=59), now)) == (
        "under a minute",
        "just now",
    )
    assert age(now - timedelta(seconds=60), now) == "1\xa0minute"
    assert ago(now - timedelta(minutes=65), now) == "1\xa0hour, 5\xa0minutes ago"
    assert ago(None) == "never" and age(None) == ""
    # A moment a clock skew puts in the future is not "0 minutes ago" either.
    assert ago(now + timedelta(seconds=5), now) == "just now"


def test_a_new_alert_is_open_for_under_a_minute_on_the_board_and_the_site_page(
    client, site, asset, champion, technician
):
    alert = make_alert(asset, champion, opened=timezone.now() - timedelta(seconds=20))
    login(client, technician)
    board = client.get(reverse("alerts:board")).content.decode()
    assert re.search(r"open for <time [^>]*data-relative>under a minute</time>", board)
    assert "0\xa0minutes" not in board
    page = client.get(reverse("plant:site", args=[site.slug])).content.decode()
    assert re.search(r'opened <time [^>]*data-relative="ago">just now</time>', page)
    assert "0\xa0minutes" not in page
    detail = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "(just now)" in detail and "0\xa0minutes" not in detail


def test_older_moments_keep_their_minutes_with_ago_inside_the_kept_current_time(
    client, site, asset, champion, technician
):
    make_alert(asset, champion, age_min=6)
    page = login(client, technician).get(reverse("plant:site", args=[site.slug])).content.decode()
    assert re.search(r'opened <time [^>]*data-relative="ago">6\xa0minutes ago</time>', page)
