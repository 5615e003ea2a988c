"""One training pipeline: the window labels, RUL targets, RUL through train_model, the scorer and retraining,
and training that reads labels from plant.Label without importing alerts."""

from __future__ import annotations

import ast
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from alerts.scoring import score_assets
from models_registry import retrain, training
from models_registry.choices import ModelKind, WindowLabel
from models_registry.training_data import LabelEvent, label_windows, load_training_windows
from models_registry.models import ModelVersion
from models_registry.services import promote, train_and_register
from models_registry.validation import validate_version
from plant.models import Label
from tests.conftest import T0, make_asset, make_pump_type
from tests.models_registry.conftest import make_readings

RUN_S = 3600  # each pump runs an hour ...
DEGRADES_S = 2400  # ... degrades from 40 minutes on ...
FAILS_S = 3300  # ... and fails 55 minutes in
MINUTE = 60.0
RUL_PARAMS = {
    "n_estimators": 60,
    "num_leaves": 7,
    "min_child_samples": 10,
    "rul_cap": 30.0,
    "open_rul": 10.0,
    "clear_rul": 20.0,
}


@pytest.fixture
def run_to_failure(site):
    """Three pumps run to failure: normal, then a developing fault, then a labelled failure (manual label)."""
    pump = make_pump_type()
    assets = [make_asset(site, tag=f"p-20{i}", asset_type=pump) for i in range(3)]
    for i, asset in enumerate(assets):
        make_readings(asset, T0, RUN_S, seed=i, fault_from=DEGRADES_S)
        Label.objects.create(
            asset=asset,
            start=T0 + timedelta(seconds=FAILS_S),
            end=T0 + timedelta(seconds=RUN_S),
            kind="fault",
            fault_type="bearing",
        )
    return assets


def test_window_labels_are_one_enum_shared_by_training_and_retraining():
    ends = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    assets = np.array([1, 1, 1, 1, 1, 1, 2])
    events = [
        LabelEvent(1, 1, 45.0, 52.0, True, "manual_fault"),
        LabelEvent(2, 1, 5.0, 12.0, False, "false_alarm"),
        LabelEvent(3, 1, 48.0, 60.0, False, "false_alarm"),
    ]
    plain, _ = label_windows(ends, assets, 10.0, events)
    guarded, event_of = label_windows(ends, assets, 10.0, events, guard_windows=1)
    F, N, U, G = WindowLabel.FAULT, WindowLabel.NORMAL, WindowLabel.UNLABELLED, WindowLabel.GUARD
    assert plain.tolist() == [N, N, U, U, F, F, U]  # a fault wins over a normal label; asset 2 has none
    assert guarded.tolist() == [N, N, U, G, F, F, U]  # one window either side of the fault left out
    assert event_of.tolist() == [1, 1, -1, -1, 0, 0, -1]
    assert retrain.RetrainError is training.TrainingError


def test_rul_targets_count_down_to_the_next_failure_and_censor_after_the_last():
    ends = np.array([0.0, 60.0, 120.0, 180.0, 240.0, 0.0, 60.0])
    assets = np.array([1, 1, 1, 1, 1, 2, 2])
    rul = training.rul_targets(ends, assets, {1: [(150.0, 200.0)]}, data_end_s=300.0, unit_s=60.0, cap=2.0)
    # asset 1: 2.5 and 1.5 min to go, 0.5, under way, then censored (only 1 min of data left < cap)
    # asset 2: never failed, 5 and 4 min of data left prove the capped life of 2
    assert rul[:4].tolist() == [2.5, 1.5, 0.5, 0.0]
    assert np.isnan(rul[4]) and rul[5:].tolist() == [2.0, 2.0]


def test_train_model_trains_a_rul_model_from_the_labelled_failures(run_to_failure):
    out = io.StringIO()
    call_command("train_model", "--asset-type", "pump", "--kind", "rul", stdout=out)
    version = ModelVersion.objects.get()
    assert f"registered {version} (candidate) for Pump / Remaining useful life" in out.getvalue()
    assert version.kind == ModelKind.RUL and version.output_spec["direction"] == "lower_is_worse"
    assert version.provenance["rul"] == {"unit_s": 3600.0, "failures": 3, "censored_windows": 0}
    assert validate_version(version).passed[-1] == "latency"


def test_a_rul_model_scores_through_the_live_scorer_and_opens_before_the_failure(run_to_failure):
    from alerts.models import Alert, Score

    pump = run_to_failure[0].asset_type
    version = train_and_register(pump, "rul", params=RUL_PARAMS, rul_unit_s=MINUTE)
    assert (version.open_threshold, version.clear_threshold) == (10.0, 20.0)
    promote(version, reason="first RUL model")
    score_assets([asset.pk for asset in run_to_failure])
    scores = Score.objects.filter(model_version=version, asset=run_to_failure[0])
    by_end = {(s.window_end - T0).total_seconds(): s.score for s in scores}
    assert len(by_end) > 300
    healthy = [v for t, v in by_end.items() if t < 1200]
    degraded = [v for t, v in by_end.items() if DEGRADES_S + 300 < t < FAILS_S]
    assert np.mean(healthy) > 25.0 and np.mean(degraded) < 10.0
    opened = (
        Alert.objects.filter(asset=run_to_failure[0], model_version=version).order_by("opened_at").first()
    )
    assert opened is not None and (opened.opened_at - T0).total_seconds() < FAILS_S


def test_a_rul_champion_retrains_from_labelled_failures_in_its_own_unit(run_to_failure):
    pump = run_to_failure[0].asset_type
    champion = train_and_register(pump, "rul", params=RUL_PARAMS, rul_unit_s=MINUTE)
    promote(champion, reason="first RUL model")
    version, report = retrain.retrain_from_feedback(pump, "rul")
    assert version.kind == ModelKind.RUL and version.name == champion.name and version.version == 2
    assert version.provenance["rul"]["unit_s"] == MINUTE and version.provenance["retrain_report"] == report
    assert report["labels"]["by_source"] == {"manual_fault": 3}
    held = report["holdout"]
    assert held["candidate"]["n"] == held["champion"]["n"] > 0
    assert held["candidate"]["rmse"] < 30.0 and held["champion"]["version"] == str(champion)
    # the champion's cap and limits carry over: remaining life opens below 10 minutes and clears above 20
    assert (version.open_threshold, version.clear_threshold) == (10.0, 20.0)
    assert version.provenance["params"]["rul_cap"] == 30.0
    assert validate_version(version).passed[-1] == "latency"


def test_training_windows_carry_the_labels_behind_them(run_to_failure):
    data = load_training_windows(run_to_failure[0].asset_type)
    assert len(data.events) == 3 and all(event.positive for event in data.events)
    assert data.counts()["fault"] == int(np.count_nonzero(data.labels == WindowLabel.FAULT)) > 0


@pytest.mark.parametrize("module", ["retrain", "training", "services"])
def test_training_imports_nothing_from_alerts(module):
    path = Path(__file__).resolve().parents[2] / "models_registry" / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert "alerts" not in imported
