"""Relative times in the browser say what the server says (plant/templatetags/timewords.py, Django's
timesince): static/js/timewords.js words a table of moments as the Python filters do — weeks, months and
years, non-breaking spaces, calendar months — and keeps them current on every page, the site page too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from plant.templatetags.timewords import age, ago
from tests.alerts.builders import bare_champion, make_alert
from tests.e2e.conftest import SERVED, serve_rendered, watch_for_browser_errors

pytestmark = pytest.mark.e2e

ROOT_PAGE = "<!doctype html><title>timewords</title>"

NOWS = [
    datetime(2026, 12, 6, 13, 30, 0, 250_000, tzinfo=UTC),
    datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC),  # just after a short February
    datetime(2024, 3, 1, 9, 0, tzinfo=UTC),  # just after a leap day
    datetime(2026, 1, 31, 23, 59, 59, 999_000, tzinfo=UTC),
]
AGES = [
    timedelta(seconds=-5),  # a clock a little ahead
    timedelta(seconds=0),
    timedelta(seconds=59.9),
    timedelta(seconds=60),
    timedelta(seconds=61),
    timedelta(minutes=5, seconds=59),
    timedelta(minutes=59, seconds=59),
    timedelta(hours=1),
    timedelta(hours=1, minutes=5),
    timedelta(hours=23, minutes=59),
    timedelta(days=1),
    timedelta(days=1, hours=1, minutes=1),
    timedelta(days=6, hours=23),
    timedelta(days=7),
    timedelta(days=7, hours=12),
    timedelta(days=8),
    timedelta(days=13, hours=5),
    timedelta(days=14),
    timedelta(days=20),
    timedelta(days=28),
    timedelta(days=29),
    timedelta(days=30),
    timedelta(days=31),
    timedelta(days=45),
    timedelta(days=59),
    timedelta(days=61),
    timedelta(days=200),
    timedelta(days=364),
    timedelta(days=365),
    timedelta(days=366),
    timedelta(days=400),
    timedelta(days=800, hours=3),
]
# Calendar corners: month ends, a leap day, the same day-of-month later in the day.
MOMENTS = [
    (datetime(2026, 1, 31, 10, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC)),
    (datetime(2024, 2, 29, 12, tzinfo=UTC), datetime(2025, 3, 1, 11, tzinfo=UTC)),
    (datetime(2024, 2, 29, 12, tzinfo=UTC), datetime(2025, 2, 28, 13, tzinfo=UTC)),
    (datetime(2026, 5, 6, 14, tzinfo=UTC), datetime(2026, 6, 6, 13, 59, tzinfo=UTC)),
    (datetime(2026, 5, 6, 14, tzinfo=UTC), datetime(2026, 6, 6, 14, 0, 1, tzinfo=UTC)),
    (datetime(2025, 12, 31, 23, 30, tzinfo=UTC), datetime(2026, 12, 31, 23, 29, tzinfo=UTC)),
]
# As a page writes them (`|date:'c'` in the site's zone).
ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Chicago"), ZoneInfo("Asia/Kolkata")]


def table() -> list[tuple[str, int, datetime, datetime]]:
    pairs = [(now - delta, now) for now in NOWS for delta in AGES] + MOMENTS
    return [
        (moment.astimezone(ZONES[i % len(ZONES)]).isoformat(), round(now.timestamp() * 1000), moment, now)
        for i, (moment, now) in enumerate(pairs)
    ]


def test_the_browsers_words_for_a_moment_are_the_servers_over_a_table_of_moments(browser):
    rows = table()

    def scenario(b: Any) -> list[list[str]]:
        context = b.new_context()
        try:
            page = context.new_page()
            serve_rendered(page, {})
            page.route(f"{SERVED}/", lambda route: route.fulfill(body=ROOT_PAGE, content_type="text/html"))
            page.goto(f"{SERVED}/")
            page.add_script_tag(url="/static/js/timewords.js")
            return page.evaluate(
                "(rows) => rows.map(([iso, now]) => [vigilTimewords.age(iso, now), vigilTimewords.ago(iso, now)])",
                [[iso, now_ms] for iso, now_ms, _, _ in rows],
            )
        finally:
            context.close()

    words = browser.run(scenario)
    server = [[age(moment, now), ago(moment, now)] for _, _, moment, now in rows]
    wrong = [
        f"{iso} at {now.isoformat()}: page {page!r}, server {ours!r}"
        for (iso, _, _, now), page, ours in zip(rows, words, server, strict=True)
        if page != ours
    ]
    assert not wrong, "\n".join(wrong)
    # The table reaches the words that differed: weeks, months, years and the non-breaking space.
    said = " ".join(text for text, _ in server)
    assert all(unit in said for unit in ("1\xa0week", "weeks", "1\xa0month", "months", "1\xa0year", "years"))


@pytest.mark.django_db
def test_the_site_pages_relative_times_keep_counting(browser, client, technician, site, asset):
    version = bare_champion(asset.asset_type)
    alert = make_alert(asset, version, age_min=6)
    client.force_login(technician)
    path = reverse("plant:site", args=[site.slug])
    page_response = client.get(path)
    assert "6\xa0minutes ago" in page_response.content.decode()

    def scenario(b: Any) -> tuple[str, str, list[str]]:
        context = b.new_context()
        errors = watch_for_browser_errors(context)
        try:
            page = context.new_page()
            page.clock.install(time=alert.opened_at + timedelta(minutes=6, seconds=10))
            serve_rendered(page, {path: page_response})
            page.goto(f"{SERVED}{path}")
            stamp = page.locator("time[data-relative='ago']").first  # the alert's "opened …"
            drawn = stamp.inner_text()
            page.clock.run_for(5 * 60_000)  # the page left open for five minutes
            return drawn, stamp.inner_text(), errors
        finally:
            context.close()

    drawn, later, errors = browser.run(scenario)
    assert not errors, errors
    assert (drawn, later) == ("6\xa0minutes ago", "11\xa0minutes ago")
