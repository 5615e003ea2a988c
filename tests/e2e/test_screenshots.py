"""Screenshots of the board and the alert detail page at desktop and phone size, kept as test artifacts
under test-artifacts/screenshots/ (gitignored) for people to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, PHONE, logged_in, open_board
from bench.world import World

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_board_and_detail_screenshots_are_saved_as_artifacts(
    browser, world: World, explained_alert: int, screenshots_dir: Path, size: str, viewport: dict
):
    board_png = screenshots_dir / f"board-{size}.png"
    detail_png = screenshots_dir / f"detail-{size}.png"
    for path in (board_png, detail_png):
        path.unlink(missing_ok=True)

    def scenario(b: Any) -> int:
        with logged_in(b, world, "tech1", viewport=viewport) as page:
            open_board(page)
            page.locator(f"#alert-{explained_alert}").wait_for()
            page.screenshot(path=str(board_png), full_page=True)
            page.goto(f"/alerts/{explained_alert}/")
            page.locator("#shap-chart .main-svg").first.wait_for(timeout=15_000)
            page.locator("#sensor-chart .main-svg").first.wait_for(timeout=15_000)
            page.screenshot(path=str(detail_png), full_page=True)
            # Readable on a phone: nothing wider than the viewport forces sideways scrolling.
            return page.evaluate("document.documentElement.scrollWidth")

    scroll_width = browser.run(scenario)
    for path in (board_png, detail_png):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000, f"{path} is not a real screenshot"
    assert scroll_width <= viewport["width"] + 1, f"the detail page is {scroll_width}px wide at {size} size"
