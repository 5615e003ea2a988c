"""The "per_asset_pooled" baseline as a product mode (issue 13): a version trained with it stores each
asset's own robust calibration and the one applied (the own scale pooled with the fleet's own scales,
detection.baseline.pooled, the rule the evaluations use); the scorer, the edge bundle and the thresholds
treat it as a robust calibration; an asset calibrating later is pooled against the stored own scales and
changes nobody else's calibration; recalibration (button and command) works for it as for a robust one."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from alerts.models import Score
from alerts.scoring import score_assets
from demo.seed import PUMP_ROLES
from detection.baseline import Calibration, calibrate, calibration_span, pool, pooled
from detection.pipeline import Pipeline
from models_registry import baseline, cache
from models_registry.bundle import bundle_spec
from models_registry.evaluation import fleet
from models_registry.management.commands.train_model import Command as TrainModel
from models_registry.models import AssetBaseline, AssetThreshold, BaselineMode
from models_registry.services import promote, train_and_register
from models_registry.training_data import asset_windows_between
from plant.builders import make_role_sensors
from plant.choices import LabelKind
from plant.models import Asset, Label, Reading
from plant.simulator import PlantSimulator, SimAsset
from tests.models_registry.plant_builders import make_simulated_plant, sim_assets
from tests.models_registry.test_end_to_end import ORIGIN, at, ingest_simulated
from tests.models_registry.test_regimes import vibration_version
from tests.models_registry.test_robust_calibration import SPEC, moment
from tests.scoring.conftest import NAMES, START_S, ingest

pytestmark = pytest.mark.django_db

POOLED = {**SPEC, "baseline": "per_asset_pooled"}
WINDOW_S, STEP_S = 60.0, 10.0
TRAINING = ("p-101", "p-102", "p-103")
VIB_STD = "vibration__std"


def own_of(row: AssetBaseline) -> tuple[Calibration, float, np.ndarray]:
    """The asset's own robust calibration and span recomputed from the windows its row was made from, and
    the windows' ends (independently of the stored own_scale)."""
    ends, X, usable = baseline.calibration_windows(row.asset, list(row.feature_names), row.start, row.end)
    return calibrate(X[usable]), calibration_span(ends[usable], WINDOW_S), ends[usable]


@pytest.fixture
def pooled_fleet(site, settings, tmp_path):
    """Four simulated pumps of one type (noise 1, 6, 1 and 3); p-103 lost its readings for 150 s, so its
    first calibration windows span longer; a per_asset_pooled version trained on p-101..p-103 only."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VIGIL_BASELINE_WINDOWS = 40
    asset_type, assets = make_simulated_plant(site)
    new = Asset.objects.create(site=site, asset_type=asset_type, name="P-104", tag="p-104")
    roles = {role.key: role for role in asset_type.roles.all()}
    make_role_sensors(site, [new], roles, PUMP_ROLES, sample_period_s=1.0)
    assets["p-104"] = new
    sims = [
        replace(sim, size=1.0, noise=noise)
        for sim, noise in zip(sim_assets(site), (1.0, 6.0, 1.0), strict=True)
    ]
    sims.append(SimAsset("p-104", {key: f"{site.slug}.p-104.{key}" for key, *_ in PUMP_ROLES}, 1.0, 3.0))
    ingest_simulated(PlantSimulator(sims, seed=5, origin=ORIGIN), 0, 1800)
    Reading.objects.filter(sensor__asset=assets["p-103"], ts__gte=at(150), ts__lt=at(300)).delete()
    version = train_and_register(
        asset_type, "anomaly", baseline="per_asset_pooled", asset_ids=[assets[tag].pk for tag in TRAINING]
    )
    return assets, version


def test_training_stores_each_assets_own_calibration_and_the_pool_of_the_fleets(pooled_fleet):
    assets, version = pooled_fleet
    assert version.output_spec["baseline"] == "per_asset_pooled"
    rows = {
        row.asset.tag: row for row in AssetBaseline.objects.filter(mode=BaselineMode.POOLED, is_current=True)
    }
    assert set(rows) == set(TRAINING)  # p-104 was not in training: not calibrated yet

    owns, spans = {}, {}
    for tag, row in rows.items():
        owns[tag], spans[tag], _ = own_of(row)
        assert owns[tag].count == row.window_count == 40
        assert np.array_equal(row.own_scale, owns[tag].scale) and row.own_span_s == spans[tag]
    assert spans["p-103"] > spans["p-101"] == spans["p-102"]  # the gap: a longer calibration
    expected = pool(owns, spans, WINDOW_S, STEP_S)  # the training fleet pooled together
    for tag, row in rows.items():
        assert np.array_equal(row.scale, expected[tag].scale)
        assert np.array_equal(row.vector, owns[tag].location)
    k = list(rows["p-102"].feature_names).index(VIB_STD)
    noisy = rows["p-102"]
    assert noisy.own_scale[k] > max(rows[tag].own_scale[k] for tag in ("p-101", "p-103"))
    assert noisy.scale[k] < noisy.own_scale[k]  # the noisy pump's short calibration pulled to the fleet's
    thresholds = AssetThreshold.objects.filter(model_version=version, is_current=True)
    assert {(t.asset.tag, t.calibration_id) for t in thresholds} == {(tag, rows[tag].pk) for tag in TRAINING}


def test_the_scorer_scores_as_the_evaluations_pooled_path(pooled_fleet):
    assets, version = pooled_fleet
    promote(version, reason="test")
    score_assets([assets[tag].pk for tag in TRAINING])

    # The evaluation's path (models_registry.evaluation.fleet) over the same windows and calibration rows.
    roles = list(version.asset_type.roles.order_by("key").values_list("key", flat=True))
    rows = {
        row.asset.tag: row for row in AssetBaseline.objects.filter(mode=BaselineMode.POOLED, is_current=True)
    }
    windows, calibration = {}, {}
    for tag in TRAINING:
        w = asset_windows_between(assets[tag], roles, at(0), at(1800))
        windows[tag] = w
        calibration[tag] = np.isin(w.ends, own_of(rows[tag])[2])
    runs = [fleet.FleetRun(tag, "pumps", {}, (0.0, 0.0), (0.0, 0.0)) for tag in TRAINING]
    prepared = fleet.Prepared(runs, windows, calibration, list(windows["p-101"].names))
    protocol = fleet.Protocol(WINDOW_S, STEP_S, open_windows=3, clear_windows=3, attribution_s=0.0)
    spec = fleet.model_spec("per_asset_pooled")
    pipeline = Pipeline.from_spec(list(version.feature_spec), spec)
    steps = fleet.baselines(prepared, "per_asset_pooled", pipeline.columns(prepared.names), protocol)
    for tag in TRAINING:
        assert np.array_equal(steps[tag].scale, baseline.as_step(rows[tag], list(version.feature_spec)).scale)
    scored = pipeline.run(cache.loaded(version), windows, baselines=steps)

    compared = 0
    for tag in TRAINING:
        stored = {
            row.window_end.timestamp(): row.score
            for row in Score.objects.filter(model_version=version, asset=assets[tag])
        }
        for end, score in zip(scored[tag].ends, scored[tag].scores, strict=True):
            if float(end) in stored:
                assert stored[float(end)] == pytest.approx(float(score), rel=1e-6, abs=1e-9)
                compared += 1
    assert compared > 30


def test_an_asset_calibrating_later_is_pooled_with_the_stored_own_scales_and_changes_no_one_else(
    pooled_fleet,
):
    assets, version = pooled_fleet
    promote(version, reason="test")
    before = {
        row.pk: (row.scale, row.own_scale, row.is_current)
        for row in AssetBaseline.objects.filter(asset__tag__in=TRAINING)
    }
    thresholds_before = set(
        AssetThreshold.objects.filter(is_current=True).values_list("pk", "open_threshold")
    )

    score_assets([assets["p-104"].pk])  # the scorer auto-calibrates it

    row = AssetBaseline.objects.get(asset=assets["p-104"], mode=BaselineMode.POOLED, is_current=True)
    own, span, _ = own_of(row)
    fleet_rows = AssetBaseline.objects.filter(asset__tag__in=TRAINING, is_current=True)
    fleet_owns = [(Calibration(r.vector, r.own_scale, r.window_count), r.own_span_s) for r in fleet_rows]
    expected = pooled(own, span, fleet_owns, WINDOW_S, STEP_S)
    assert np.array_equal(row.own_scale, own.scale) and np.array_equal(row.scale, expected.scale)
    # not pooled with the others' pooled scales: that would give another scale
    fleet_applied = [(Calibration(r.vector, r.scale, r.window_count), r.own_span_s) for r in fleet_rows]
    assert not np.array_equal(row.scale, pooled(own, span, fleet_applied, WINDOW_S, STEP_S).scale)
    after = {
        row.pk: (row.scale, row.own_scale, row.is_current)
        for row in AssetBaseline.objects.filter(asset__tag__in=TRAINING)
    }
    assert after == before
    new_thresholds = AssetThreshold.objects.filter(is_current=True).exclude(asset=assets["p-104"])
    assert set(new_thresholds.values_list("pk", "open_threshold")) == thresholds_before
    assert AssetThreshold.objects.filter(
        asset=assets["p-104"], model_version=version, calibration=row
    ).exists()
    assert Score.objects.filter(asset=assets["p-104"], model_version=version).exists()

    # An engineer's recalibration re-pools that asset only, against the others' own scales (p-104's too).
    p101 = assets["p-101"]
    [again] = baseline.recalibrate(p101, at(900), at(1500)).baselines
    own, span, _ = own_of(again)
    others = AssetBaseline.objects.filter(mode=BaselineMode.POOLED, is_current=True).exclude(asset=p101)
    owns = [(Calibration(r.vector, r.own_scale, r.window_count), r.own_span_s) for r in others]
    assert len(owns) == 3
    assert np.array_equal(again.scale, pooled(own, span, owns, WINDOW_S, STEP_S).scale)


def test_the_edge_bundle_carries_the_pooled_calibration(pooled_fleet):
    assets, version = pooled_fleet
    row = AssetBaseline.objects.get(asset=assets["p-102"], mode=BaselineMode.POOLED, is_current=True)

    spec = bundle_spec(version, assets["p-102"])

    shipped = Calibration.from_json(spec["baseline"])
    names = list(version.feature_spec)
    assert np.array_equal(shipped.scale, baseline.as_step(row, names).scale)
    assert not np.array_equal(
        shipped.scale, np.asarray([row.own_scale[row.feature_names.index(n)] for n in names])
    )
    threshold = AssetThreshold.objects.get(model_version=version, asset=assets["p-102"], is_current=True)
    assert (spec["open_threshold"], spec["clear_threshold"]) == (
        threshold.open_threshold,
        threshold.clear_threshold,
    )


# --- recalibration of one asset -----------------------------------------------------------------------------


def test_the_recalibrate_button_calibrates_a_pooled_asset_and_refuses_a_fault_period(client, engineer, asset):
    version = vibration_version(asset.asset_type, name="vib-pooled", output_spec=POOLED)
    ingest(asset, START_S, 600)
    client.force_login(engineer)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    local = [moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]
    period = {"calibrate-start": local[0], "calibrate-end": local[1]}

    assert client.post(url, period).status_code == 302

    row = AssetBaseline.objects.get(asset=asset, is_current=True)
    assert row.mode == BaselineMode.POOLED and row.robust and row.created_by == engineer
    assert row.window_count == 55 and row.own_span_s == 600.0
    # Alone in its fleet, the asset is its own centre: the scale applied is its own (to rounding).
    assert len(row.scale) == len(row.feature_names)
    np.testing.assert_allclose(row.scale, row.own_scale, rtol=1e-12)
    assert AssetThreshold.objects.get(model_version=version, is_current=True).calibration == row
    page = client.get(asset.get_absolute_url()).content.decode()
    assert f"robust calibration (its scale pooled with the {asset.asset_type} fleet" in page

    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(100), end=moment(160))
    refused = client.post(url, period)
    assert refused.status_code == 400 and "fault labelled" in refused.content.decode()
    assert AssetBaseline.objects.filter(asset=asset).count() == 1


def test_calibrate_baseline_command_calibrates_a_pooled_asset_and_refuses_a_fault_period(asset, capsys):
    version = vibration_version(asset.asset_type, name="vib-pooled", output_spec=POOLED)
    ingest(asset, START_S, 600)
    args = ["--asset", asset.tag, "--start", moment(0).isoformat(), "--end", moment(600).isoformat()]

    call_command("calibrate_baseline", *args)

    out = capsys.readouterr().out
    assert "per_asset_pooled" in out and f"for {version}: open 10" in out
    row = AssetBaseline.objects.get(asset=asset, is_current=True)
    assert row.mode == BaselineMode.POOLED and row.vector_for(NAMES[:1]) == row.vector[:1]
    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(100), end=moment(160))
    with pytest.raises(CommandError, match="fault labelled"):
        call_command("calibrate_baseline", *args)


def test_train_model_lists_the_pooled_mode_and_refuses_an_unknown_one(site):
    asset_type, _ = make_simulated_plant(site)
    parser = TrainModel().create_parser("manage.py", "train_model")
    help_text = " ".join(parser.format_help().split())
    assert "per_asset_pooled" in help_text and "{per_asset,per_asset_robust,per_asset_pooled}" in help_text
    with pytest.raises(CommandError, match="invalid choice: 'pooled'"):
        call_command(
            "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "pooled"
        )
    with pytest.raises(CommandError, match="--peers needs --baseline per_asset_robust or per_asset_pooled"):
        call_command("train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--peers", "median")
