"""Issue 14, item 3: every fault of the demo's schedule alerts within 5 minutes of its start, through the
real ingest + scorer + lifecycle path (the champion seed_demo bootstraps), and the sensor faults alert as
"check sensor X" on the faulty sensor."""

from __future__ import annotations

import os

import pytest

from alerts.choices import AlertKind
from alerts.models import Alert
from alerts.scoring import score_assets
from demo import seed as demo_seed
from demo.seed import bootstrap_demo_champion, seed_demo
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset
from plant.simulator import FaultSchedule, PlantSimulator
from plant.simulator_client import sim_assets
from plant.sites import get_site

pytestmark = pytest.mark.django_db

CHUNK_S = 30.0
DEADLINE_S = 300.0


def test_the_five_demo_faults_each_alert_within_five_minutes_of_their_start(tmp_path, monkeypatch):
    # DEMO_SEED: the simulator's noise and duty cycle, for the history the champion is trained on and the
    # live readings alike (the robustness check runs seeds 0, 1 and 2).
    seed = int(os.environ.get("DEMO_SEED", "0"))
    monkeypatch.setattr(
        demo_seed, "PlantSimulator", lambda *args, **kwargs: PlantSimulator(*args, **{**kwargs, "seed": seed})
    )
    seed_demo(assets=5, credentials_path=tmp_path / "credentials.json")
    now = float(os.environ.get("DEMO_ALERTS_NOW", "1767600000"))
    bootstrap_demo_champion(hours=1.0, now=now, log=lambda line: None)
    assets, _ = sim_assets(get_site("demo-plant"))
    schedule = FaultSchedule.default([asset.tag for asset in assets])
    assert len(schedule) == 5
    # DEMO_SEED: the simulator's noise (the check of robustness runs seeds 0, 1, 2).
    simulator = PlantSimulator(
        assets, seed=int(os.environ.get("DEMO_SEED", "0")), faults=schedule, origin=now
    )
    simulator.step(now - 900, now)
    ids = list(Asset.objects.filter(site__slug="demo-plant").values_list("pk", flat=True))
    score_assets(ids)
    last_start = max(f.start_s for f in schedule.faults)
    t = now
    while t < now + last_start + DEADLINE_S + CHUNK_S:
        keys, ts, values = simulator.step(t, t + CHUNK_S)
        ingest_readings(None, ParsedBatch.from_arrays(keys.tolist(), ts, values), now_s=t + CHUNK_S)
        score_assets(ids)
        t += CHUNK_S

    alerts = list(Alert.objects.filter(is_shadow=False).select_related("asset", "sensor__role"))
    table = []
    for fault in schedule.faults:
        start = now + fault.start_s
        if fault.sensor_role is None:  # a machine fault: the model's alert
            right = [a for a in alerts if a.kind != AlertKind.SENSOR_FAULT]
        else:  # a sensor fault: "check sensor X" on that very sensor
            right = [
                a
                for a in alerts
                if a.kind == AlertKind.SENSOR_FAULT and a.sensor.role.key == fault.sensor_role
            ]
        delays = [a.opened_at.timestamp() - start for a in right if a.asset.tag == fault.asset_tag]
        first = min((d for d in delays if d >= 0), default=None)
        table.append((fault.kind, fault.asset_tag, first))
    print("start -> first alert of the right kind (s):", table)
    assert all(first is not None and first <= DEADLINE_S for _, _, first in table), table
