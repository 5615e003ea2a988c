"""A button that could not be saved says so, in a real browser: when the request gets no answer (no network,
the server restarting) or a server error, the card (and the alert page) tell the technician it was not
saved, instead of showing nothing as if it had worked. Nothing is saved, so the shared alert is untouched."""

from __future__ import annotations

from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import PHONE, logged_in, open_board

pytestmark = pytest.mark.e2e


def test_a_tap_that_gets_no_answer_or_a_server_error_says_it_was_not_saved(
    browser, world: World, explained_alert: int
):
    def scenario(b: Any) -> dict[str, str]:
        told = {}
        with logged_in(b, world, "tech2", viewport=PHONE) as page:
            open_board(page)
            card = page.locator(f"#alert-{explained_alert}")
            card.wait_for()
            state = card.get_attribute("data-state")
            error = card.locator(".feedback-error")

            page.route("**/feedback/", lambda route: route.abort("connectionrefused"))
            card.locator("[data-action='snooze:1h']").click()
            error.wait_for(timeout=5_000)
            told["no answer"] = error.inner_text()

            page.unroute("**/feedback/")
            page.route("**/feedback/", lambda route: route.fulfill(status=503, body="unavailable"))
            card.locator("[data-action='acknowledge']").click()
            page.locator(f"#alert-{explained_alert} .feedback-error", has_text="503").wait_for(timeout=5_000)
            told["503"] = error.inner_text()
            assert error.count() == 1, "each failure replaces the last message"

            page.goto(f"/alerts/{explained_alert}/")
            page.locator("#alert-detail [data-action='snooze:1h']").click()
            page.locator("#alert-detail .feedback-error").wait_for(timeout=5_000)
            told["alert page"] = page.locator("#alert-detail .feedback-error").inner_text()
            page.unroute("**/feedback/")
            page.reload()
            assert page.locator("#alert-detail").get_attribute("data-state") == state, "something was saved"
        return told

    told = browser.run(scenario)
    assert told["no answer"].startswith("Not saved: Vigil could not be reached"), told
    assert told["503"].startswith("Not saved: the server could not do it (error 503)"), told
    assert told["alert page"].startswith("Not saved"), told
