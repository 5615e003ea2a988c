"""Alerts test helpers: a small trained champion, crafted scored windows and the in-memory channel layer."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from alerts import broadcast
from alerts.models import Score
from alerts.services import ScoredWindow, apply_scores
from models_registry import cache
from models_registry.models import ModelVersion
from models_registry.services import promote, register_trained, shadow
from models_registry.training import TrainedModel, train_anomaly
from detection.features import build_windows, feature_names
from tests.conftest import T0

ROLES = ["current", "pressure", "temperature", "vibration"]
STEP_S = 10
OPEN, CLEAR = 10.0, 5.0


def synthetic_series(seconds: int, seed: int = 0) -> dict[str, tuple]:
    """1 Hz pump signals that move together with a shared load, as detection.features expects them."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=np.float64)
    load = 0.5 * np.sin(2 * np.pi * t / 600.0)
    values = {
        "current": 20 + 4 * load + rng.normal(0, 0.2, seconds),
        "pressure": 6 + 1.5 * load + rng.normal(0, 0.05, seconds),
        "temperature": 50 + 3 * load + rng.normal(0, 0.1, seconds),
        "vibration": 2 + 0.5 * load + rng.normal(0, 0.05, seconds),
    }
    ts = T0.timestamp() + t
    return {role: (ts, v, np.zeros(seconds, dtype=np.uint16)) for role, v in values.items()}


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    windows = build_windows(synthetic_series(4 * 3600), ROLES, window_s=60, step_s=STEP_S)
    return train_anomaly(windows.X, windows.names)


@pytest.fixture(autouse=True)
def alerts_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 6
    settings.VIGIL_BROADCAST_MAX_PER_SECOND = 20
    cache.clear()
    broadcast.reset()
    yield settings
    broadcast.reset()


def register(trained: TrainedModel, asset_type, *, name: str = "pump-anomaly") -> ModelVersion:
    version = register_trained(trained, name=name, asset_type=asset_type, provenance={"source": "test"})
    ModelVersion.objects.filter(pk=version.pk).update(open_threshold=OPEN, clear_threshold=CLEAR)
    version.refresh_from_db()
    return version


@pytest.fixture
def champion(trained, asset) -> ModelVersion:
    version = register(trained, asset.asset_type)
    promote(version, reason="test champion")
    version.refresh_from_db()
    return version


@pytest.fixture
def shadow_version(trained, asset, champion) -> ModelVersion:
    version = register(trained, asset.asset_type)
    shadow(version, reason="test shadow")
    version.refresh_from_db()
    return version


def normal_x(trained: TrainedModel) -> np.ndarray:
    return np.asarray(trained.background, dtype=np.float32).mean(axis=0)


def fault_x(trained: TrainedModel, role: str = "vibration", offset: float = 40.0) -> np.ndarray:
    """A window whose `role` features are far off normal, so that role dominates the explanation."""
    x = normal_x(trained).copy()
    for i, name in enumerate(feature_names(ROLES)):
        if name.startswith(f"{role}__") and name.rsplit("__", 1)[1] in ("mean", "max", "min"):
            x[i] += offset
    return x


def window_end(k: int):
    return T0 + timedelta(seconds=STEP_S * k)


def windows(first: int, scores, *, x=None, flagged=None) -> list[ScoredWindow]:
    """ScoredWindows k = first, first+1, ... with the given scores (x and flagged shared by all)."""
    return [
        ScoredWindow(end=window_end(first + i), score=float(s), x=x, flagged=dict(flagged or {}))
        for i, s in enumerate(scores)
    ]


def score(asset, version, batch: list[ScoredWindow], *, sensors=None) -> list[int]:
    """Store the Score rows and run the state machine, as the scorer does in one transaction."""
    from django.db import transaction

    with transaction.atomic():
        Score.objects.bulk_create(
            [
                Score(asset=asset, model_version=version, window_end=w.end, score=w.score, flagged=w.flagged)
                for w in batch
            ],
            ignore_conflicts=True,
        )
        return apply_scores(asset, version, batch, sensors=sensors)


# --- the golden history of the operator-trust metrics (tests/alerts/test_metrics_golden.py) ----------------


@pytest.fixture
def golden(db):
    """The scripted three-month history whose metrics the golden test writes out by hand."""
    from tests.alerts.test_metrics_golden import build_golden_history

    return build_golden_history()


@pytest.fixture
def engineer_client(client, golden):
    client.force_login(golden.engineer)
    return client
