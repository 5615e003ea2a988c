"""The alert health page in a real browser: an engineer sees the metrics table, the Plotly trend and the
trust-erosion warning, clicks a number and reaches the alerts behind it, then one alert's page.

The history is written into the live world's database through `manage.py shell`, with the real feedback
service and past timestamps, on a site of its own (so the alerts other browser tests raise stay apart):
June, ten alerts on LAB-2 confirmed within two hours; July, four more like them and six on LAB-1 that
auto-close untouched. Follow-through falls from 100 % to 40 %: July is flagged, naming LAB-1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import logged_in
from bench.world import World

pytestmark = pytest.mark.e2e

HISTORY_SCRIPT = """
import json
from datetime import datetime, timedelta, timezone
from django.contrib.auth.models import User
from alerts.models import Alert, AlertEvent
from alerts.services import record_feedback
from models_registry.models import ModelVersion
from plant.models import Asset, Sensor, Site

HOUR = timedelta(hours=1)
engineer = User.objects.get(username="engineer")
version = ModelVersion.objects.filter(status="champion").order_by("pk").first()
site, _ = Site.objects.get_or_create(slug="health-lab", defaults={"name": "Health Lab"})
site.members.add(engineer)
assets = {}
for tag in ("lab-1", "lab-2"):
    asset, created = Asset.objects.get_or_create(
        site=site, tag=tag, defaults={"name": tag.upper(), "asset_type": version.asset_type}
    )
    if created:
        Sensor.objects.bulk_create(
            Sensor(asset=asset, key=f"health-lab.{tag}.{role.key}", role=role, unit=role.unit,
                   valid_min=0.0, valid_max=100.0, sample_period_s=1.0)
            for role in version.asset_type.roles.all()
        )
    assets[tag] = asset

def alert(tag, opened):
    a = Alert.objects.create(
        asset=assets[tag], model_version=version, kind=version.kind, state="open", opened_at=opened,
        first_window_start=opened - timedelta(minutes=3), last_seen_at=opened, peak_score=99.0,
        peak_window_end=opened, window_count=3,
    )
    AlertEvent.objects.create(alert=a, at=opened, from_state="", to_state="open", reason="opened")
    return a

if not Alert.objects.filter(asset__site=site).exists():
    for i in range(10):
        opened = datetime(2026, 6, 2 + 2 * i, 8, tzinfo=timezone.utc)
        record_feedback(alert("lab-2", opened), engineer, "confirm:repaired", now=opened + HOUR * 2)
    for i in range(4):
        opened = datetime(2026, 7, 2 + 2 * i, 8, tzinfo=timezone.utc)
        record_feedback(alert("lab-2", opened), engineer, "confirm:scheduled", now=opened + HOUR)
    for i in range(6):
        opened = datetime(2026, 7, 3 + 3 * i, 8, tzinfo=timezone.utc)
        alert("lab-1", opened).transition("auto_closed", reason="cleared", at=opened + HOUR * 9)
ignored = list(Alert.objects.filter(asset=assets["lab-1"]).order_by("opened_at").values_list("pk", flat=True))
print("HISTORY=" + json.dumps({"ignored": ignored}))
"""


@pytest.fixture(scope="module")
def lab_history(world: World) -> dict:
    out = world.shell(HISTORY_SCRIPT)
    line = next(x for x in out.splitlines() if x.startswith("HISTORY="))
    return json.loads(line.removeprefix("HISTORY="))


def test_an_engineer_follows_the_warning_from_the_trend_to_the_alerts_behind_it(
    browser, world: World, lab_history: dict, screenshots_dir: Path
):
    def scenario(b: Any) -> dict:
        with logged_in(b, world, "engineer") as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto("/alerts/")
            with page.expect_navigation():
                page.get_by_role("link", name="Alert health").click()
            response = page.goto("/alerts/health/?site=health-lab&group_by=asset&period=month")
            assert response is not None and response.status == 200
            table = page.locator("#health-table")
            table.wait_for()
            july_total = table.locator("tr.period-total[data-period='2026-07']")
            assert (
                july_total.locator("td[data-metric='follow_through']").inner_text().strip()
                == "40% (4 of 10 due)"
            )
            assert july_total.locator("td[data-metric='alerts']").inner_text().strip() == "10"
            assert (
                table.locator("tr.period-total[data-period='2026-06'] td[data-metric='follow_through']")
                .inner_text()
                .strip()
                == "100% (10 of 10 due)"
            )
            # The trend: Plotly drew the four lines (and the warning marker) into the chart.
            page.locator("#health-chart.js-plotly-plot .main-svg").first.wait_for(timeout=15_000)
            page.locator("#health-chart .main-svg .trace").first.wait_for(timeout=10_000)
            traces = page.locator("#health-chart .main-svg .scatterlayer .trace").count()
            warning = page.locator("#trust-warning-2026-07")
            warning.wait_for()
            warning_text = warning.inner_text()
            # The alarm-management KPIs arrive after the page (htmx): their table and a chart with its targets.
            page.locator("#alarm-kpis table.kpi-table[data-site='health-lab']").wait_for(timeout=15_000)
            page.locator("#kpi-per-tech-per-10min-chart.js-plotly-plot .main-svg").first.wait_for(
                timeout=15_000
            )
            kpis = {
                "loader": page.locator("#kpi-loading").count(),
                "heading": page.locator("#kpi-site-health-lab").inner_text(),
                "warnings_first": page.evaluate(
                    "document.getElementById('kpi-warnings').compareDocumentPosition("
                    "document.getElementById('alarm-kpis')) & Node.DOCUMENT_POSITION_FOLLOWING"
                ),
            }
            page.screenshot(path=str(screenshots_dir / "health-desktop.png"), full_page=True)
            assert page.locator("#trust-warning-2026-06").count() == 0
            # Click the "ignored" number of July's total row: the six LAB-1 alerts.
            with page.expect_navigation():
                july_total.locator("td[data-metric='ignored'] a").click()
            assert "/alerts/health/alerts/" in page.url and "metric=ignored" in page.url
            links = page.locator("#drill-table a.alert-link")
            listed = [int(links.nth(i).inner_text().strip().lstrip("#")) for i in range(links.count())]
            with page.expect_navigation():
                links.first.click()
            detail_status = page.url
            page.locator("#alert-events").wait_for()
            return {
                "traces": traces,
                "warning": warning_text,
                "listed": listed,
                "detail": detail_status,
                "errors": errors,
                "kpis": kpis,
            }

    result = browser.run(scenario)
    assert result["traces"] >= 4, "follow-through, actionability, precision and recall"
    assert "LAB-1" in result["warning"] and "2026-07" in result["warning"]
    assert result["listed"] == lab_history["ignored"]
    assert result["detail"].endswith(f"/alerts/{lab_history['ignored'][0]}/")
    assert result["errors"] == [], f"JavaScript errors: {result['errors']}"
    assert result["kpis"]["loader"] == 0 and result["kpis"]["heading"].startswith("Health Lab:")
    assert result["kpis"]["warnings_first"], "the KPI band warnings sit beside the trust warnings, above"
