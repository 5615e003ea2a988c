"""Every page a technician or engineer uses, at 390 px wide (a phone): nothing scrolls sideways, tables are
stacked cards whose cells carry their column's label, the explanation chart's title is clear of the Plotly
toolbar, and the error pages and the favicon work. A phone screenshot of each page is kept under
test-artifacts/screenshots/ (layout-<page>-phone.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import DESKTOP, PHONE, logged_in, open_board

pytestmark = pytest.mark.e2e

# The cells of a stacked table: each must be a block with a label, unless it spans the row (an "empty" row).
TABLE_CELLS_JS = """() => {
  const cells = [...document.querySelectorAll(
    "main table.table tbody td, main table.feature-table tbody td")].filter((td) => td.offsetParent !== null);
  return {
    cells: cells.length,
    inline: cells.filter((td) => getComputedStyle(td).display !== "block").map((td) => td.outerHTML.slice(0, 120)),
    unlabelled: cells.filter((td) => !td.dataset.label && td.colSpan < 2).map((td) => td.outerHTML.slice(0, 120)),
  };
}"""

WIDEST_JS = """() => {
  // the elements that stick out past the viewport (to name them when the page scrolls sideways)
  return [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 5).map((el) => el.tagName + "#" + el.id + "." + el.className + " " + Math.round(el.getBoundingClientRect().right));
}"""


def check_page(page: Any, name: str, url: str, screenshots_dir: Path, wait_for: str = "main") -> dict:
    response = page.goto(url)
    page.locator(wait_for).first.wait_for()
    page.wait_for_timeout(300)  # Plotly lays out after load
    page.screenshot(path=str(screenshots_dir / f"layout-{name}-phone.png"), full_page=True)
    return {
        "name": name,
        "status": response.status if response else None,
        "scroll_width": page.evaluate("document.scrollingElement.scrollWidth"),
        "inner_width": page.evaluate("window.innerWidth"),
        "wide": page.evaluate(WIDEST_JS),
        "tables": page.evaluate(TABLE_CELLS_JS),
    }


def test_no_page_scrolls_sideways_on_a_phone_and_tables_become_labelled_cards(
    browser, world: World, explained_alert: int, screenshots_dir: Path
):
    p101 = world.assets["p-101"]

    def technician(b: Any) -> list[dict]:
        with logged_in(b, world, "tech1", viewport=PHONE) as page:
            open_board(page)
            page.locator(f"#alert-{explained_alert}").wait_for()
            page.screenshot(path=str(screenshots_dir / "layout-board-phone.png"), full_page=True)
            board = {
                "name": "board",
                "status": 200,
                "scroll_width": page.evaluate("document.scrollingElement.scrollWidth"),
                "inner_width": page.evaluate("window.innerWidth"),
                "wide": page.evaluate(WIDEST_JS),
                "tables": page.evaluate(TABLE_CELLS_JS),
            }
            return [
                board,
                check_page(
                    page, "detail", f"/alerts/{explained_alert}/", screenshots_dir, "#shap-chart .main-svg"
                ),
                check_page(page, "site", f"/sites/{p101.site}/", screenshots_dir, "table.assets-table"),
                check_page(page, "asset", f"/assets/{p101.id}/", screenshots_dir, "#chart .main-svg"),
                check_page(page, "api-docs", "/api/docs/", screenshots_dir, "article.api-docs"),
                check_page(page, "not-found", "/alerts/999999999/", screenshots_dir, "#error-page"),
            ]

    def engineer(b: Any) -> list[dict]:
        with logged_in(b, world, "engineer", viewport=PHONE) as page:
            results = [
                check_page(page, "health", "/alerts/health/", screenshots_dir, "main h1"),
                check_page(page, "models", "/models/", screenshots_dir, "#model-versions"),
            ]
            with page.expect_navigation():
                page.locator("#model-versions tbody th a").first.click()
            results.append(check_page(page, "compare", page.url, screenshots_dir, "#comparison-table"))
            results.append(check_page(page, "noise", "/alerts/noise/", screenshots_dir, "main h1"))
            return results

    results = browser.run(technician) + browser.run(engineer)
    problems = []
    for r in results:
        if r["status"] not in (200, 404):
            problems.append(f"{r['name']}: HTTP {r['status']}")
        if r["scroll_width"] > r["inner_width"]:
            problems.append(
                f"{r['name']} is {r['scroll_width']} px wide at {r['inner_width']} px: {r['wide']}"
            )
        if r["tables"]["inline"]:
            problems.append(f"{r['name']}: table cells not stacked: {r['tables']['inline'][:2]}")
        if r["tables"]["unlabelled"]:
            problems.append(f"{r['name']}: table cells without a label: {r['tables']['unlabelled'][:2]}")
    assert not problems, "\n".join(problems)
    by_name = {r["name"]: r for r in results}
    assert by_name["not-found"]["status"] == 404
    # the pages whose tables must have become cards did have tables
    for name in ("detail", "site", "asset", "models", "compare"):
        assert by_name[name]["tables"]["cells"] > 0, f"{name} shows no table"


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_explanation_chart_title_is_clear_of_the_plotly_toolbar(
    browser, world: World, explained_alert: int, size: str, viewport: dict
):
    def scenario(b: Any) -> dict:
        with logged_in(b, world, "tech1", viewport=viewport) as page:
            page.goto(f"/alerts/{explained_alert}/")
            chart = page.locator("#shap-chart")
            chart.locator(".main-svg").first.wait_for()
            chart.hover()  # the toolbar shows on hover
            toolbar = chart.locator(".modebar").first
            toolbar.wait_for(state="visible")
            return {"title": chart.locator(".gtitle").bounding_box(), "toolbar": toolbar.bounding_box()}

    boxes = browser.run(scenario)
    title, toolbar = boxes["title"], boxes["toolbar"]
    assert title and toolbar, boxes
    apart = (
        title["y"] >= toolbar["y"] + toolbar["height"]
        or title["x"] + title["width"] <= toolbar["x"]
        or title["y"] + title["height"] <= toolbar["y"]
    )
    assert apart, f"the toolbar {toolbar} covers the title {title} at {size} size"


def test_the_browser_gets_the_favicon(browser, world: World):
    def scenario(b: Any) -> tuple[int, str]:
        with logged_in(b, world, "tech1") as page:
            response = page.goto("/favicon.ico")
            return response.status, response.headers.get("content-type", "")

    status, content_type = browser.run(scenario)
    assert status == 200 and "icon" in content_type
