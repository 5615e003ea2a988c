"""Retraining from feedback in a real browser: an engineer starts a run on the models page, the worker of
the live world runs it, and the page's progress bar moves through the stages to 100 % and links the new
candidate."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import logged_in
from bench.world import World

pytestmark = pytest.mark.e2e

# A technician dismissed an alert on p-101 during the seeded history as a normal operating change: the
# feedback path's label (a normal Label with the reason), written straight into the world's database.
SEED_FEEDBACK = """
from datetime import timedelta
from django.db.models import Max
from plant.models import Asset, Label, Reading
asset = Asset.objects.get(tag="p-101")
last = Reading.objects.filter(sensor__asset=asset).aggregate(m=Max("ts"))["m"]
Label.objects.create(asset=asset, start=last - timedelta(minutes=30), end=last - timedelta(minutes=25),
                     kind="normal", reason="normal_operating_change", source="feedback", note="e2e")
"""


def test_an_engineer_watches_a_retrain_run_to_100_percent_and_opens_the_candidate(browser, world: World):
    world.shell(SEED_FEEDBACK)

    def scenario(b: Any) -> None:
        with logged_in(b, world, "engineer") as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto("/models/")
            page.select_option("#id_asset_type", "centrifugal-pump")
            page.select_option("#id_kind", "anomaly")
            with page.expect_navigation():
                page.click("#retrain-form button[type=submit]")
            assert "/models/retrain/" in page.url
            seen: list[tuple[int, str]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                percent = int(page.locator("#retrain-percent").inner_text().rstrip(" %"))
                stage = page.locator("#retrain-stage").inner_text()
                if not seen or seen[-1] != (percent, stage):
                    seen.append((percent, stage))
                if page.locator(
                    "#retrain-progress[data-status=succeeded], #retrain-progress[data-status=failed]"
                ).count():
                    break
                time.sleep(0.05)
            # The poll may have swapped in the finished state between the reads above and the status check.
            final = (
                int(page.locator("#retrain-percent").inner_text().rstrip(" %")),
                page.locator("#retrain-stage").inner_text(),
            )
            if seen[-1] != final:
                seen.append(final)
            status = page.locator("#retrain-progress").get_attribute("data-status")
            assert status == "succeeded", (
                f"run ended {status}: {page.locator('#retrain-progress').inner_text()}"
            )
            assert page.locator("#retrain-bar").get_attribute("value") == "100"
            assert seen[-1] == (100, "Done")
            percents = [percent for percent, _ in seen]
            assert percents == sorted(percents), seen  # the bar only moves forward
            assert percents[0] < 100, seen  # the page showed the run before it finished, then updated live
            between = {stage for percent, stage in seen if 0 < percent < 100}
            assert len(between) >= 3, seen  # and it showed the stages in between as they happened
            assert page.locator("#retrain-stages li[data-state=done]").count() == 7
            with page.expect_navigation():
                page.click("#retrain-result a")
            assert "/compare/" in page.url
            page.locator("#comparison-table").wait_for()
            assert page.locator("#shadow-form").count() == 1
            assert errors == [], f"JavaScript errors: {errors}"

    browser.run(scenario)
