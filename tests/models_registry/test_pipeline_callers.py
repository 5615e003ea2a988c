"""Retraining's hold-out scores of the champion (retrain.score_with) go through the scoring pipeline: the
same scores the live scorer stores for the same windows, and none for a version whose windows it cannot
reproduce (a regime-standardised champion: the hold-out rows are windows of raw readings)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from alerts.models import Alert, Score
from alerts.services.lifecycle import window_features
from detection.features import build_windows, role_of
from detection.pipeline import Pipeline, PipelineError
from plant.series import read_readings
from models_registry.retrain import score_with
from models_registry.models import AssetBaseline
from alerts.scoring import score_assets
from tests.models_registry.test_backtest_equivalence import SPEC, baselined, plain, regime, vibration_version
from tests.models_registry.test_regimes import two_regime_spec
from tests.scoring.conftest import NAMES, ROLES, START_S, fault, ingest

pytestmark = pytest.mark.django_db


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc)


def _raw_series(asset, seconds: int) -> dict:
    sensors = {s.pk: s.role.key for s in asset.sensors.select_related("role")}
    sid, ts, values, quality = read_readings(list(sensors), _utc(START_S - 60), _utc(START_S + seconds))
    series = {}
    for pk, role in sensors.items():
        mine = sid == pk
        series[role] = (ts[mine], values[mine], quality[mine])
    return series


def test_score_with_gives_the_scores_the_live_scorer_stored(asset):
    version = vibration_version(asset.asset_type, SPEC)
    ingest(asset, START_S, 600, vibration=fault(START_S + 200, START_S + 400))
    score_assets([asset.pk])
    stored = dict(Score.objects.filter(model_version=version).values_list("window_end", "score"))
    windows = build_windows(
        _raw_series(asset, 600),
        ROLES,
        window_s=60,
        step_s=10,
        start_s=START_S - 60 + 1e-6,  # the scorer's read range (the asset's first run)
        end_s=START_S + 599,
        sample_period_s=1.0,
    )
    complete = np.isfinite(windows.X).all(axis=1)
    ends = [e for e, ok in zip(windows.ends, complete) if ok]

    scores = score_with(version, windows.X[complete], list(windows.names))

    by_end = {_utc(end): float(score) for end, score in zip(ends, scores)}
    assert stored and {end: by_end[end] for end in stored} == stored


def test_score_with_judges_no_regime_champion_on_raw_windows_and_none_missing_features(asset):
    regimed = vibration_version(asset.asset_type, {**SPEC, "regimes": two_regime_spec().to_dict()})
    X = np.ones((5, len(NAMES)), dtype=np.float32)

    assert score_with(regimed, X, list(NAMES)) is None
    assert score_with(regimed, X[:, :3], list(NAMES[:3])) is None


# --- explanations rebuild the scored input (alerts.services.lifecycle.window_features) ---------------------


@pytest.fixture
def few_baseline_windows(settings):
    settings.VIGIL_BASELINE_WINDOWS = 10


@pytest.mark.parametrize("case", [plain, baselined, regime], ids=["plain", "baselined", "regime"])
def test_a_pending_explanation_rebuilds_exactly_the_input_the_live_scorer_scored(
    asset, case, few_baseline_windows
):
    version = vibration_version(asset.asset_type, case(asset))
    score_assets([asset.pk])
    alert = Alert.objects.filter(model_version=version).order_by("opened_at").first()
    assert alert is not None and alert.explanation, "the scorer raised no explained alert"
    # The opening explanation is of the row the scorer fed the model (ScoredWindow.x).
    scored = {feature["name"]: feature["value"] for feature in alert.explanation["features"]}

    x, flagged = window_features(alert)

    assert [float(value) for value in x] == [scored[name] for name in version.feature_spec]
    stored = Score.objects.get(model_version=version, window_end=alert.opened_at).flagged
    read = {role_of(name) for name in version.feature_spec}
    assert flagged == {role: bits for role, bits in stored.items() if role in read}


def test_a_version_with_a_regime_step_and_a_per_asset_baseline_is_refused_not_scored_against_raw_means(
    asset, few_baseline_windows
):
    # A baseline is a mean of raw-reading windows; subtracting it from regime-standardised windows scored
    # nonsense (the scorer did so before). The pipeline refuses the pair; the scorer quarantines the version.
    output_spec = {**regime(asset), "baseline": "per_asset"}
    with pytest.raises(PipelineError, match="regime step and a per-asset baseline"):
        Pipeline.from_spec(NAMES, output_spec)
    version = vibration_version(asset.asset_type, output_spec)

    report = score_assets([asset.pk])

    assert report.quarantined == [version.pk]
    assert not Score.objects.filter(model_version=version).exists()
    assert not AssetBaseline.objects.exists()
