"""Per-asset baselines: calibration, the scorer's subtraction and auto-calibration, explanations, training,
the edge bundle and the calibrate_baseline command."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, Score
from alerts.services.lifecycle import window_features
from bench import versions
from detection.baseline import apply as apply_baseline
from detection.features import build_windows
from models_registry import baseline
from models_registry.bundle import BundleExportError, build_bundle, bundle_spec
from detection.bundle import Bundle
from edge.runner import score_series
from models_registry.models import AssetBaseline, BaselineSource
from alerts.scoring import score_assets
from models_registry.services import train_and_register
from tests.conftest import T0, make_asset, make_readings
from tests.scoring.conftest import CLEAR, NAMES, OPEN, START_S, fault, ingest

pytestmark = pytest.mark.django_db

SPEC = versions.SPEC


@pytest.fixture(autouse=True)
def few_windows(settings):
    settings.VIGIL_BASELINE_WINDOWS = 10
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 3


def vibration_version(asset_type, *, baselined: bool, shadow: bool = False, name: str = "vib") -> object:
    """A promoted version whose score is the window's mean vibration (minus the baseline's, if baselined)."""
    centre = 0.0 if baselined else 2.0
    return versions.vibration_version(
        asset_type,
        NAMES,
        name=name,
        output_spec={**SPEC, "baseline": "per_asset"} if baselined else SPEC,
        open_threshold=OPEN,
        clear_threshold=CLEAR,
        background=np.random.default_rng(5).normal(centre, 0.5, size=(20, len(NAMES))),
        shadow=shadow,
    )


def steady(level: float):
    return lambda t: np.full_like(t, level)


# --- calibration --------------------------------------------------------------------------------------------


def test_calibration_is_the_mean_of_the_windows_lying_in_the_period(asset):
    # Vibration ramps 1 unit per second; every 60 s window (e - 60, e] holds t = e-59 .. e, mean e - 29.5.
    for sensor in asset.sensors.select_related("role"):
        values = np.arange(300, dtype=float) if sensor.role.key == "vibration" else np.full(300, 5.0)
        make_readings(sensor, T0, values)

    row = baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=120))

    # Windows wholly inside [T0, T0 + 120]: ends 60, 70, ..., 120 -> means 30.5 .. 90.5, their mean 60.5.
    assert row.window_count == 7
    assert row.source == BaselineSource.MANUAL and row.is_current
    assert row.vector_for(["vibration__mean"]) == [pytest.approx(60.5)]
    assert row.vector_for(["vibration__max"]) == [pytest.approx(90.0)]
    assert row.vector_for(["current__mean"]) == [pytest.approx(5.0)]
    assert row.feature_names == NAMES


def test_recalibrating_keeps_the_old_baseline_as_history(asset):
    ingest(asset, START_S, 600)
    first = baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=300))
    second = baseline.calibrate(asset, None, T0 + timedelta(seconds=200), T0 + timedelta(seconds=600))

    first.refresh_from_db()
    assert not first.is_current and second.is_current
    assert baseline.current_baselines([asset.pk], NAMES) == {asset.pk: second}


def test_apply_subtracts_in_double_precision_and_returns_the_model_input_type():
    X = np.array([[1.5, 2.0], [3.0, 4.25]], dtype=np.float32)

    Z = apply_baseline(X, [1.0, 0.25])

    assert Z.dtype == np.float32
    assert Z.tolist() == [[0.5, 1.75], [2.0, 4.0]]


# --- scoring ------------------------------------------------------------------------------------------------


def test_a_baselined_model_scores_a_pump_at_its_own_operating_point_as_normal(asset):
    # The pump runs at 12 mm/s, above the fleet threshold of 10: the raw model alerts, the baselined not.
    raw = vibration_version(asset.asset_type, baselined=False, shadow=True, name="vib-raw")
    based = vibration_version(asset.asset_type, baselined=True, name="vib-based")
    ingest(asset, START_S, 300, vibration=steady(12.0))
    baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=300))
    ingest(asset, START_S + 300, 600, vibration=steady(12.0))

    score_assets([asset.pk])

    based_scores = np.array(Score.objects.filter(model_version=based).values_list("score", flat=True))
    raw_scores = np.array(Score.objects.filter(model_version=raw).values_list("score", flat=True))
    assert len(based_scores) == len(raw_scores) > 50
    assert np.allclose(based_scores, 0.0, atol=0.1)
    assert np.allclose(raw_scores, 12.0, atol=0.1)
    assert Alert.objects.filter(model_version=raw, is_shadow=True).count() == 1
    assert not Alert.objects.filter(model_version=based).exists()


def test_a_fault_on_top_of_the_baseline_alerts_with_an_additive_explanation_of_the_baselined_input(asset):
    version = vibration_version(asset.asset_type, baselined=True)
    ingest(asset, START_S, 300, vibration=steady(12.0))
    row = baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=300))
    base = row.vector_for(["vibration__mean"])[0]
    ingest(asset, START_S + 300, 900, vibration=lambda t: 10.0 + fault(START_S + 600, START_S + 2000)(t))

    score_assets([asset.pk])

    alert = Alert.objects.get(model_version=version)
    explanation = alert.explanation
    assert explanation["additivity_ok"] and explanation["additivity_error"] <= 1e-4
    stored = Score.objects.get(model_version=version, window_end=alert.opened_at).score
    assert explanation["output"] == pytest.approx(stored, abs=1e-4)
    vib = next(f for f in explanation["features"] if f["name"] == "vibration__mean")
    # The model saw the change from the operating point; the page shows the sensor's value and baseline.
    assert vib["value"] == pytest.approx(stored, abs=1e-4) and vib["value"] > OPEN
    assert vib["baseline"] == pytest.approx(base)
    assert vib["raw"] == pytest.approx(vib["value"] + base)
    # A pending explanation rebuilds the same, baselined, input from the readings.
    x, _ = window_features(alert)
    assert np.allclose(x, [f["value"] for f in explanation["features"]], atol=1e-4)


def test_an_uncalibrated_asset_gets_no_scores_until_its_first_windows_calibrate_it(asset, client, engineer):
    version = vibration_version(asset.asset_type, baselined=True)
    ingest(asset, START_S, 120, vibration=steady(12.0))  # 10 windows of 60 s every 10 s need 150 s

    score_assets([asset.pk])

    assert not Score.objects.filter(model_version=version).exists()
    assert not AssetBaseline.objects.exists()
    client.force_login(engineer)
    page = client.get(reverse("plant:asset", args=[asset.pk])).content.decode()
    assert "Calibrating" in page and "no scores or alerts from this model" in page

    ingest(asset, START_S + 120, 480, vibration=steady(12.0))
    score_assets([asset.pk])

    row = AssetBaseline.objects.get(asset=asset)
    assert row.source == BaselineSource.AUTO and row.window_count == 10
    assert row.start == T0 and row.end == T0 + timedelta(seconds=150)
    scores = np.array(Score.objects.filter(model_version=version).values_list("score", flat=True))
    assert len(scores) > 40 and np.allclose(scores, 0.0, atol=0.1)
    assert not Alert.objects.exists()
    asset.site.timezone = (
        "Asia/Kolkata"  # the period is read on the site's clock, as the recalibration takes it
    )
    asset.site.save(update_fields=["timezone"])
    page = client.get(reverse("plant:asset", args=[asset.pk])).content.decode()
    assert "Calibrating" not in page and "scored against the operating point" in page
    assert f"of {timezone.localtime(T0, asset.site.zone):%Y-%m-%d %H:%M} – " in page


def test_versions_without_a_baseline_still_score_raw_windows_and_calibrate_nothing(asset):
    version = vibration_version(asset.asset_type, baselined=False)
    ingest(asset, START_S, 300, vibration=steady(3.0))

    score_assets([asset.pk])

    scores = np.array(Score.objects.filter(model_version=version).values_list("score", flat=True))
    assert len(scores) and np.allclose(scores, 3.0, atol=0.1)
    assert not AssetBaseline.objects.exists()


# --- training and the edge ----------------------------------------------------------------------------------


def test_training_a_baselined_model_fits_each_asset_against_its_own_operating_point(site, asset):
    other = make_asset(site, tag="p-102", asset_type=asset.asset_type)
    ingest(asset, START_S, 900, vibration=steady(2.0))
    ingest(other, START_S, 900, vibration=steady(12.0), seed=7)

    version = train_and_register(asset.asset_type, "anomaly", baseline="per_asset")

    assert version.output_spec["baseline"] == "per_asset"
    used = version.provenance["baseline"]["assets"]
    assert sorted(used) == ["p-101", "p-102"]
    assert all(item["source"] == "auto" and item["windows"] == 10 for item in used.values())
    # The model learnt deviations: its background sits around zero, not around either pump's level.
    vib = np.array(version.background)[:, NAMES.index("vibration__mean")]
    assert np.abs(vib).max() < 0.5


def test_training_refuses_an_unknown_baseline_mode(asset):
    from models_registry.services import TrainingError

    with pytest.raises(TrainingError, match="unknown baseline mode"):
        train_and_register(asset.asset_type, "anomaly", baseline="per_site")


def test_the_edge_bundle_ships_the_asset_baseline_and_the_runner_subtracts_it(asset):
    version = vibration_version(asset.asset_type, baselined=True)
    with pytest.raises(BundleExportError, match="give the asset"):
        build_bundle(version)
    with pytest.raises(BundleExportError, match="calibrate_baseline"):
        build_bundle(version, asset)
    ingest(asset, START_S, 300, vibration=steady(12.0))
    row = baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=300))

    spec = bundle_spec(version, asset)
    assert spec["baseline"] == row.vector

    t = START_S + np.arange(300, dtype=float)
    rng = np.random.default_rng(1)
    levels = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 12.0}
    series = {
        role: (t, level + rng.normal(0, 0.05, len(t)), np.zeros(len(t), np.uint16))
        for role, level in levels.items()
    }
    rows = score_series(Bundle(model=version.read_onnx_bytes(), spec=spec), series)
    scores = [r["score"] for r in rows if r["score"] is not None]
    assert scores and np.allclose(scores, 0.0, atol=0.1)
    assert not any(r["alert"] for r in rows)


# --- command ------------------------------------------------------------------------------------------------


def test_calibrate_baseline_command_stores_a_manual_baseline(asset, capsys):
    ingest(asset, START_S, 300)

    call_command(
        "calibrate_baseline",
        asset=f"{asset.site.slug}/{asset.tag}",
        start=T0.isoformat(),
        end=(T0 + timedelta(seconds=300)).isoformat(),
    )

    row = AssetBaseline.objects.get(asset=asset)
    assert row.source == BaselineSource.MANUAL and row.window_count == 25
    assert "calibrated p-101" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"asset": "nope"}, "no asset with tag or id 'nope'"),
        ({"start": "yesterday"}, "--start 'yesterday' is not an ISO date"),
        ({"start": "2026-01-05T09:00:00+00:00"}, "start must be before end"),
        ({"end": "2026-01-05T08:00:30+00:00"}, "only 0 complete feature windows"),
        ({"model": "ghost"}, "no model named 'ghost'"),
    ],
)
def test_calibrate_baseline_command_names_the_problem(asset, options, message):
    ingest(asset, START_S, 300)
    arguments = {
        "asset": asset.tag,
        "start": T0.isoformat(),
        "end": (T0 + timedelta(seconds=300)).isoformat(),
    }

    with pytest.raises(CommandError, match=message):
        call_command("calibrate_baseline", **{**arguments, **options})
    assert not AssetBaseline.objects.exists()


def test_calibration_windows_are_the_production_windows(asset):
    ingest(asset, START_S, 300)
    row = baseline.calibrate(asset, None, T0, T0 + timedelta(seconds=300))
    from plant.series import load_series

    sensors = dict(asset.sensors.values_list("pk", "role__key"))
    roles = sorted(set(sensors.values()))
    windows = build_windows(
        load_series(sensors, T0, T0 + timedelta(seconds=300)),
        roles,
        window_s=60,
        step_s=10,
        start_s=START_S,
        end_s=START_S + 300,
        sample_period_s=1.0,
    )
    assert np.allclose(row.vector, windows.X.astype(np.float64).mean(axis=0))


# --- admin --------------------------------------------------------------------------------------------------


def test_engineers_calibrate_from_the_admin_and_bad_periods_are_form_errors(client, engineer, asset):
    ingest(asset, START_S, 300)
    client.force_login(engineer)
    add = reverse("admin:models_registry_assetbaseline_add")
    form = {"asset": asset.pk, "start_0": "2026-01-05", "start_1": "08:00:00", "end_0": "2026-01-05"}

    refused = client.post(add, {**form, "end_1": "08:00:30"})
    assert refused.status_code == 200 and "only 0 complete feature windows" in refused.content.decode()
    assert not AssetBaseline.objects.exists()

    client.post(add, {**form, "end_1": "08:05:00"})
    row = AssetBaseline.objects.get()
    assert (row.source, row.window_count, row.created_by) == (BaselineSource.MANUAL, 25, engineer)

    changelist = reverse("admin:models_registry_assetbaseline_changelist")
    client.post(changelist, {"action": "recalibrate_selected", "_selected_action": [row.pk]})
    row.refresh_from_db()
    newest = AssetBaseline.objects.get(is_current=True)
    assert not row.is_current and newest.vector == pytest.approx(row.vector)
