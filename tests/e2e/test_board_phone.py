"""The live board on a phone with a touch screen (360 x 740): what a technician types and taps there."""

from __future__ import annotations

from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import SMALL_PHONE, alert_id_of, card_of, logged_in, open_board

pytestmark = pytest.mark.e2e

TAG = "p-112"  # no other browser test injects into it
APPEAR_TIMEOUT_MS = 20_000


def test_a_note_being_typed_and_a_not_saved_message_survive_the_live_updates_of_its_card_and_undo_is_on_screen(
    browser, world: World
):
    # Every scoring window of an ongoing alert replaces its card: the note box was emptied mid-sentence, the
    # keyboard closed, and the verdict tapped next was saved without the note. The verdict's confirmation and
    # its Undo went to the top of the board, a screen above the button tapped.
    def scenario(b: Any) -> dict:
        asset = world.assets[TAG]
        with logged_in(b, world, "tech1", viewport=SMALL_PHONE, touch=True) as page:
            open_board(page)
            world.post_readings(world.fault_readings(TAG))
            card = card_of(page, asset.name)
            card.wait_for(state="visible", timeout=APPEAR_TIMEOUT_MS)
            alert_id = alert_id_of(card)
            note = page.locator(f"#note-{alert_id}")
            controls = (
                f"#alert-{alert_id} button, #alert-{alert_id} summary, #note-{alert_id}, .logout button"
            )
            small = [
                (control.text_content().strip() or control.get_attribute("id"), box["height"])
                for control in page.locator(controls).all()
                if (box := control.bounding_box()) and box["height"] < 44
            ]
            # A tap whose request got no answer says "Not saved" in the card ...
            page.route("**/feedback/", lambda route: route.abort("connectionrefused"))
            page.locator(f"#alert-{alert_id} [data-action='acknowledge']").tap()
            page.locator(f"#alert-{alert_id} .feedback-error").wait_for(timeout=5_000)
            page.unroute("**/feedback/")
            note.tap()
            note.press_sequentially("Coupling guard ", delay=10)
            page.locator(f"#alert-{alert_id}").evaluate("(card) => { card.dataset.typedIn = '1'; }")

            world.post_readings(world.fault_readings(TAG, seconds=60))  # the fault goes on
            page.locator(f"#alert-{alert_id}:not([data-typed-in])").wait_for(timeout=APPEAR_TIMEOUT_MS)
            after_update = {
                "value": note.input_value(),
                "focused": page.evaluate("document.activeElement && document.activeElement.id"),
                # ... which the live update must not take away before it was read
                "not saved": page.locator(f"#alert-{alert_id} .feedback-error").all_inner_texts(),
            }
            page.keyboard.type("loose")

            # A board with more cards above and below this one (room the size of several cards), so the
            # tapped button is far below the messages box at the board's top.
            page.evaluate(
                "document.getElementById('alert-list').style.paddingTop = '1200px';"
                "document.body.style.paddingBottom = '1500px'"
            )
            glitch = page.locator(f"#alert-{alert_id} [data-action='false_alarm:sensor_glitch']")
            glitch.evaluate("(button) => button.scrollIntoView({block: 'end'})")
            head_at_tap = page.evaluate("document.querySelector('.page-head').getBoundingClientRect().bottom")
            glitch.tap()
            done = page.locator("#board-messages .verdict-done")
            done.wait_for(timeout=5_000)
            undo = done.get_by_role("button", name="Undo").bounding_box()
            detail = page.request.get(f"/alerts/{alert_id}/").text()
            return {
                "alert": alert_id,
                "small": small,
                "after_update": after_update,
                "saved": "Coupling guard loose" in detail,
                "head_at_tap": head_at_tap,
                "undo": undo,
            }

    result = browser.run(scenario)
    assert not result["small"], f"controls under 44 px tall on a touch screen: {result['small']}"
    assert result["after_update"] == {
        "value": "Coupling guard ",
        "focused": f"note-{result['alert']}",
        "not saved": ["Not saved: Vigil could not be reached. Check the connection and tap again."],
    }
    assert result["saved"], "the verdict was saved without the note"
    undo = result["undo"]
    assert result["head_at_tap"] < -300, result  # the board's top was well off-screen at the tap
    assert 0 <= undo["y"] and undo["y"] + undo["height"] <= SMALL_PHONE["height"], (
        f"the verdict's confirmation and its Undo are off-screen: {result}"
    )
