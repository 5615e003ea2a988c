"""The demo's quality gate: simulated bearing wear opens a machine_fault alert, a stuck sensor a
sensor_fault alert, and both auto-close after the faults end — with the champion seed_demo bootstraps."""

from __future__ import annotations

import os

import pytest

from alerts.models import Alert
from models_registry.choices import ModelStatus
from models_registry.models import ModelStatusChange
from alerts.scoring import score_assets
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset
from demo.seed import DEMO_MODEL_REASON, bootstrap_demo_champion, seed_demo
from plant.sites import get_site
from plant.simulator import FaultSchedule, PlantSimulator
from plant.simulator_client import sim_assets

pytestmark = pytest.mark.django_db

CHUNK_S = 30.0


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
    simulator = PlantSimulator(assets, seed=0, faults=schedule, origin=now)
    simulator.step(
        now - 900, now
    )  # carries the temperature lag into the live part, as the demo's simulator does
    ids = list(Asset.objects.filter(site__slug="demo-plant").values_list("pk", flat=True))
    score_assets(ids)  # the backfilled history first, as the worker's first sweep would
    t = now
    while t < now + 1800:
        keys, ts, values = simulator.step(t, t + CHUNK_S)
        ingest_readings(None, ParsedBatch.from_arrays(keys.tolist(), ts, values), now_s=t + CHUNK_S)
        score_assets(ids)
        t += CHUNK_S

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
