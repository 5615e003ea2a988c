"""Scoring test helpers: a hand-made champion whose score is the vibration mean, and ingestion of readings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models_registry import cache
from models_registry.models import ModelVersion
from detection.features import feature_names
from alerts.scoring import score_assets
from plant.ingest import ParsedBatch, ingest_readings
from plant.simulator import FaultSchedule, PlantSimulator
from plant.models import Asset
from alerts.scheduling import reset_broker_backoff
from tests.conftest import T0
from bench.versions import vibration_version

ROLES = ["current", "pressure", "temperature", "vibration"]  # the test pump type's roles, by key
NAMES = feature_names(ROLES)
START_S = T0.timestamp()
OPEN, CLEAR = 10.0, 5.0


@pytest.fixture(autouse=True)
def scoring_isolation(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 3
    cache.clear()
    reset_broker_backoff()
    yield
    cache.clear()
    reset_broker_backoff()


def vibration_model(
    asset_type, *, shadow: bool = False, name: str = "pump-vib", weight: float = 1.0
) -> ModelVersion:
    """A validated champion (or shadow) whose score is `weight` × the window's mean vibration."""
    background = np.abs(np.random.default_rng(3).normal(2.0, 0.5, size=(20, len(NAMES))))
    return vibration_version(
        asset_type,
        NAMES,
        name=name,
        weight=weight,
        open_threshold=OPEN,
        clear_threshold=CLEAR,
        background=background,
        shadow=shadow,
    )


def ingest(
    asset: Asset,
    start_s: float,
    seconds: int,
    *,
    vibration: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
    site=None,
    current: Callable[[np.ndarray], np.ndarray] | None = None,
):
    """1 Hz readings of every sensor of the asset for [start_s, start_s + seconds), through ingest_readings
    (vibration and current follow the given functions of time, plus noise, when given)."""
    rng = np.random.default_rng(seed + int(start_s) % 100_000)
    t = start_s + np.arange(seconds, dtype=np.float64)
    keys, ts, values = [], [], []
    for sensor in asset.sensors.select_related("role"):
        role = sensor.role.key
        if role == "vibration" and vibration is not None:
            series = vibration(t) + rng.normal(0, 0.05, seconds)
        elif role == "current" and current is not None:
            series = current(t) + rng.normal(0, 0.05, seconds)
        else:
            series = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}[
                role
            ] + rng.normal(0, 0.05, seconds)
        keys += [sensor.key] * seconds
        ts.append(t)
        values.append(series)
    batch = ParsedBatch.from_arrays(keys, np.concatenate(ts), np.concatenate(values))
    return ingest_readings(site, batch, now_s=start_s + seconds)


def fault(start_s: float, end_s: float, level: float = 20.0, ramp_s: float = 60.0) -> Callable:
    """Vibration that ramps from 2 to `level` from start_s and back down from end_s (a wearing machine,
    not a step, which the quality rules would rightly call a spike)."""

    def vibration(t: np.ndarray) -> np.ndarray:
        up = np.clip((t - start_s) / ramp_s, 0.0, 1.0)
        down = np.clip((t - end_s) / ramp_s, 0.0, 1.0)
        return 2.0 + (level - 2.0) * (up - down)

    return vibration


def simulate_demo_plant(
    assets, schedule: FaultSchedule, now: float, seconds: float, chunk_s: float = 30.0
) -> None:
    """The demo's simulator running `schedule` from `now`: a 15-minute lead-in (it carries the temperature
    lag into the live part, as the demo's simulator does), the backfilled history scored as the worker's
    first sweep would, then `seconds` of live readings ingested and scored `chunk_s` at a time."""
    simulator = PlantSimulator(assets, seed=0, faults=schedule, origin=now)
    simulator.step(now - 900, now)
    ids = list(Asset.objects.filter(site__slug="demo-plant").values_list("pk", flat=True))
    score_assets(ids)
    t = now
    while t < now + seconds:
        keys, ts, values = simulator.step(t, t + chunk_s)
        ingest_readings(None, ParsedBatch.from_arrays(keys.tolist(), ts, values), now_s=t + chunk_s)
        score_assets(ids)
        t += chunk_s
