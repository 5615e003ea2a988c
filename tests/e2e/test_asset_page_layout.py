"""The asset page's sensor health table on a phone and a tablet: no cell cuts its text off and the table
fits the page. Rendered by Django's test client and laid out by Chromium with Vigil's stylesheet."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from bench.world import ROOT
from plant.choices import QualityFlag
from tests.conftest import make_readings
from tests.e2e.conftest import SMALL_PHONE, TABLET

pytestmark = pytest.mark.e2e

CELLS_JS = """() => {
  const table = document.querySelector("main table.health-table");
  const clipped = [...table.querySelectorAll("tbody th, tbody td")]
    .filter((cell) => cell.scrollWidth > cell.clientWidth + 1)
    .map((cell) => (cell.dataset.label || "?") + ": " + cell.textContent.trim().slice(0, 60));
  return {table: table.getBoundingClientRect().width, room: table.parentElement.clientWidth, clipped};
}"""


@pytest.mark.django_db
def test_the_sensor_health_tables_problems_wrap_on_a_phone_and_a_tablet(browser, client, technician, asset):
    now = timezone.now()
    for sensor in asset.sensors.all():
        quality = np.zeros(1200, dtype=int)
        quality[[100, 700]] = QualityFlag.SPIKE
        quality[900] = QualityFlag.OUT_OF_RANGE | QualityFlag.SPIKE
        make_readings(sensor, now - timedelta(minutes=20), np.full(1200, 2.0), quality=quality)
    client.force_login(technician)
    html = client.get(f"/assets/{asset.pk}/").content.decode()
    assert "readings flagged" in html
    css = ROOT / "static" / "css" / "vigil.css"

    def scenario(b: Any, viewport: dict) -> dict:
        context = b.new_context(viewport=viewport, has_touch=True, is_mobile=True)
        try:
            page = context.new_page()
            page.set_content(html)
            page.add_style_tag(path=str(css))
            return page.evaluate(CELLS_JS)
        finally:
            context.close()

    for name, viewport in (("phone", SMALL_PHONE), ("tablet", TABLET)):
        layout = browser.run(scenario, viewport)
        assert not layout["clipped"], f"cells cut off on a {name}: {layout['clipped']}"
        assert layout["table"] <= layout["room"] + 1, f"the table scrolls sideways on a {name}: {layout}"
