"""Optional sensors end to end: an IMS-like bearing type with `vibration` (required) and `vibration_y`
(optional), one bearing with both channels and one with `vibration` only. A model is trained for the roles
the bearings it serves have, scores them through the live scorer, and every asset a version cannot serve
is named (training, train_model's output, the scorer's ScoringGap, the asset page)."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from alerts.choices import GapReason
from alerts.models import Alert, Score, ScoringGap
from alerts.scoring import score_assets
from detection.features import feature_names
from edge import runner as edge
from models_registry import comparison
from models_registry.bundle import BundleExportError, bundle_spec
from models_registry import baseline
from models_registry.models import AssetBaseline, ModelIncident, ModelVersion
from models_registry.services import TrainingError, promote, register_artifact, train_and_register
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset, AssetType, Reading, Sensor, SensorRole
from tests.models_registry.conftest import linear_onnx
from tests.scoring.conftest import START_S

pytestmark = pytest.mark.django_db

LEVELS = {"vibration": 0.08, "vibration_y": 0.07}


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


@pytest.fixture
def bearing_type() -> AssetType:
    asset_type = AssetType.objects.create(slug="ims-like", name="IMS-like bearing", window_s=60, step_s=10)
    SensorRole.objects.create(asset_type=asset_type, key="vibration", label="Vibration x", unit="g")
    SensorRole.objects.create(
        asset_type=asset_type, key="vibration_y", label="Vibration y", unit="g", required=False
    )
    return asset_type


def bearing(site, asset_type: AssetType, tag: str, roles: list[str]) -> Asset:
    asset = Asset.objects.create(site=site, asset_type=asset_type, name=tag.upper(), tag=tag)
    for role in roles:
        Sensor.objects.create(
            asset=asset,
            key=f"{site.slug}.{tag}.{role}",
            role=asset_type.roles.get(key=role),
            valid_min=0.0,
            valid_max=5.0,
        )
    return asset


@pytest.fixture
def both(site, bearing_type) -> Asset:
    return bearing(site, bearing_type, "b-1", ["vibration", "vibration_y"])


@pytest.fixture
def single(site, bearing_type) -> Asset:
    return bearing(site, bearing_type, "b-2", ["vibration"])


def ingest(
    asset: Asset, start_s: float, seconds: int, seed: int = 0, fault: tuple[float, float] | None = None
) -> None:
    """1 Hz readings of every sensor the bearing has, through ingestion (as a gateway would send them);
    with `fault` (start, end) every channel ramps up to 1 g over a minute there and back after."""
    rng = np.random.default_rng(seed + asset.pk)
    t = start_s + np.arange(seconds, dtype=np.float64)
    keys, ts, values = [], [], []
    for key, role in asset.sensors.values_list("key", "role__key"):
        keys += [key] * seconds
        ts.append(t)
        series = LEVELS[role] + 0.005 * np.sin(t / 30.0) + rng.normal(0, 0.002, seconds)
        if fault is not None:
            series += np.clip((t - fault[0]) / 60.0, 0, 1) - np.clip((t - fault[1]) / 60.0, 0, 1)
        values.append(series)
    ingest_readings(None, ParsedBatch.from_arrays(keys, np.concatenate(ts), np.concatenate(values)))


def scored(asset: Asset, version) -> int:
    return Score.objects.filter(asset=asset, model_version=version).count()


def test_a_model_trained_on_the_roles_every_bearing_has_scores_both_through_the_live_scorer(
    both, single, bearing_type
):
    for asset in (both, single):
        ingest(asset, START_S, 900)

    version = train_and_register(bearing_type, "anomaly")

    assert version.feature_spec == feature_names(["vibration"])
    assert version.provenance["roles"] == ["vibration"]
    assert version.provenance["assets"] == ["b-1", "b-2"]
    assert "excluded_assets" not in version.provenance
    promote(version, reason="test")
    report = score_assets([both.pk, single.pk])
    assert scored(both, version) > 50 and scored(single, version) == scored(both, version)
    assert report.gaps == 0 and not ScoringGap.objects.exists()


def test_a_one_channel_bearing_alone_trains_on_the_role_it_has_not_a_misleading_window_error(
    single, bearing_type
):
    # Before optional roles every role of the type was needed: this failed with "the readings of type
    # 'ims-like' span less than one 60 s window", which was not the cause.
    ingest(single, START_S, 900)

    version = train_and_register(bearing_type, "anomaly")

    assert version.feature_spec == feature_names(["vibration"])


def test_training_on_both_roles_leaves_out_the_one_channel_bearing_and_says_so(both, single, bearing_type):
    for asset in (both, single):
        ingest(asset, START_S, 900)
    out = StringIO()

    call_command(
        "train_model", "--asset-type", "ims-like", "--kind", "anomaly", "--roles", "vibration_y,vibration",
        stdout=out,
    )  # fmt: skip

    version = bearing_type.model_versions.get()
    assert version.feature_spec == feature_names(["vibration", "vibration_y"])
    assert version.provenance["assets"] == ["b-1"]
    assert version.provenance["excluded_assets"] == {"b-2": ["vibration_y"]}
    assert f"left out: b-2 has no sensor for role vibration_y, which {version} reads" in out.getvalue()
    assert "roles read: vibration, vibration_y" in out.getvalue()


def test_training_fails_naming_the_asset_and_role_when_no_bearing_has_the_chosen_roles(
    both, single, bearing_type
):
    Asset.objects.filter(pk=both.pk).update(is_active=False)
    ingest(single, START_S, 900)

    with pytest.raises(CommandError) as raised:
        call_command(
            "train_model", "--asset-type", "ims-like", "--kind", "anomaly", "--roles", "vibration,vibration_y"
        )

    assert "b-2 has no sensor for role vibration_y" in str(raised.value)
    assert "span less than one" not in str(raised.value)
    with pytest.raises(CommandError, match="has no role vibration_z; its roles are vibration, vibration_y"):
        call_command("train_model", "--asset-type", "ims-like", "--kind", "anomaly", "--roles", "vibration_z")
    with pytest.raises(CommandError, match="--roles needs at least one role key"):
        call_command("train_model", "--asset-type", "ims-like", "--kind", "anomaly", "--roles", " , ")
    with pytest.raises(CommandError, match="--roles run here only"):
        call_command(
            "train_model",
            "--asset-type",
            "ims-like",
            "--kind",
            "anomaly",
            "--roles",
            "vibration",
            "--enqueue",
        )


def test_a_bearing_without_a_required_role_is_left_out_by_default_and_named(both, single, site, bearing_type):
    y_only = bearing(site, bearing_type, "b-3", ["vibration_y"])
    for asset in (both, single, y_only):
        ingest(asset, START_S, 900)

    version = train_and_register(bearing_type, "anomaly")

    assert version.provenance["roles"] == ["vibration"]
    assert version.provenance["excluded_assets"] == {"b-3": ["vibration"]}
    Asset.objects.filter(pk__in=[both.pk, single.pk]).update(is_active=False)
    with pytest.raises(TrainingError, match="b-3 has no sensor for role vibration$"):
        train_and_register(bearing_type, "anomaly")


def test_a_version_reading_a_role_the_bearing_lacks_records_why_once_and_the_page_says_so(
    both, single, bearing_type, client, technician
):
    for asset in (both, single):
        ingest(asset, START_S, 900)
    version = train_and_register(bearing_type, "anomaly", roles=["vibration", "vibration_y"])
    promote(version, reason="test")

    first = score_assets([both.pk, single.pk])
    for asset in (both, single):
        ingest(asset, START_S + 900, 120)
    second = score_assets([both.pk, single.pk])

    assert scored(both, version) > 50 and scored(single, version) == 0
    gap = ScoringGap.objects.get()  # recorded once, not on every run
    assert (gap.asset, gap.model_version, gap.reason) == (single, version, GapReason.MISSING_ROLE)
    assert (first.gaps, second.gaps) == (1, 0)
    version.refresh_from_db()
    assert version.quarantined_at is None  # the asset's fact, not the model's fault

    client.force_login(technician)
    page = client.get(reverse("plant:asset", args=[single.pk])).content.decode()
    assert f"b-2 has no sensor for role vibration_y, which model {version} reads" in page
    other = client.get(reverse("plant:asset", args=[both.pk])).content.decode()
    assert "Missing sensors" not in other


def test_the_page_of_a_bearing_without_a_required_role_says_it_is_left_out_of_training(
    site, bearing_type, client, technician
):
    y_only = bearing(site, bearing_type, "b-3", ["vibration_y"])
    client.force_login(technician)

    page = client.get(reverse("plant:asset", args=[y_only.pk])).content.decode()

    assert "b-3 has no sensor for role vibration, which its type requires: it is left out of training" in page


def test_the_backtest_finds_the_alerts_the_live_scorer_raised_on_a_one_channel_bearing(
    single, bearing_type, settings
):
    settings.VIGIL_ALERT_OPEN_WINDOWS = settings.VIGIL_ALERT_CLEAR_WINDOWS = 3
    names = feature_names(["vibration"])
    weights = np.zeros(len(names), dtype=np.float32)
    weights[names.index("vibration__mean")] = 1.0
    version = register_artifact(
        name="bearing-vib",
        kind="anomaly",
        asset_type=bearing_type,
        onnx_bytes=linear_onnx(len(names), weights=weights),
        feature_spec=names,
        output_spec={"name": "score", "index": 0, "direction": "higher_is_anomalous"},
        open_threshold=0.5,
        clear_threshold=0.2,
        background=np.full((20, len(names)), 0.08),
    )
    promote(version, reason="test")
    ingest(single, START_S, 1500, fault=(START_S + 600, START_S + 1000))

    score_assets([single.pk])
    alerts = [
        (alert.asset_id, alert.first_window_start, alert.opened_at, alert.peak_score)
        for alert in Alert.objects.filter(model_version=version)
    ]
    episodes = comparison.backtest(version, [single], utc(START_S), utc(START_S + 1499))

    assert len(alerts) == 1
    assert [(e.asset.pk, e.start, e.opened, e.peak) for e in episodes] == alerts


def test_the_edge_runner_scores_a_one_channel_bearing_with_a_model_of_its_role(single, bearing_type):
    ingest(single, START_S, 900)
    version = train_and_register(bearing_type, "anomaly")
    version.onnx_file.open("rb")
    bundle = edge.Bundle(model=version.onnx_file.read(), spec=bundle_spec(version, single))
    rows = list(Reading.objects.filter(sensor__asset=single).order_by("ts").values_list("ts", "value"))
    series = {
        "vibration": (
            np.array([ts.timestamp() for ts, _ in rows]),
            np.array([value for _, value in rows]),
            np.zeros(len(rows), dtype=np.uint16),
        )
    }

    out = edge.score_series(bundle, series)

    assert len(out) > 50 and all(row["score"] is not None for row in out)


def test_a_bundle_for_a_bearing_lacking_a_role_the_version_reads_is_refused_naming_it(
    both, single, bearing_type, tmp_path
):
    for asset in (both, single):
        ingest(asset, START_S, 900)
    version = train_and_register(bearing_type, "anomaly", roles=["vibration", "vibration_y"])

    with pytest.raises(
        BundleExportError, match=rf"b-2 has no sensor for role vibration_y, which model {version}"
    ):
        bundle_spec(version, single)
    assert bundle_spec(version, both)["sensors"]  # the bearing with both channels exports
    out = tmp_path / "b-2.zip"
    with pytest.raises(CommandError, match="b-2 has no sensor for role vibration_y"):
        call_command(
            "export_bundle", version.name, str(version.version), "--asset", single.tag, "--output", out
        )
    assert not out.exists()


def test_a_one_channel_bearing_is_calibrated_and_scored_by_a_per_asset_version_of_its_role(
    both, single, bearing_type, settings
):
    settings.VIGIL_BASELINE_WINDOWS = 10
    for asset in (both, single):
        ingest(asset, START_S, 900)
    version = train_and_register(bearing_type, "anomaly", baseline="per_asset_robust")
    promote(version, reason="test")

    score_assets([both.pk, single.pk])

    # Auto-calibrated from its first windows, as the two-channel bearing is (it was "calibrating" for ever).
    assert AssetBaseline.objects.filter(asset=single, is_current=True).exists()
    assert scored(single, version) > 0 and scored(both, version) > 0
    # The asset page's recalibration (default: every feature of the roles it has) and the command.
    [row] = baseline.recalibrate(single, utc(START_S), utc(START_S + 900)).baselines
    assert row.feature_names == feature_names(["vibration"]) and row.window_count == 85
    out = StringIO()
    call_command(
        "calibrate_baseline", "--asset", single.tag, "--start", utc(START_S).isoformat(),
        "--end", utc(START_S + 900).isoformat(), stdout=out,
    )  # fmt: skip
    assert "calibrated b-2: 6 features from 85 windows" in out.getvalue()


def test_calibrating_a_bearing_for_a_role_it_lacks_names_the_role_not_a_window_count(
    both, single, bearing_type
):
    for asset in (both, single):
        ingest(asset, START_S, 900)
    version = train_and_register(bearing_type, "anomaly", roles=["vibration", "vibration_y"])

    with pytest.raises(CommandError, match="b-2 has no sensor for role vibration_y, so it has no windows"):
        call_command(
            "calibrate_baseline", "--asset", single.tag, "--start", utc(START_S).isoformat(),
            "--end", utc(START_S + 900).isoformat(), "--model", version.name,
        )  # fmt: skip
    assert not AssetBaseline.objects.filter(asset=single).exists()


def test_a_version_reading_a_role_the_type_lacks_is_quarantined_not_blamed_on_the_assets(
    both, single, bearing_type
):
    for asset in (both, single):
        ingest(asset, START_S, 300)
    names = feature_names(["vibration_z"])
    alien = register_artifact(
        name="bearing-z",
        kind="anomaly",
        asset_type=bearing_type,
        onnx_bytes=linear_onnx(len(names)),
        feature_spec=names,
        output_spec={"name": "score"},
        open_threshold=10.0,
        clear_threshold=5.0,
        background=np.zeros((5, len(names))),
    )
    ModelVersion.objects.filter(pk=alien.pk).update(status="shadow")

    report = score_assets([both.pk, single.pk])

    assert report.quarantined == [alien.pk]
    assert ModelIncident.objects.get(version=alien).kind == "inputs"
    assert not ScoringGap.objects.exists()
