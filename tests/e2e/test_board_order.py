"""A card the live socket adds or moves lands where the board's own page puts it (alerts.services.board's
order: critical first, then the oldest; in-work cards in their lane), not at the top of its lane until the
next reload. The board is rendered by Django's test client and its socket is played by the test, which sends
the consumer's own messages (alerts.consumers.render_changes) for alerts that changed after the page loaded."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from alerts.consumers import render_changes
from alerts.models import Alert
from alerts.services import board_alerts
from alerts.views import WS_PATH
from plant.builders import make_asset
from tests.alerts.builders import bare_champion, make_alert
from tests.e2e.conftest import SERVED, serve_rendered, watch_for_browser_errors

pytestmark = pytest.mark.e2e

LANES_JS = """() => ["#alert-list", "#in-work-list"].map((lane) =>
  [...document.querySelectorAll(`${lane} > article.alert-card`)].map((card) => Number(card.id.slice(6))))"""


def lanes(user: Any) -> list[list[int]]:
    """The server's order of the board's two lanes, as a fresh page would show them."""
    cards = board_alerts(user)
    return [[a.pk for a in cards if not a.in_work], [a.pk for a in cards if a.in_work]]


@pytest.mark.django_db
def test_cards_the_socket_adds_or_moves_land_where_the_page_puts_them(
    browser, client, technician, site, asset
):
    version = bare_champion(asset.asset_type)
    assets = [asset, *(make_asset(site, tag=f"p-{i}") for i in range(102, 110))]
    critical = make_alert(assets[0], version, severity="critical", age_min=30)
    medium = make_alert(assets[1], version, severity="medium", age_min=20)
    low = make_alert(assets[2], version, severity="low", age_min=40)
    in_work = {"state": "resolved", "episode": "in_work"}
    high_in_work = make_alert(assets[3], version, severity="high", age_min=50, **in_work)
    critical_in_work = make_alert(assets[4], version, severity="critical", age_min=60, **in_work)
    client.force_login(technician)
    board = client.get(reverse("alerts:board"))
    resync = client.get(reverse("alerts:board_list"), HTTP_HX_REQUEST="true")
    before = lanes(technician)
    assert before == [[critical.pk, medium.pk, low.pk], [critical_in_work.pk, high_in_work.pk]]

    # Then, one socket message each (the consumer's rendering of the changed alert's id): a high alert
    # (after the critical one), an older medium one (before the newer), a low alert in work (its lane's last),
    # and an undone repair of the critical one in work (back among the open alerts, first).
    known = {*before[0], *before[1]}
    messages = []
    high = make_alert(assets[5], version, severity="high", age_min=10)
    older_medium = make_alert(assets[6], version, severity="medium", age_min=25)
    low_in_work = make_alert(assets[7], version, severity="low", age_min=5, **in_work)
    for pk in (high.pk, older_medium.pk, low_in_work.pk, critical_in_work.pk):
        if pk == critical_in_work.pk:
            Alert.objects.filter(pk=pk).update(state="open", episode="live", closed_at=None)
        html, known = render_changes(technician, [pk], known)
        messages.append(html)
    after = lanes(technician)
    assert after == [
        [critical_in_work.pk, critical.pk, high.pk, older_medium.pk, medium.pk, low.pk],
        [high_in_work.pk, low_in_work.pk],
    ]

    def scenario(b: Any) -> tuple[list[list[int]], list[list[int]], list[str]]:
        context = b.new_context(base_url=SERVED)
        errors = watch_for_browser_errors(context)
        try:
            page = context.new_page()
            sockets: list[Any] = []
            page.route_web_socket(f"**{WS_PATH}", lambda ws: sockets.append(ws))  # the test plays the server
            serve_rendered(page, {reverse("alerts:board"): board, reverse("alerts:board_list"): resync})
            with page.expect_response(lambda response: response.url.endswith(reverse("alerts:board_list"))):
                page.goto(reverse("alerts:board"))
            page.locator("body[data-ws-state=open]").wait_for()
            page.wait_for_timeout(300)  # the re-sync's swap
            drawn = page.evaluate(LANES_JS)
            for html in messages:
                sockets[0].send(html)
            page.wait_for_function(
                f"() => document.querySelectorAll('article.alert-card').length === {len(known)}"
            )
            return drawn, page.evaluate(LANES_JS), errors
        finally:
            context.close()

    drawn, live, errors = browser.run(scenario)
    assert drawn == before
    assert live == after
    assert not errors, errors
