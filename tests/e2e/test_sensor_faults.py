"""Sensor faults on the board, in a real browser (issue 14, item 3): a stuck sensor, sustained spikes and a
drifting sensor, injected through the gateway API with the simulator's sensor faults, each open a card of
category sensor_fault, "Check the <role> sensor <key>", that offers the sensor verdicts; its detail page
charts the sensor with its flagged readings; a sensor verdict takes the card off the board."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench.world import World, describe_alerts
from demo.seed import PUMP_ROLES
from tests.e2e.conftest import alert_id_of, logged_in, open_board

pytestmark = pytest.mark.e2e

BATCH_S = 60.0  # what a gateway buffering a minute posts at once
SETTLE_MS = 10_000  # the worker scores a batch and the socket delivers the change well within this
# tag (no other browser test injects into it), simulator fault kind, sensor role, its severity, the flag its
# readings get, the verdict the technician gives, how many minutes of readings at most before the card must
# be there. Spikes at severity 2 (plant.simulator: a spike in 60 % of the 10 s buckets, twice as large):
# at severity 1 (30 %) their share sits just past the 2 % opening level (1.2-1.3x it offline) and one e2e
# run saw no card within 8 minutes. The drift is on the flow transmitter: offline it opened 270 s after its
# start in 4 of 4 runs (a temperature drift, the demo's, opened in 4 of 10 runs within 10 minutes: reported
# to the sensor-fault work, not hidden here).
FAULTS = [
    ("p-107", "stuck_sensor", "pressure", 1.0, "stuck", "confirm:sensor_replaced", 8),
    ("p-108", "spikes", "vibration", 2.0, "spike", "false_alarm:sensor_reads_true", 8),
    ("p-109", "calibration_drift", "flow", 1.0, "drift", "confirm:recalibrated", 8),
]
LABELS = {key: label for key, label, *_ in PUMP_ROLES}
SENSOR_VERDICTS = ("confirm:sensor_replaced", "confirm:recalibrated", "false_alarm:sensor_reads_true")


def sensor_card(page: Any, key: str) -> Any:
    return page.locator("#alert-list article.alert-card[data-category=sensor_fault]", has_text=key)


def inject_until_card(
    world: World, page: Any, tag: str, kind: str, role: str, severity: float, minutes: int
) -> Any:
    """Post the fault a minute at a time until its sensor-fault card is on the board; returns the card."""
    key = f"{world.assets[tag].site}.{tag}.{role}"
    card = sensor_card(page, key)
    for _ in range(minutes):
        world.post_readings(world.sensor_fault_readings(tag, kind, role, seconds=BATCH_S, severity=severity))
        try:
            card.wait_for(state="visible", timeout=SETTLE_MS)
            return card
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: not yet, another minute of readings
            continue
    raise AssertionError(
        f"{kind} on {key} opened no sensor-fault card within {minutes} min of readings; alerts:\n"
        f"{describe_alerts(world.alerts()) or '  none'}"
    )


@pytest.mark.parametrize(
    ("tag", "kind", "role", "severity", "flag", "verdict", "minutes"), FAULTS, ids=[f[1] for f in FAULTS]
)
def test_a_faulty_sensor_opens_a_check_sensor_card_with_its_evidence_and_the_sensor_verdicts(
    browser, world: World, screenshots_dir: Path, tag, kind, role, severity, flag, verdict, minutes
):
    key = f"{world.assets[tag].site}.{tag}.{role}"

    def scenario(b: Any) -> float:
        with logged_in(b, world, "tech1") as page:
            open_board(page)
            started = time.monotonic()
            card = inject_until_card(world, page, tag, kind, role, severity, minutes)
            seen = time.monotonic() - started
            alert_id = alert_id_of(card)
            # One sentence on the board and on the detail page, with the sensor's label (it said "pressure"
            # on the detail page where the board said "discharge pressure").
            sentence = f"Check the {LABELS[role].lower()} sensor {key}:"
            text = card.inner_text()
            assert sentence in text, text
            for action in SENSOR_VERDICTS:
                assert card.locator(f"[data-action='{action}']").count() == 1, action
            assert card.locator("[data-action='confirm:scheduled']").count() == 0  # not a machine repair
            # A false alarm here says the sensor read true: "Sensor glitch" would say the opposite.
            assert card.locator("[data-action='false_alarm:sensor_glitch']").count() == 0
            if kind == "stuck_sensor":
                card.screenshot(path=str(screenshots_dir / "sensor-fault-card-desktop.png"))

            # The evidence: the detail page charts the sensor with its flagged readings.
            page.goto(f"/alerts/{alert_id}/")
            assert sentence in page.locator(".alert-sensor-fault").inner_text()
            # Measured by the sensor rule, with no model explanation to wait for.
            assert "the alert level" in page.locator("#alert-unusual").inner_text()
            assert page.locator("#shap-chart").count() == 0 and "still being computed" not in page.content()
            page.locator("#sensor-chart .main-svg .trace").first.wait_for(timeout=15_000)
            figure = json.loads(page.locator("#sensor-figure").text_content())
            names = [trace.get("name", "") for trace in figure["data"]]
            assert f"{key}: {flag}" in names, names
            for action in SENSOR_VERDICTS:
                assert page.locator(f".detail-feedback [data-action='{action}']").count() == 1, action
            if kind == "stuck_sensor":
                page.screenshot(path=str(screenshots_dir / "sensor-fault-detail-desktop.png"), full_page=True)

            # A sensor verdict on the board: confirmed, and the card leaves. (The board re-syncs its list once
            # its socket opens; a click before that lands loses its confirmation with the replaced form.)
            with page.expect_response(lambda response: "/alerts/board/" in response.url):
                open_board(page)
            page.wait_for_timeout(500)
            page.locator(f"#alert-{alert_id} [data-action='{verdict}']").click()
            page.locator(".verdict-done", has_text=f"#{alert_id}").wait_for(timeout=5_000)
            page.locator(f"#alert-{alert_id}").wait_for(state="detached", timeout=5_000)
            return seen

    seconds = browser.run(scenario)
    print(f"{kind} on {key}: card on the board {seconds:.0f} s after the first batch was posted")
