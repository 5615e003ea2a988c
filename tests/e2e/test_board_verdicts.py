"""Verdicts apply to the episode, in a real browser (issue 14): a verdict is confirmed with a 10-second
undo, a scheduled repair moves the card to the in-work lane, the ongoing fault raises no new card after a
verdict, "Repaired" takes it out of the lane and the episode ends once the condition clears; the board's
relative times keep counting without a reload."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import alert_id_of, card_of, logged_in, open_board

pytestmark = pytest.mark.e2e

APPEAR_TIMEOUT_MS = 20_000
# Time for the worker to score a batch and the socket to deliver what changed (it is well under this).
SETTLE_S = 10.0

TAG = "p-106"  # the one demo pump no other browser test uses


def lane_card(page: Any, name: str) -> Any:
    return page.locator("#in-work-list article.alert-card", has_text=name)


def test_verdicts_undo_in_work_lane_repaired_and_no_new_card_while_the_condition_lasts(browser, world: World):
    def scenario(b: Any) -> None:
        name = world.assets[TAG].name
        with logged_in(b, world, "tech1") as page:
            open_board(page)
            # Bearing wear ramps up for 180 s after its start (30 s in) and stays until 330 s (the
            # simulator's "repair"): the whole fault in one batch, so the verdicts judge its full peak.
            world.post_readings(world.fault_readings(TAG, seconds=330))
            card = card_of(page, name)
            card.wait_for(state="visible", timeout=APPEAR_TIMEOUT_MS)
            alert_id = alert_id_of(card)

            # A verdict: the card leaves, a confirmation offers Undo; Undo brings the card back.
            page.locator(f"#alert-{alert_id} [data-action='false_alarm:unknown']").click()
            toast = page.locator(".verdict-done", has_text=name)
            toast.wait_for(timeout=5_000)
            assert "False alarm" in toast.inner_text()
            card.wait_for(state="detached", timeout=5_000)
            toast.locator("[data-action='undo']").click()
            page.locator(".verdict-done", has_text="was undone").wait_for(timeout=5_000)
            card.wait_for(state="visible", timeout=5_000)
            assert alert_id_of(card) == alert_id

            # Repair scheduled: the card moves to the in-work lane, with a "Repaired" button.
            page.locator(f"#alert-{alert_id} [data-action='confirm:scheduled']").click()
            in_work = lane_card(page, name)
            in_work.wait_for(timeout=5_000)
            assert card.count() == 0

            # More windows (the fault's last ones, then the machine back to normal): no new card, and the
            # card stays in work even though the condition cleared — until the repair is recorded.
            world.post_readings(world.fault_readings(TAG, seconds=120))
            time.sleep(SETTLE_S)
            assert card.count() == 0, "a new alert opened for a condition already in work"
            assert lane_card(page, name).count() == 1

            # Repaired: out of the lane; with the condition clear, the next windows end the episode.
            in_work.locator("[data-action='confirm:repaired']").click()
            in_work.wait_for(state="detached", timeout=5_000)
            # (How long the scores take to settle after the simulator's sudden repair varies: up to four
            # more 30 s batches of the normal machine, as long as the timeline allows.)
            over = False
            for _ in range(4):
                world.post_readings(world.fault_readings(TAG, seconds=30))
                deadline = time.monotonic() + 10
                while not over and time.monotonic() < deadline:
                    over = "the episode is over" in page.request.get(f"/alerts/{alert_id}/").text()
                    time.sleep(0.5)
                if over:
                    break
            if not over:
                history = page.request.get(f"/alerts/{alert_id}/").text()
                events = history[history.find('id="alert-events"') :][:3000]
                raise AssertionError(f"the judged episode did not end after the condition cleared: {events}")
            assert card.count() == 0 and lane_card(page, name).count() == 0

    browser.run(scenario)


def test_relative_times_on_the_board_keep_counting(browser, world: World, explained_alert: int):
    def scenario(b: Any) -> tuple[str, str, str]:
        with logged_in(b, world, "tech1") as page:
            # The board re-syncs its list once the socket opens: let that land before editing the page.
            with page.expect_response(lambda response: "/alerts/board/" in response.url):
                open_board(page)
            page.wait_for_timeout(500)
            stamp = page.locator(f"#alert-{explained_alert} .alert-age time[data-relative]")
            stamp.wait_for()
            # As if the page had been open for six minutes: the timestamp is older than the text says.
            page.evaluate(
                """(id) => { const t = document.querySelector(`#alert-${id} .alert-age time`);
                   t.setAttribute('datetime', new Date(Date.now() - 6 * 60000).toISOString()); }""",
                explained_alert,
            )
            page.wait_for_function(
                """(id) => document.querySelector(`#alert-${id} .alert-age time`).textContent
                   === '6\\u00a0minutes'""",
                arg=explained_alert,
                timeout=35_000,
            )
            six = stamp.inner_text()
            # Under a minute old: not "0 minutes" (nor "0 minutes ago" for a past moment) but the server's
            # words; the refresh also runs after every htmx swap, so an event stands in for the timer.
            page.evaluate(
                """(id) => { const t = document.querySelector(`#alert-${id} .alert-age time`);
                   t.setAttribute('datetime', new Date(Date.now() - 20000).toISOString());
                   const past = document.createElement('time');
                   past.id = 'past-moment'; past.setAttribute('data-relative', 'ago');
                   past.setAttribute('datetime', new Date(Date.now() - 20000).toISOString());
                   document.body.appendChild(past);
                   document.dispatchEvent(new Event('htmx:afterSettle')); }""",
                explained_alert,
            )
            return six, stamp.inner_text(), page.locator("#past-moment").inner_text()

    assert browser.run(scenario) == ("6\xa0minutes", "under a minute", "just now")
