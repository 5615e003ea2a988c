"""The board card in a real browser speaks plainly: one sentence per sensor that pushed the alert, how
unusual it is as a multiple of the alert level, and the model's numbers behind a collapsed "Model details"."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import card_of, logged_in, open_board

pytestmark = pytest.mark.e2e

SENTENCE = re.compile(
    r"^\S.* (is|reading is) .*(above|below) its usual range|is (varying|jumping) .*(more|less) than usual"
    r"|is (rising|falling|steady)|within its usual range"
)


def test_the_board_card_shows_plain_sentences_and_collapsed_model_details(
    browser, world: World, explained_alert: int
):
    def scenario(b: Any) -> None:
        with logged_in(b, world, "tech2") as page:
            open_board(page)
            card = card_of(page, world.assets["p-105"].name)
            card.wait_for(state="visible")
            sensor = card.locator(".alert-why li.why-sensor").first
            sensor.wait_for(state="visible", timeout=20_000)  # the explanation may still be completing
            text = sensor.inner_text()
            assert SENTENCE.search(text), text
            assert ": " in text and ("vs" in text or "usually" in text), text
            assert "SHAP" not in card.inner_text() and "exact_shapley" not in card.inner_text()
            assert re.search(
                r"\d(\.\d)?× the alert level at its peak · unusual for \d+ (s|min)", card.inner_text()
            )
            details = card.locator("details.model-details")
            assert details.get_attribute("open") is None
            phi = details.locator(".model-phi li").first
            assert not phi.is_visible()
            details.locator("summary").click()
            phi.wait_for(state="visible")
            assert "SHAP φ" in phi.inner_text()
            assert "opens at" in details.inner_text()

    browser.run(scenario)
