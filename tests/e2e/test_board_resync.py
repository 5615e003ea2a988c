"""A verdict whose request is still on its way when the board re-syncs its list (it does on every socket
(re)connect, e.g. just after the page loads) keeps its confirmation and its 10-second undo: the re-sync
used to replace the card's form under the request, and htmx, resolving the answer's target from that
detached form, dropped the confirmation — the card just vanished (issue 14: "a verdict makes the card vanish
with no confirmation")."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import alert_id_of, card_of, logged_in, open_board

pytestmark = pytest.mark.e2e

TAG = "p-111"  # no other browser test injects into it


def test_a_verdict_in_flight_during_a_resync_keeps_its_confirmation_and_undo(browser, world: World):
    def scenario(b: Any) -> None:
        name = world.assets[TAG].name
        with logged_in(b, world, "tech1") as page:
            with page.expect_response(lambda response: "/alerts/board/" in response.url):
                open_board(page)
            world.post_readings(world.fault_readings(TAG))
            card = card_of(page, name)
            card.wait_for(state="visible", timeout=20_000)
            alert_id = alert_id_of(card)

            # The verdict's request is held on its way to the server ...
            held: list[Any] = []
            page.route(f"**/alerts/{alert_id}/feedback/", lambda route: held.append(route))
            page.locator(f"#alert-{alert_id} [data-action='false_alarm:unknown']").click()
            deadline = time.monotonic() + 5
            while not held and time.monotonic() < deadline:
                page.wait_for_timeout(50)
            assert held, "the verdict was not sent"
            # ... while the board re-syncs, as on a socket reconnect (board.js listens for htmx:wsOpen).
            with page.expect_response(lambda response: "/alerts/board/" in response.url):
                page.evaluate("document.dispatchEvent(new CustomEvent('htmx:wsOpen'))")
            page.wait_for_timeout(300)  # the re-sync's swap
            held[0].continue_()

            toast = page.locator(".verdict-done", has_text=f"#{alert_id}")
            toast.wait_for(timeout=5_000)
            assert "False alarm" in toast.inner_text()
            assert toast.locator("[data-action='undo']").count() == 1
            page.locator(f"#alert-{alert_id}").wait_for(state="detached", timeout=5_000)

    browser.run(scenario)
