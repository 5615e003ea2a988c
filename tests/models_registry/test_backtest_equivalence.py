"""The champion-vs-challenger backtest replays the live scorer: from the same stored readings it finds exactly
the alerts the scorer raised, for a plain, a per-asset-baselined and a regime-standardised version (issue 12).

Each case ingests a pump's readings through the normal ingest path, lets alerts.scoring raise its
alerts, then backtests the same version over the same period of stored readings."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

import numpy as np
import pytest

from alerts.models import Alert
from detection.thresholds import AssetThresholds
from models_registry import baseline, comparison
from models_registry.models import AssetBaseline
from alerts.scoring import score_assets
from tests.models_registry import test_regimes as regime_tests
from tests.models_registry.test_regimes import two_regime_spec
from tests.scoring.conftest import START_S, fault, ingest

pytestmark = pytest.mark.django_db

SPEC = {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
SECONDS = 1500
SWITCH_S = START_S + 300  # the regime case: the pump moves from 20 A / 2 mm/s to 40 A / 12 mm/s here


@pytest.fixture(autouse=True)
def few_windows(settings):
    settings.VIGIL_BASELINE_WINDOWS = 10


def vibration_version(asset_type, output_spec: dict):
    """The champion: its score is the window's mean vibration (as its pipeline prepares it)."""
    return regime_tests.vibration_version(asset_type, name="vib", output_spec=output_spec)


def plain(asset) -> dict:
    # A healthy pump at 2 mm/s with a wear fault to 20 mm/s.
    ingest(asset, START_S, SECONDS, vibration=fault(START_S + 600, START_S + 1000))
    return SPEC


def baselined(asset) -> dict:
    # A pump whose operating point is 12 mm/s (above the fleet threshold: raw windows alert throughout),
    # with a fault 12 mm/s above it; its baseline is auto-calibrated by the scorer from its first windows.
    ingest(asset, START_S, SECONDS, vibration=lambda t: 10.0 + fault(START_S + 600, START_S + 1000)(t))
    return {**SPEC, "baseline": "per_asset"}


def robust(asset) -> dict:
    # The same pump, scored standardised by its robust calibration (median / robust scale), auto-calibrated
    # by the scorer from its first windows.
    baselined(asset)
    return {**SPEC, "baseline": "per_asset_robust"}


def regime(asset) -> dict:
    # 20 A / 2 mm/s, then 40 A / 12 mm/s (a second operating regime, above the threshold on raw readings),
    # then a fault in the second regime.
    after = lambda t: (t >= SWITCH_S).astype(np.float64)  # noqa: E731
    ingest(
        asset,
        START_S,
        SECONDS,
        current=lambda t: 20.0 + 20.0 * after(t),
        vibration=lambda t: 10.0 * after(t) + fault(START_S + 800, START_S + 1100, level=12.5)(t),
    )
    return {**SPEC, "regimes": two_regime_spec().to_dict()}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


@pytest.mark.parametrize(
    "case", [plain, baselined, robust, regime], ids=["plain", "baselined", "robust", "regime"]
)
def test_the_backtest_finds_exactly_the_alerts_the_live_scorer_raised(asset, case):
    output_spec = case(asset)
    version = vibration_version(asset.asset_type, output_spec)

    report = score_assets([asset.pk])

    assert report.quarantined == [] and report.stored[version.pk] > 100
    if "baseline" in output_spec:
        assert AssetBaseline.objects.filter(asset=asset, is_current=True).exists()
    alerts = [
        (alert.asset_id, alert.first_window_start, alert.opened_at, alert.peak_score)
        for alert in Alert.objects.filter(model_version=version).order_by("opened_at")
    ]
    assert alerts, "the live scorer raised no alert: the case proves nothing"

    episodes = comparison.backtest(version, [asset], _utc(START_S), _utc(START_S + SECONDS - 1))

    assert [(e.asset.pk, e.start, e.opened, e.peak) for e in episodes] == alerts
    # And through the comparison page's entry point, with the version as its own champion.
    side = comparison.compare(version, None, _utc(START_S), _utc(START_S + SECONDS - 1)).challenger
    assert side.error == "" and [(e.asset.pk, e.start, e.peak) for e in side.episodes] == [
        (a, start, peak) for a, start, _, peak in alerts
    ]


def test_a_baselined_version_backtests_no_alerts_on_an_asset_still_calibrating(asset):
    version = vibration_version(asset.asset_type, {**SPEC, "baseline": "per_asset"})
    baselined(asset)  # readings, but the scorer never ran: no baseline yet

    episodes = comparison.backtest(version, [asset], _utc(START_S), _utc(START_S + SECONDS - 1))

    assert episodes == []


def test_the_backtest_applies_a_robust_versions_asset_thresholds_as_the_live_scorer_does(asset):
    version = vibration_version(asset.asset_type, {**SPEC, "baseline": "per_asset_robust"})
    baselined(asset)
    row = baseline.recalibrate(asset, _utc(START_S), _utc(START_S + 300)).baselines[0]
    # Thresholds of the asset's own far above the version's 10: the alert opens later in the fault's ramp.
    baseline.store_thresholds(asset.pk, version, AssetThresholds(900.0, 400.0, 5000, "asset"), row)

    score_assets([asset.pk])
    alerts = [
        (alert.first_window_start, alert.opened_at, alert.peak_score)
        for alert in Alert.objects.filter(model_version=version).order_by("opened_at")
    ]
    episodes = comparison.backtest(version, [asset], _utc(START_S), _utc(START_S + SECONDS - 1))

    assert alerts and [(e.start, e.opened, e.peak) for e in episodes] == alerts
    # At the version's threshold of 10 the alert would have opened earlier in the ramp.
    scored = version.scores.filter(asset=asset, score__gt=10.0).order_by("window_end").first()
    assert scored is not None and scored.window_end < alerts[0][1]
