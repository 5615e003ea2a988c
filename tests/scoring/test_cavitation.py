"""The demo's cavitation fault is the pump's problem, not the transmitter's: its pressure and vibration
fluctuations must not make the data-quality gate file the alert as "check the sensor"."""

from __future__ import annotations

import os

import pytest

from alerts.choices import AlertCategory
from alerts.models import Alert
from plant.choices import QualityFlag
from plant.models import Reading
from demo.seed import bootstrap_demo_champion, seed_demo
from plant.sites import get_site
from plant.simulator import FaultSchedule
from plant.simulator_client import sim_assets
from tests.scoring.conftest import simulate_demo_plant

pytestmark = pytest.mark.django_db


def test_simulated_cavitation_opens_a_machine_fault_alert_that_closes_after_it_ends(tmp_path):
    seed_demo(assets=2, credentials_path=tmp_path / "credentials.json")
    now = float(os.environ.get("DEMO_ALERTS_NOW", "1767600000"))  # fixed: the duty cycle depends on the clock
    bootstrap_demo_champion(hours=1.0, now=now, log=lambda line: None)

    assets, _ = sim_assets(get_site("demo-plant"))
    demo = FaultSchedule.default([asset.tag for asset in assets])
    schedule = FaultSchedule([f for f in demo.faults if f.kind == "cavitation"])
    assert [(f.asset_tag, f.start_s, f.duration_s) for f in schedule.faults] == [("p-102", 150.0, 300.0)]
    simulate_demo_plant(assets, schedule, now, 1200)

    alert = Alert.objects.select_related("asset").get(is_shadow=False)
    assert (alert.asset.tag, alert.state) == ("p-102", "auto_closed")
    assert alert.category == AlertCategory.MACHINE_FAULT
    assert now + 150 < alert.opened_at.timestamp() < now + 450
    # The fluctuations themselves are process, not glitches: at most the first reading of the onset of a
    # role may look like one (the rule is causal), never the sustained noise after it.
    readings = Reading.objects.filter(
        sensor__asset__tag="p-102", ts__gte=alert.first_window_start, ts__lte=alert.opened_at
    ).values_list("sensor__role__key", "quality")
    spiky_roles = [role for role, quality in readings if quality & QualityFlag.SPIKE]
    assert len(spiky_roles) == len(set(spiky_roles)) <= 2
