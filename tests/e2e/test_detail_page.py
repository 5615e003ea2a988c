"""The alert detail page in a real browser: both Plotly charts render, with the explanation's tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import logged_in
from bench.world import World

pytestmark = pytest.mark.e2e


def test_the_detail_page_renders_the_sensor_chart_and_the_shap_chart(
    browser, world: World, explained_alert: int
):
    def scenario(b: Any) -> None:
        with logged_in(b, world, "tech2") as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            response = page.goto(f"/alerts/{explained_alert}/")
            assert response is not None and response.status == 200
            for chart in ("#sensor-chart", "#shap-chart"):
                page.locator(f"{chart}.js-plotly-plot .main-svg").first.wait_for(timeout=15_000)
                # A drawn trace, not an empty frame: bars for SHAP, lines for the sensors (Plotly draws the
                # traces a moment after the frame).
                page.locator(f"{chart} .main-svg .trace").first.wait_for(timeout=10_000)
            # One line per sensor that pushed the alert, largest push first, as the "Why" list names them (how
            # many varies with the fault's explanation: it asserted at least 3 and failed 1 run in 7 with 2).
            roles = page.eval_on_selector_all(
                ".alert-why li.why-sensor", "els => els.map(e => e.dataset.role)"
            )
            figure = json.loads(page.locator("#sensor-figure").text_content())
            drawn = [t["name"].rsplit(".", 1)[-1] for t in figure["data"] if ":" not in t.get("name", "")]
            # (No Why list: no single sensor stands out, and every sensor is drawn.)
            assert drawn and (not roles or drawn == roles[: len(drawn)]), (drawn, roles)
            assert page.locator("#sensor-chart .main-svg .trace").count() >= len(drawn)
            assert page.locator("#feature-table tr").count() >= 2
            assert page.locator("#alert-events li, #alert-events tr").count() >= 1
            assert page.locator("#alert-model").inner_text().strip()
            assert page.locator("[data-action='acknowledge']").count() == 1
            assert errors == [], f"JavaScript errors on the detail page: {errors}"

    browser.run(scenario)
