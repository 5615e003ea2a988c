"""Every kind of page works under the Content-Security-Policy in a real Chromium: Plotly charts draw (also
after an htmx swap), the board's WebSocket opens, the console and admin render, and no page reports a CSP
violation (logged_in fails the scenario on any) or a script error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import logged_in, open_board
from bench.world import World

pytestmark = pytest.mark.e2e


def test_the_pages_run_under_the_content_security_policy_without_violations(
    browser, world: World, explained_alert: int
):
    asset = world.assets["p-101"]

    def scenario(b: Any) -> tuple[dict, int]:
        with logged_in(b, world, "engineer") as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            headers = page.goto("/").headers
            open_board(page)  # connect-src: the htmx WebSocket to the same host

            page.goto(f"/assets/{asset.id}/")
            page.locator("#chart .main-svg .trace").first.wait_for()
            # Plotly's own rules reached the empty <style> the policy lets it add (modebar, hover labels).
            plotly_rules = page.evaluate(
                "document.getElementById('plotly.js-style-global').sheet.cssRules.length"
            )
            page.select_option("#id_range", "1h")
            with page.expect_response(lambda r: f"/assets/{asset.id}/" in r.url and r.status == 200):
                page.click(".range-form button[type=submit]")
            # The swapped-in panel's chart is drawn again by static/js/charts.js.
            page.locator("#chart[data-drawn] .main-svg .trace").first.wait_for()

            page.goto(f"/alerts/{explained_alert}/")
            page.locator("#sensor-chart .main-svg .trace").first.wait_for()
            page.locator("#shap-chart .main-svg .trace").first.wait_for()

            page.goto("/alerts/health/")
            page.locator("h1").first.wait_for()
            page.goto("/models/")
            page.locator("#retrain-form").wait_for()
            page.goto("/admin/")
            page.locator("#site-name").wait_for()
            page.goto("/admin/plant/asset/")
            page.locator("#result_list").wait_for()
            assert errors == [], f"script errors: {errors}"
            return headers, plotly_rules

    headers, plotly_rules = browser.run(scenario)
    assert plotly_rules > 0
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy
    assert "camera=()" in headers["permissions-policy"]
