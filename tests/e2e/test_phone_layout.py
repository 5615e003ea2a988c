"""Every page a technician or engineer uses, at 390 px wide (a phone): nothing scrolls sideways, tables are
stacked cards whose cells carry their column's label, the explanation chart's title is clear of the Plotly
toolbar (desktop) and keeps no empty band for it where it is hidden (touch), a touch screen's sensor charts
have large zoom buttons instead of the toolbar and scroll with the page, and the error pages and the
favicon work. A phone screenshot of each page is kept under
test-artifacts/screenshots/ (layout-<page>-phone.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.world import World
from tests.e2e.conftest import DESKTOP, PHONE, SMALL_PHONE, TABLET, logged_in, open_board

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


def test_the_explanation_chart_title_is_clear_of_the_plotly_toolbar(
    browser, world: World, explained_alert: int
):
    # (A phone has no toolbar: see test_on_a_touch_screen_...)
    def scenario(b: Any) -> dict:
        with logged_in(b, world, "tech1", viewport=DESKTOP) as page:
            chart = open_explanation(page, explained_alert)
            chart.hover()  # the toolbar shows on hover
            toolbar = chart.locator(".modebar").first
            toolbar.wait_for(state="visible")
            return {"title": chart.locator(".gtitle").bounding_box(), "toolbar": toolbar.bounding_box()}

    boxes = browser.run(scenario)
    title, toolbar = boxes["title"], boxes["toolbar"]
    size = "desktop"
    assert title and toolbar, boxes
    apart = (
        title["y"] >= toolbar["y"] + toolbar["height"]
        or title["x"] + title["width"] <= toolbar["x"]
        or title["y"] + title["height"] <= toolbar["y"]
    )
    assert apart, f"the toolbar {toolbar} covers the title {title} at {size} size"


def open_explanation(page: Any, alert_id: int) -> Any:
    """The alert page with its explanation chart drawn (reloaded until the worker has explained it)."""
    chart = page.locator("#shap-chart")
    for _ in range(30):
        page.goto(f"/alerts/{alert_id}/")
        chart.locator(".main-svg").first.wait_for()
        if "What made" in (chart.locator(".gtitle").first.text_content() or ""):
            return chart
        page.wait_for_timeout(1000)
    raise AssertionError(f"alert {alert_id} was not explained in 30 s")


@pytest.mark.parametrize(("size", "viewport"), [("phone", SMALL_PHONE), ("tablet", TABLET)])
def test_on_a_touch_screen_the_explanation_chart_keeps_no_empty_band_for_the_hidden_toolbar(
    browser, world: World, explained_alert: int, screenshots_dir: Path, size: str, viewport: dict
):
    # charts.js hides Plotly's toolbar on touch screens, but the explanation chart kept the room a desktop
    # gives the toolbar above its title: an empty band at the top of the chart on every phone.
    def scenario(b: Any) -> dict:
        with logged_in(b, world, "tech1", viewport=viewport, touch=True) as page:
            chart = open_explanation(page, explained_alert)
            chart.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            chart.screenshot(path=str(screenshots_dir / f"touch-explanation-chart-{size}.png"))
            return {
                "modebars": chart.locator(".modebar").count(),
                "chart": chart.bounding_box(),
                "title": chart.locator(".gtitle").bounding_box(),
                "plot_top": chart.evaluate("(el) => el._fullLayout._size.t"),
            }

    r = browser.run(scenario)
    assert r["modebars"] == 0, f"Plotly's toolbar is shown on a {size}"
    above_title = r["title"]["y"] - r["chart"]["y"]
    below_title = r["plot_top"] - (r["title"]["y"] + r["title"]["height"] - r["chart"]["y"])
    # A few px of padding, as under a desktop's toolbar: not a band, nor a title glued to the edge.
    assert 2 <= above_title <= 12, (
        f"{above_title:.0f} px above the explanation chart's title on a {size}: {r}"
    )
    assert 0 <= below_title <= 24, f"the bars start {below_title:.0f} px below the title on a {size}: {r}"


# Every text of a chart's row titles and axes: its box and the chart's.
CHART_TEXT_JS = """(chart) => {
  const box = chart.getBoundingClientRect();
  const texts = [...chart.querySelectorAll(".annotation-text, .ytitle, .xtitle")].map((el) => {
    const r = el.getBoundingClientRect();
    return {text: el.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  });
  return {box: {left: box.left, right: box.right, top: box.top, bottom: box.bottom}, texts};
}"""


# A one-finger swipe upwards starting at (x, y), as a phone's touch screen sends it.
def swipe_up(page: Any, x: float, y: float, distance: float = 250) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, 11):
        point = {"x": x, "y": y - distance * step / 10}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        page.wait_for_timeout(16)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(500)


@pytest.mark.parametrize(("size", "viewport"), [("phone", SMALL_PHONE), ("tablet", TABLET)])
def test_on_a_touch_screen_the_sensor_charts_scroll_with_the_page_and_zoom_with_large_buttons(
    browser, world: World, explained_alert: int, screenshots_dir: Path, size: str, viewport: dict
):
    # Plotly's toolbar icons are ~20 px (too small to tap), and a drag on a chart zoomed it instead of
    # scrolling the page: a tall sensor chart caught every swipe. Every row title stays inside the chart.
    p101 = world.assets["p-101"]

    def scenario(b: Any) -> dict:
        with logged_in(b, world, "tech1", viewport=viewport, touch=True) as page:
            results = {}
            for name, url, chart_id in (
                ("asset", f"/assets/{p101.id}/", "#chart"),
                ("detail", f"/alerts/{explained_alert}/", "#sensor-chart"),
            ):
                page.goto(url)
                chart = page.locator(chart_id)
                chart.locator(".main-svg").first.wait_for()
                chart.scroll_into_view_if_needed()
                page.wait_for_timeout(300)
                chart.screenshot(path=str(screenshots_dir / f"touch-{name}-chart-{size}.png"))
                buttons = page.locator(".chart-controls button")
                result = {
                    "modebars": page.locator(".modebar").count(),
                    "button_heights": [button.bounding_box()["height"] for button in buttons.all()],
                    "text": chart.evaluate(CHART_TEXT_JS),
                    "range0": chart.evaluate("(el) => el._fullLayout.xaxis.range.slice()"),
                }
                page.locator(".chart-controls").get_by_role("button", name="Zoom in").tap()
                page.wait_for_timeout(300)
                result["zoomed"] = chart.evaluate("(el) => el._fullLayout.xaxis.range.slice()")
                page.locator(".chart-controls").get_by_role("button", name="Reset").tap()
                page.wait_for_timeout(300)
                result["reset"] = chart.evaluate("(el) => el._fullLayout.xaxis.range.slice()")
                # the chart's top 100 px below the top of the screen; the swipe starts on the chart
                page.evaluate(f"window.scrollBy(0, {chart.bounding_box()['y'] - 100})")
                before = page.evaluate("window.scrollY")
                room = page.evaluate("document.scrollingElement.scrollHeight - window.innerHeight") - before
                box = chart.bounding_box()
                swipe_up(
                    page,
                    box["x"] + box["width"] / 2,
                    min(box["y"] + box["height"] / 2, viewport["height"] - 60),
                )
                result["scrolled"] = page.evaluate("window.scrollY") - before
                result["room"] = room
                results[name] = result
            return results

    results = browser.run(scenario)
    for name, r in results.items():
        assert r["modebars"] == 0, f"{name}: Plotly's toolbar is shown on a {size}"
        assert len(r["button_heights"]) == 3 and min(r["button_heights"]) >= 44, (name, r["button_heights"])
        assert r["zoomed"] != r["range0"] and r["reset"] == r["range0"], (name, r)
        # a 250 px swipe moves the page by at least 150 px, or to its end
        assert r["room"] >= 50 and r["scrolled"] >= min(150, r["room"]), (
            f"{name}: a swipe over the chart scrolled the page by {r['scrolled']} px of {r['room']} px"
        )
        box, texts = r["text"]["box"], r["text"]["texts"]
        assert any("(" in t["text"] for t in texts), f"{name}: no row titles with units: {texts}"
        outside = [
            t["text"]
            for t in texts
            if t["left"] < box["left"] or t["right"] > box["right"] or t["top"] < box["top"]
        ]
        assert not outside, f"{name}: chart texts cut off at the chart's edge on a {size}: {outside}"


def test_on_a_desktop_the_sensor_chart_keeps_plotlys_toolbar_and_drag_to_zoom(browser, world: World):
    p101 = world.assets["p-101"]

    def scenario(b: Any) -> dict:
        with logged_in(b, world, "tech1", viewport=DESKTOP) as page:
            page.goto(f"/assets/{p101.id}/")
            chart = page.locator("#chart")
            chart.locator(".main-svg").first.wait_for()
            chart.hover()
            chart.locator(".modebar").first.wait_for(state="visible")
            return {
                "controls": page.locator(".chart-controls").count(),
                "dragmode": chart.evaluate("(el) => el._fullLayout.dragmode"),
            }

    result = browser.run(scenario)
    assert result == {"controls": 0, "dragmode": "zoom"}


def test_the_browser_gets_the_favicon(browser, world: World):
    def scenario(b: Any) -> tuple[int, str]:
        with logged_in(b, world, "tech1") as page:
            response = page.goto("/favicon.ico")
            return response.status, response.headers.get("content-type", "")

    status, content_type = browser.run(scenario)
    assert status == 200 and "icon" in content_type
