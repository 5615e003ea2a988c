"""``train_model --open-rule``: the threshold rule is a product option; "episodes" reads the asset type's
window length and step (its false-alert budget is stated in days) and the per-asset thresholds use it too."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from detection.thresholds import ThresholdRule
from models_registry.models import AssetThreshold, ModelVersion
from models_registry.services import window_params
from plant.simulator import PlantSimulator
from tests.models_registry.plant_builders import TAGS, make_simulated_plant, sim_assets
from tests.models_registry.test_end_to_end import ORIGIN, ingest_simulated

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def few_windows(settings):
    settings.VIGIL_BASELINE_WINDOWS = 10


def test_train_model_sets_the_episodes_rule_with_the_asset_types_window_step(site, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    asset_type, _ = make_simulated_plant(site)
    ingest_simulated(PlantSimulator(sim_assets(site), seed=4, origin=ORIGIN), 0, 1800)

    call_command(
        "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "per_asset_robust",
        "--open-rule", "episodes",
    )  # fmt: skip

    version = ModelVersion.objects.get(asset_type=asset_type)
    params = version.provenance["params"]
    assert params["open_rule"] == "episodes"
    assert (params["window_s"], params["step_s"]) == (float(asset_type.window_s), float(asset_type.step_s))
    rule = ThresholdRule.from_params(params)
    assert rule.alert_budget_days == 30.0
    assert version.clear_threshold <= version.open_threshold
    assert AssetThreshold.objects.filter(model_version=version).count() == len(TAGS)


def test_the_open_rule_is_for_anomaly_models_and_one_of_the_rules(site):
    asset_type, _ = make_simulated_plant(site)
    with pytest.raises(CommandError, match="--open-rule applies to anomaly models only"):
        call_command("train_model", "--asset-type", asset_type.slug, "--kind", "rul", "--open-rule", "tail")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command(
            "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--open-rule", "max"
        )


def test_window_params_adds_the_window_step_only_for_the_episodes_rule(site):
    asset_type, _ = make_simulated_plant(site)
    assert window_params(None, asset_type) is None
    assert window_params({"open_rule": "tail"}, asset_type) == {"open_rule": "tail"}
    given = window_params({"open_rule": "episodes", "step_s": 2.0}, asset_type)
    assert given == {"open_rule": "episodes", "window_s": float(asset_type.window_s), "step_s": 2.0}
