"""The peer-relative step in the product: trained by train_and_register / ``train_model --peers``, used by
the live scorer over the assets of a type on one site, explained against the same peers, refused by the
edge export (a gateway has no peers) and by training without a robust baseline."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.management import CommandError, call_command

from alerts.models import Alert
from alerts.scoring import score_assets
from alerts.services.lifecycle import window_features
from models_registry import baseline
from models_registry.bundle import BundleExportError, bundle_spec
from models_registry.models import ModelVersion
from models_registry.services import TrainingError, promote, shadow, train_and_register
from plant.simulator import Fault, FaultSchedule, PlantSimulator
from tests.models_registry.plant_builders import TAGS, make_simulated_plant, sim_assets
from tests.models_registry.test_end_to_end import HOUR, ORIGIN, at, ingest_simulated

pytestmark = pytest.mark.django_db

COMMON_AT, SINGLE_AT, FAULT_S = HOUR + 600, HOUR + 2700, 900.0


@pytest.fixture(autouse=True)
def few_windows(settings, tmp_path):
    settings.VIGIL_BASELINE_WINDOWS = 10
    settings.MEDIA_ROOT = tmp_path / "media"


def _score_all(assets) -> None:
    ids = [asset.pk for asset in assets.values()]
    for _ in range(10):  # a backlog is scored chunk by chunk
        if not score_assets(ids).still_due:
            return


def _alert_seconds(alerts, start_s: float, end_s: float) -> float:
    """Seconds of [start_s, end_s] covered by the alerts' anomalous spans (first window start to last seen)."""
    covered = 0.0
    for alert in alerts:
        lo = max((alert.first_window_start - at(0)).total_seconds(), start_s)
        hi = min((alert.last_seen_at - at(0)).total_seconds(), end_s)
        covered += max(hi - lo, 0.0)
    return covered


def test_a_fault_every_pump_shows_at_once_is_no_alert_but_one_pumps_fault_is(site):
    """Three pumps of one type on one site (the peer group) on one header (shared duty): the same bearing
    wear on all three at once (a change they share) keeps the plain robust version in alert on every pump
    and the peer version hardly at all; later the same wear on p-102 alone alerts the peer version on
    p-102, and its explanation is rebuilt against the same peers."""
    asset_type, assets = make_simulated_plant(site)
    faults = [Fault("bearing_wear", tag, None, COMMON_AT, FAULT_S, 0.6) for tag in TAGS]
    faults.append(Fault("bearing_wear", "p-102", None, SINGLE_AT, FAULT_S, 0.6))
    # One header: the pumps (of different sizes) share their duty changes.
    pumps = [replace(pump, duty="header-1") for pump in sim_assets(site)]
    sim = PlantSimulator(pumps, seed=5, faults=FaultSchedule(faults), origin=ORIGIN)
    ingest_simulated(sim, 0, HOUR)

    # The models read the pumps' vibration, an amplitude that scales with the shared speed (the
    # proportional common mode the peer step removes; a temperature over each pump's own ambient is not).
    plain = train_and_register(asset_type, "anomaly", baseline="per_asset_robust", roles=["vibration"])
    version = train_and_register(
        asset_type, "anomaly", baseline="per_asset_robust", peers="median", roles=["vibration"]
    )
    assert version.output_spec["peers"] == "median" and "peers" not in plain.output_spec
    assert version.provenance["baseline"]["peers"] == "median"
    promote(plain, reason="test")
    shadow(version, reason="test")
    ingest_simulated(sim, HOUR, SINGLE_AT + FAULT_S + 300)
    _score_all(assets)

    plateau = (COMMON_AT + 0.6 * FAULT_S, COMMON_AT + FAULT_S)  # the shared wear at its full size
    span = plateau[1] - plateau[0]
    for asset in assets.values():
        on_its_own = Alert.objects.filter(model_version=plain, asset=asset)
        against_peers = Alert.objects.filter(model_version=version, asset=asset)
        assert _alert_seconds(on_its_own, *plateau) >= 0.8 * span
        # Against its peers, no more than its false alarms of normal operation: after a 1-h calibration of
        # 10-s windows p-102's peer version is in alert ~40 % of the normal stretch before the wear too
        # (the plain version ~17 %).
        assert _alert_seconds(against_peers, *plateau) <= 0.4 * span

    alerts = Alert.objects.filter(model_version=version)
    single = alerts.filter(
        asset=assets["p-102"], opened_at__gte=at(SINGLE_AT), opened_at__lte=at(SINGLE_AT + FAULT_S + 120)
    )
    assert single.exists()
    assert (
        _alert_seconds(alerts.exclude(asset=assets["p-102"]), SINGLE_AT, SINGLE_AT + FAULT_S) <= 0.2 * FAULT_S
    )
    # The explanation's input is the scorer's: the window rebuilt against the same peers.
    x, _ = window_features(single.first())
    assert x.shape == (len(version.feature_spec),)
    assert float(x.max()) > 3.0  # far out of its own scale against the peers

    with pytest.raises(BundleExportError, match="runs on the server only"):
        bundle_spec(version, assets["p-102"])


def test_the_peer_step_needs_a_robust_baseline_in_training_and_in_the_command(site):
    asset_type, _ = make_simulated_plant(site)
    ingest_simulated(PlantSimulator(sim_assets(site), seed=4, origin=ORIGIN), 0, 1800)
    with pytest.raises(TrainingError, match="needs baseline per_asset_robust"):
        train_and_register(asset_type, "anomaly", baseline="per_asset", peers="median")
    with pytest.raises(TrainingError, match="unknown peer step 'mean'"):
        train_and_register(asset_type, "anomaly", baseline="per_asset_robust", peers="mean")
    with pytest.raises(CommandError, match="--peers needs --baseline per_asset_robust"):
        call_command("train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--peers", "median")

    call_command(
        "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "per_asset_robust",
        "--peers", "median",
    )  # fmt: skip
    assert ModelVersion.objects.get(asset_type=asset_type).output_spec["peers"] == "median"
    # The pooled calibration is a robust one: the peer step takes it too.
    call_command(
        "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "per_asset_pooled",
        "--peers", "median", "--name", "pooled-peers",
    )  # fmt: skip
    pooled = ModelVersion.objects.get(name="pooled-peers")
    assert (pooled.output_spec["baseline"], pooled.output_spec["peers"]) == ("per_asset_pooled", "median")
    assert pooled.asset_thresholds.count() == 3


def test_recalibrating_an_asset_sets_its_thresholds_from_its_windows_against_its_peers(
    site, client, engineer
):
    asset_type, assets = make_simulated_plant(site)
    pumps = [replace(pump, duty="header-1") for pump in sim_assets(site)]
    ingest_simulated(PlantSimulator(pumps, seed=6, origin=ORIGIN), 0, HOUR)
    version = train_and_register(
        asset_type, "anomaly", baseline="per_asset_robust", peers="median", roles=["vibration"]
    )
    promote(version, reason="test")

    done = baseline.recalibrate(assets["p-101"], at(1800), at(HOUR))

    (made,) = [row for row in done.thresholds if row.model_version_id == version.pk]
    client.force_login(engineer)
    page = client.get(assets["p-101"].get_absolute_url()).content.decode()
    assert 'class="peer-step"' in page and "median change of its peers" in page
    # Scored through the peer step: the peers' windows of the period were found and used.
    assert made.window_count > 100
    assert made.open_threshold > 0
    # With every peer gone the period has no window the version can score: the version's thresholds.
    for tag in ("p-102", "p-103"):
        assets[tag].is_active = False
        assets[tag].save(update_fields=["is_active"])
    alone = baseline.recalibrate(assets["p-101"], at(1800), at(HOUR))
    (row,) = [r for r in alone.thresholds if r.model_version_id == version.pk]
    assert row.window_count == 0 and row.source == "version"
