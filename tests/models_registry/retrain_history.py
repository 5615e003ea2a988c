"""A short labelled plant history for the retrain-from-feedback tests, built through the product's own paths.

Three simulated pumps (plant.simulator) on the 5-role pump type. The first hour is fault-free and trains the
champion anomaly model. The next 100 minutes are scored by the real scorer with that champion, and contain:

* genuine faults (bearing wear, cavitation) — technicians confirm the alerts they raise;
* a benign operating condition: a pump running at low duty (load 0.35, below any duty point of the first
  hour; pressure, flow and current follow the pump curve, so nothing is broken) — the champion flags it and
  technicians dismiss those alerts as false alarms ("normal operating change").

Every verdict goes through alerts.services.record_feedback, so the labels are exactly what the feedback path
writes. The module is not a test file; the tests import `build_history`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
from django.test import override_settings

from alerts.models import Alert
from alerts.scoring import score_assets
from alerts.services import record_feedback
from models_registry.choices import ModelKind
from models_registry.models import ModelVersion
from models_registry.services import promote, train_and_register
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset, AssetType, Site
from tests.models_registry.plant_builders import make_simulated_plant, sim_assets
from plant.simulator import Fault, FaultSchedule, PlantSimulator, SimAsset

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=dt_timezone.utc)
ORIGIN = T0.timestamp()
MIN = 60.0
TRAIN_END_S = 60 * MIN
HISTORY_END_S = 160 * MIN
LOW_LOAD = 0.35
# The champion is trained like the demo's: a near-maximum hold-out quantile, so normal duty changes are quiet.
CHAMPION_PARAMS = {"open_quantile": 0.9999, "clear_quantile": 0.99, "holdout_fraction": 0.5}

GENUINE_FAULTS = (
    Fault("bearing_wear", "p-101", None, 70 * MIN, 12 * MIN, 1.0),
    Fault("cavitation", "p-102", None, 95 * MIN, 10 * MIN, 1.0),
    Fault("bearing_wear", "p-103", None, 140 * MIN, 12 * MIN, 1.0),
)
# (tag, start s, end s) of low-duty operation: benign, but outside the champion's training data.
BENIGN = (
    ("p-103", 75 * MIN, 87 * MIN),
    ("p-101", 100 * MIN, 112 * MIN),
    ("p-102", 118 * MIN, 130 * MIN),
    ("p-103", 122 * MIN, 134 * MIN),
)


class LowDutySimulator(PlantSimulator):
    """The plant simulator with some pumps running at low duty for a while (eased in and out over 90 s)."""

    def __init__(self, *args, low_duty=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.low_duty = low_duty

    def _load(self, asset: SimAsset, ts: np.ndarray) -> np.ndarray:
        load = super()._load(asset, ts)
        for tag, start_s, end_s in self.low_duty:
            if tag != asset.tag:
                continue
            start, end = self.origin + start_s, self.origin + end_s
            into = np.clip((ts - start) / 90.0, 0.0, 1.0) - np.clip((ts - end) / 90.0, 0.0, 1.0)
            weight = 0.5 - 0.5 * np.cos(np.pi * into)
            load = load + (LOW_LOAD - load) * weight
        return load


@dataclass
class History:
    site: Site
    asset_type: AssetType
    assets: dict[str, Asset]
    champion: ModelVersion
    verdicts: dict[str, int] = field(default_factory=dict)

    @property
    def period(self) -> tuple[datetime, datetime]:
        return at(TRAIN_END_S), at(HISTORY_END_S)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(ORIGIN + seconds, tz=dt_timezone.utc)


def ingest(site: Site, start_s: float, end_s: float, chunk_s: float = 1800.0) -> None:
    simulator = LowDutySimulator(
        sim_assets(site), seed=5, faults=FaultSchedule(GENUINE_FAULTS), origin=ORIGIN, low_duty=BENIGN
    )
    simulator.step(ORIGIN + start_s - 900.0, ORIGIN + start_s)  # settle the temperature lag
    for t0 in np.arange(start_s, end_s, chunk_s):
        keys, ts, values = simulator.step(ORIGIN + t0, ORIGIN + min(t0 + chunk_s, end_s))
        result = ingest_readings(None, ParsedBatch.from_arrays(list(keys), ts, values), now_s=ORIGIN + end_s)
        assert not result.rejected, result.rejected[:3]


def _overlaps(alert: Alert, tag: str, start_s: float, end_s: float) -> bool:
    return (
        alert.asset.tag == tag and alert.first_window_start < at(end_s) and alert.last_seen_at > at(start_s)
    )


def build_history(
    site: Site, technician, *, slug: str = "sim-pump", baseline: str | None = None, detector: str = "pca"
) -> History:
    """Readings, a champion, its real alerts over the operating period and the technicians' verdicts."""
    asset_type, assets = make_simulated_plant(site, slug)
    ingest(site, 0.0, TRAIN_END_S)
    champion = train_and_register(
        asset_type,
        ModelKind.ANOMALY,
        end=at(TRAIN_END_S),
        params={**CHAMPION_PARAMS, "detector": detector},
        name=f"{slug}-anomaly",
        baseline=baseline,
    )
    promote(champion, reason="first champion")
    champion.refresh_from_db()
    ingest(site, TRAIN_END_S, HISTORY_END_S)
    with override_settings(VIGIL_SCORING_LOOKBACK_S=2 * 3600.0, VIGIL_ALERT_CLEAR_WINDOWS=6):
        score_assets([asset.pk for asset in assets.values()])
    history = History(site=site, asset_type=asset_type, assets=assets, champion=champion)
    for alert in Alert.objects.filter(model_version=champion, is_shadow=False).select_related("asset"):
        if any(_overlaps(alert, f.asset_tag, f.start_s, f.start_s + f.duration_s) for f in GENUINE_FAULTS):
            action = "confirm:repaired"
        elif any(_overlaps(alert, *benign) for benign in BENIGN):
            action = "false_alarm:normal_operating_change"
        else:
            action = "false_alarm:unknown"
        if alert.state not in ("open", "acknowledged", "snoozed", "suppressed", "auto_closed"):
            continue
        record_feedback(
            alert, technician, action, "from the retrain history", now=alert.last_seen_at + timedelta(hours=1)
        )
        history.verdicts[action] = history.verdicts.get(action, 0) + 1
    return history
