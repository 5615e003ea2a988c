"""The demo's quality gate: simulated bearing wear opens a machine_fault alert, a stuck sensor a
sensor_fault alert, and both auto-close after the faults end — with the champion seed_demo bootstraps."""

from __future__ import annotations

import os

import pytest

from alerts.models import Alert
from models_registry.choices import ModelStatus
from models_registry.models import ModelStatusChange
from demo.seed import DEMO_MODEL_REASON, bootstrap_demo_champion, seed_demo
from plant.sites import get_site
from plant.simulator import FaultSchedule
from plant.simulator_client import sim_assets
from tests.scoring.conftest import simulate_demo_plant

pytestmark = pytest.mark.django_db


def test_simulated_faults_open_one_alert_each_with_the_right_category_and_close_after_they_end(tmp_path):
    seed_demo(assets=3, credentials_path=tmp_path / "credentials.json")
    now = float(os.environ.get("DEMO_ALERTS_NOW", "1767600000"))  # fixed: the duty cycle depends on the clock
    champion = bootstrap_demo_champion(hours=1.0, now=now, log=lambda line: None)
    assert champion.status == ModelStatus.CHAMPION
    assert ModelStatusChange.objects.filter(version=champion, reason=DEMO_MODEL_REASON).exists()
    assert bootstrap_demo_champion(hours=1.0, now=now, log=lambda line: None) is None  # idempotent

    assets, _ = sim_assets(get_site("demo-plant"))
    # The demo's own schedule, for the two faults the issue names (cavitation: tests/scoring/test_cavitation.py).
    demo = FaultSchedule.default([asset.tag for asset in assets])
    schedule = FaultSchedule([f for f in demo.faults if f.kind in ("bearing_wear", "stuck_sensor")])
    assert {(f.asset_tag, f.kind) for f in schedule.faults} == {
        ("p-101", "bearing_wear"),
        ("p-103", "stuck_sensor"),
    }
    simulate_demo_plant(assets, schedule, now, 1800)

    alerts = {
        (a.asset.tag, a.category, a.state)
        for a in Alert.objects.filter(is_shadow=False).select_related("asset")
    }
    assert alerts == {
        ("p-101", "machine_fault", "auto_closed"),
        ("p-103", "sensor_fault", "auto_closed"),
    }
    wear = Alert.objects.get(asset__tag="p-101")
    assert now + 60 < wear.opened_at.timestamp() < now + 960
    assert wear.closed_at is not None and wear.last_seen_at.timestamp() < now + 960 + 600
