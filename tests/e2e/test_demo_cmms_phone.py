"""The demo CMMS inbox (the work-order page a technician reports on) at 360 px wide: the work order's text
wraps instead of scrolling inside its box, and the outcome buttons are apart and large enough to tap.
Rendered by Django's test client and laid out by Chromium with Vigil's stylesheet (no live server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.world import ROOT
from demo.cmms_inbox import inbox_path
from demo.seed import DEMO_SITE
from tests.conftest import make_site, make_user
from tests.e2e.conftest import SMALL_PHONE

pytestmark = pytest.mark.e2e

DESCRIPTION = (
    "Vigil alert #6 on P-101 Cooling water pump (critical, machine fault)\n"
    "Why: Vibration RMS's lowest reading is 3.1 mm/s, usually 0.9-1.4 mm/s; bearing temperature rising\n"
    "Details: http://127.0.0.1:8131/alerts/6/"
)

LAYOUT_JS = """() => {
  const pre = document.querySelector("#demo-order-1 pre");
  const boxes = [...document.querySelectorAll("#demo-order-1 form button, #demo-order-1 input[name=findings]")].map((el) => {
    const r = el.getBoundingClientRect();
    return {name: el.textContent || el.name, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  });
  return {pre: [pre.scrollWidth, pre.clientWidth], page: document.scrollingElement.scrollWidth, boxes};
}"""


def overlaps(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


@pytest.mark.django_db
def test_on_a_phone_the_work_orders_text_wraps_and_its_outcome_buttons_are_apart_and_tappable(
    browser, client, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    site = make_site(DEMO_SITE[0])
    client.force_login(make_user("tess-cmms", "technician", site))
    order = {
        "id": 1,
        "title": "P-101 Cooling water pump: machine fault alert #6",
        "priority": 3,
        "description": DESCRIPTION,
        "alert": {"id": 6, "link": "http://127.0.0.1:8131/alerts/6/"},
    }
    inbox_path().parent.mkdir(parents=True)
    entry = {"number": 1, "received_at": "2026-12-05T22:26:59.567949+00:00", "order": order, "reported": None}
    inbox_path().write_text(json.dumps({"orders": [entry]}))
    html = client.get("/demo/cmms/").content.decode()
    css = ROOT / "static" / "css" / "vigil.css"

    def scenario(b: Any) -> dict:
        context = b.new_context(viewport=SMALL_PHONE, has_touch=True, is_mobile=True)
        try:
            page = context.new_page()
            page.set_content(html)
            page.add_style_tag(path=str(css))
            return page.evaluate(LAYOUT_JS)
        finally:
            context.close()

    layout = browser.run(scenario)
    scroll_width, width = layout["pre"]
    assert scroll_width <= width, f"the work order's text scrolls sideways: {scroll_width} px in {width} px"
    assert layout["page"] <= SMALL_PHONE["width"]
    boxes = layout["boxes"]
    assert len(boxes) == 4  # the findings box and three outcomes
    assert all(box["bottom"] - box["top"] >= 44 for box in boxes), boxes
    touching = [(a["name"], b["name"]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if overlaps(a, b)]
    assert not touching, f"overlapping controls: {touching}"
