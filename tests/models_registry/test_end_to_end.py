"""Issue 3 end to end: data in through the ingest path, train, register, validate, promote / roll back,
score with the champion's ONNX through onnxruntime, explain faithfully, export a bundle, run it at the edge.

Two sources: the plant simulator (3 pumps, 2 h of normal operation, then injected bearing wear and
cavitation) and SKAB from ``settings.VIGIL_DATA_DIR`` (train on the anomaly-free run). The SKAB tests fail,
never skip, when the data is missing: CI sets VIGIL_DATA_DIR to ../shared/data.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
import pytest

from detection import runtime
from detection.explain import ADDITIVITY_TOLERANCE, explain, top_role
from detection.features import EXCLUDED_QUALITY, build_windows
from edge import runner as edge
from models_registry.bundle import build_bundle
from models_registry.choices import ModelStatus
from models_registry.training_data import LabelEvent, label_windows
from plant.series import load_series
from models_registry.services import (
    ModelRejected,
    current_champion,
    promote,
    rollback,
    train_and_register,
)
from plant.datasets import skab
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Asset, AssetType, Label, Reading
from plant.simulator import Fault, FaultSchedule, PlantSimulator
from plant.simulator_labels import record_fault_label
from tests.models_registry.conftest import corrupt
from tests.models_registry.plant_builders import TAGS, make_simulated_plant, sim_assets

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=dt_timezone.utc)
ORIGIN = T0.timestamp()
HOUR = 3600.0
# Fault period: 15 quiet minutes after the 2 h of training data, then bearing wear on p-101 and
# cavitation on p-102 for 15 minutes (p-103 stays healthy throughout).
FAULT_AT = 2 * HOUR + 15 * 60
FAULT_S = 15 * 60


# --- helpers ------------------------------------------------------------------------------------------------


def simulator(site, faults: list[Fault]) -> PlantSimulator:
    return PlantSimulator(sim_assets(site), seed=11, faults=FaultSchedule(faults), origin=ORIGIN)


def ingest_simulated(sim: PlantSimulator, start_s: float, end_s: float, chunk_s: float = 1800.0) -> int:
    """Readings of [origin + start_s, origin + end_s) through ingest_readings, the API's own code path."""
    accepted = 0
    for t0 in np.arange(start_s, end_s, chunk_s):
        keys, ts, values = sim.step(ORIGIN + t0, ORIGIN + min(t0 + chunk_s, end_s))
        result = ingest_readings(None, ParsedBatch.from_arrays(list(keys), ts, values))
        assert not result.rejected, result.rejected[:3]
        accepted += result.accepted
    return accepted


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(ORIGIN + seconds, tz=dt_timezone.utc)


def asset_windows(asset: Asset, start: datetime, end: datetime):
    """Feature windows of one asset from the database, exactly as training and the scorer build them."""
    asset_type = asset.asset_type
    roles = list(asset_type.roles.order_by("key").values_list("key", flat=True))
    sensors = dict(asset.sensors.values_list("pk", "role__key"))
    series = load_series(sensors, start, end)
    windows = build_windows(
        series,
        roles,
        window_s=asset_type.window_s,
        step_s=asset_type.step_s,
        start_s=start.timestamp(),
        end_s=end.timestamp(),
    )
    return windows, series


def champion_scores(version, X: np.ndarray) -> np.ndarray:
    return runtime.run_batch(runtime.reference_session(version.read_onnx_bytes()), X, version.output_spec)


def explain_window(version, x: np.ndarray) -> dict:
    result = explain(
        version.read_onnx_bytes(),
        x,
        np.asarray(version.background),
        version.feature_spec,
        version.output_spec,
    )
    assert result["additivity_error"] <= ADDITIVITY_TOLERANCE, result["additivity_error"]
    assert [f["name"] for f in result["features"]] == version.feature_spec
    return result


def run_edge(bundle_path, csv_path) -> list[dict]:
    out = io.StringIO()
    assert edge.main([str(bundle_path), str(csv_path)], stdout=out) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- simulator ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_champion_trained_on_simulated_normal_data_catches_injected_faults_and_explains_them(
    site, engineer, tmp_path
):
    asset_type, assets = make_simulated_plant(site)
    sim = simulator(
        site,
        [
            Fault("bearing_wear", "p-101", None, FAULT_AT, FAULT_S),
            Fault("cavitation", "p-102", None, FAULT_AT, FAULT_S),
        ],
    )
    assert ingest_simulated(sim, 0, FAULT_AT + FAULT_S) == 3 * 5 * int(FAULT_AT + FAULT_S)

    # Train on the 2 h of normal operation only (no labels at all), then validate and promote.
    version = train_and_register(asset_type, "anomaly", start=at(0), end=at(2 * HOUR), actor=engineer)
    assert version.status == ModelStatus.CANDIDATE and version.kind == "anomaly"
    assert version.provenance["assets"] == list(TAGS)
    assert version.provenance["label_counts"]["windows"]["fault"] == 0
    assert version.metrics["false_alarm_rate_holdout"] <= 0.02
    report = promote(version, actor=engineer, reason="first model")
    assert report.passed == ["checksum", "load", "signature", "reference_batch", "latency"]
    assert current_champion(asset_type, "anomaly") == version

    fault_start = ORIGIN + FAULT_AT
    fault_scores = []
    for tag in ("p-101", "p-102"):
        windows, _ = asset_windows(assets[tag], at(2 * HOUR), at(FAULT_AT + FAULT_S))
        scores = champion_scores(version, windows.X)
        before = windows.ends <= fault_start
        during = windows.ends > fault_start + 120  # two minutes in: the fault has begun to show
        assert before.sum() >= 80 and during.sum() >= 70
        assert scores[before].max() < version.open_threshold, f"{tag}: false alarm before the fault"
        assert np.mean(scores[during] > version.open_threshold) >= 0.9, f"{tag}: fault not caught"
        fault_scores.append(scores[during])

        # The explanation of the worst fault window is additive and blames the physically expected sensor.
        worst = int(np.flatnonzero(during)[np.argmax(scores[during])])
        explanation = explain_window(version, windows.X[worst])
        assert explanation["method"] == "exact_shapley_quadratic"
        assert abs(explanation["output"] - scores[worst]) <= 1e-6 * max(1.0, abs(scores[worst]))
        expected = {"p-101": {"vibration"}, "p-102": {"pressure", "vibration"}}[tag]
        assert top_role(explanation) in expected, (tag, top_role(explanation))

    # The healthy pump scores far below the faulty ones over the same period. It is not silent: a duty
    # change larger than most of the 2 h of training data raises vibration std/slope past the threshold
    # for a few windows (5.7 % of them with this seed), so the bound is loose on purpose.
    windows, _ = asset_windows(assets["p-103"], at(2 * HOUR), at(FAULT_AT + FAULT_S))
    healthy = champion_scores(version, windows.X)
    assert np.mean(healthy > version.open_threshold) <= 0.1
    assert healthy.max() < min(np.median(scores) for scores in fault_scores)

    # Export p-101's bundle: the Django-free edge runner gives the same scores on the same readings.
    bundle_path = tmp_path / "p-101.zip"
    bundle_path.write_bytes(build_bundle(version, assets["p-101"]))
    windows, series = asset_windows(assets["p-101"], at(2 * HOUR), at(FAULT_AT + FAULT_S))
    keys = dict(assets["p-101"].sensors.values_list("role__key", "key"))
    lines = ["sensor,ts,value"]
    for role, (ts, values, _quality) in series.items():
        lines += [f"{keys[role]},{t!r},{v!r}" for t, v in zip(ts.tolist(), values.tolist(), strict=True)]
    csv_path = tmp_path / "p-101.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    rows = run_edge(bundle_path, csv_path)
    edge_scores = {
        datetime.fromisoformat(row["window_end"]).timestamp(): row["score"] for row in rows if row["score"]
    }
    # The edge has no quality flags, so compare the windows in which the server excluded no reading.
    clean = (windows.flagged & EXCLUDED_QUALITY).sum(axis=1) == 0
    server = dict(zip(windows.ends.tolist(), champion_scores(version, windows.X), strict=True))
    common = [end for end, ok in zip(windows.ends.tolist(), clean, strict=True) if ok and end in edge_scores]
    assert len(edge_scores) >= len(windows.ends) - 1 and len(common) >= 0.8 * len(windows.ends)
    assert np.allclose([edge_scores[e] for e in common], [server[e] for e in common], rtol=1e-6, atol=1e-6)
    assert any(row["alert"] for row in rows) and not rows[0]["alert"]


@pytest.mark.django_db
def test_a_corrupted_candidate_is_refused_and_a_rollback_restores_the_previous_champion(site, engineer):
    asset_type, _ = make_simulated_plant(site)
    ingest_simulated(simulator(site, []), 0, HOUR)
    first = train_and_register(asset_type, "anomaly", actor=engineer)
    promote(first, actor=engineer, reason="baseline")

    broken = train_and_register(asset_type, "anomaly", params={"variance": 0.9}, actor=engineer)
    corrupt(broken)
    with pytest.raises(ModelRejected) as refused:
        promote(broken, actor=engineer, reason="should not pass")
    assert refused.value.check == "checksum"
    assert current_champion(asset_type, "anomaly") == first

    second = train_and_register(asset_type, "anomaly", params={"variance": 0.9}, actor=engineer)
    promote(second, actor=engineer, reason="tighter model")
    assert current_champion(asset_type, "anomaly") == second
    assert rollback(asset_type, "anomaly", actor=engineer, reason="too many alerts") == first
    assert current_champion(asset_type, "anomaly") == first
    moves = list(second.history.order_by("at", "id").values_list("from_status", "to_status"))
    assert moves == [("", "candidate"), ("candidate", "champion"), ("champion", "retired")]


@pytest.mark.django_db
def test_a_failure_classifier_learns_from_simulator_fault_labels_and_its_explanations_are_additive(
    site, engineer
):
    asset_type, assets = make_simulated_plant(site)
    faults = [
        Fault("bearing_wear", "p-101", None, 0.5 * HOUR, 0.5 * HOUR),
        Fault("cavitation", "p-102", None, 1.0 * HOUR, 0.25 * HOUR),
        Fault("bearing_wear", "p-103", None, 1.5 * HOUR, 0.3 * HOUR),
        Fault("cavitation", "p-101", None, 1.75 * HOUR, 0.2 * HOUR),
    ]
    sim = simulator(site, faults)
    ingest_simulated(sim, 0, 2 * HOUR)
    for occurrence in sim.occurrences(ORIGIN, ORIGIN + 2 * HOUR):
        record_fault_label(assets[occurrence.fault.asset_tag], occurrence, ORIGIN + 2 * HOUR)
    assert Label.objects.filter(source="simulator").count() == len(faults)

    version = train_and_register(asset_type, "failure_classifier", actor=engineer)
    metrics = version.metrics
    assert metrics["label_counts"]["total"]["fault"] > 100
    assert metrics["recall"] >= 0.9 and metrics["precision"] >= 0.9, metrics
    promote(version, actor=engineer, reason="first classifier")

    windows, _ = asset_windows(assets["p-101"], at(0), at(2 * HOUR))
    asset = assets["p-101"]
    labels, _ = label_windows(
        windows.ends,
        np.full(len(windows.ends), asset.pk),
        asset_type.window_s,
        [
            LabelEvent(
                label.pk, asset.pk, label.start.timestamp(), label.end.timestamp(), label.kind == "fault", ""
            )
            for label in asset.labels.all()
        ],
    )
    scores = champion_scores(version, windows.X)
    assert np.mean(scores[labels == 1] > version.open_threshold) >= 0.9
    assert np.mean(scores[labels != 1] > version.open_threshold) <= 0.05
    rng = np.random.default_rng(0)
    picked = np.r_[rng.choice(np.flatnonzero(labels == 1), 4), rng.choice(np.flatnonzero(labels != 1), 2)]
    for index in picked:
        explanation = explain_window(version, windows.X[index])
        assert explanation["method"] == "tree_shap_onnx"
        assert abs(explanation["output"] - scores[index]) <= 1e-5 * max(1.0, abs(scores[index]))


# --- SKAB ---------------------------------------------------------------------------------------------------

# A small slice for speed: the anomaly-free run (9,405 rows, ~2.6 h) and two valve1 experiments (valve
# closed at the pump inlet, ~19 min each).
SKAB_SLICE = ["anomaly-free", "valve1/0", "valve1/1"]


def skab_or_fail() -> None:
    try:
        skab.data_dir()
    except skab.DatasetMissing as exc:
        pytest.fail(f"{exc}. These tests need the SKAB files; CI sets VIGIL_DATA_DIR=../shared/data.")


@pytest.fixture
def skab_loaded(db):
    skab_or_fail()
    return {result.ref: result for result in skab.load_skab(SKAB_SLICE)}


def test_the_skab_loader_creates_the_testbed_its_assets_readings_and_labels_once(skab_loaded):
    asset_type = AssetType.objects.get(slug="skab-testbed")
    units = dict(asset_type.roles.values_list("key", "unit"))
    assert units == {
        "accel1": "g",
        "accel2": "g",
        "current": "A",
        "pressure": "bar",
        "temperature": "°C",
        "thermocouple": "°C",
        "voltage": "V",
        "flow": "l/min",
    }
    assert sorted(Asset.objects.filter(asset_type=asset_type).values_list("tag", flat=True)) == [
        "anomaly-free",
        "valve1-0",
        "valve1-1",
    ]
    for ref, result in skab_loaded.items():
        run = skab.read_run(skab.list_files([ref])[0].path)
        assert result.accepted == 8 * len(run) and result.rejected == 0
        fault_labels = result.asset.labels.filter(kind="fault", source="dataset")
        if run.anomaly is None:
            assert not fault_labels.exists()
            continue
        (label,) = fault_labels
        assert label.fault_type == "valve_closed_inlet"
        inside = (run.ts >= label.start.timestamp()) & (run.ts <= label.end.timestamp())
        assert np.array_equal(inside, run.anomaly == 1)

    readings, labels = Reading.objects.count(), Label.objects.count()
    again = skab.load_skab(SKAB_SLICE)
    assert all(r.accepted == 0 and r.labels_created == 0 and r.labels_deleted == 0 for r in again)
    assert (Reading.objects.count(), Label.objects.count()) == (readings, labels)


def test_an_anomaly_model_trained_on_the_skab_anomaly_free_run_is_promoted_and_explained_faithfully(
    skab_loaded, engineer
):
    asset_type = AssetType.objects.get(slug="skab-testbed")
    free = skab_loaded["anomaly-free"].asset
    (normal,) = free.labels.all()
    version = train_and_register(asset_type, "anomaly", start=normal.start, end=normal.end, actor=engineer)
    assert version.provenance["assets"] == ["anomaly-free"]
    assert version.n_features == 8 * 6
    free.site.members.add(engineer)  # promoting needs membership of every site with SKAB test-bed assets
    promote(version, actor=engineer, reason="SKAB baseline")
    assert current_champion(asset_type, "anomaly") == version and version.latency_ms > 0

    # Held-out data of the same run: the trainer fits on the first 75 % of the run in time order and
    # never sees the rest, which must stay (almost) quiet, while the valve1 faults score far above it.
    windows, _ = asset_windows(free, normal.start, normal.end)
    scores = champion_scores(version, windows.X)
    held_out = scores[-version.metrics["n_holdout"] :]
    assert np.mean(held_out > version.open_threshold) <= 0.02

    fault_windows = []
    for ref in ("valve1/0", "valve1/1"):
        asset = skab_loaded[ref].asset
        (fault,) = asset.labels.filter(kind="fault")
        valve, _ = asset_windows(asset, fault.start + timedelta(seconds=60), fault.end)
        fault_windows.append(valve.X)
    fault_scores = champion_scores(version, np.vstack(fault_windows))
    assert np.mean(fault_scores > version.open_threshold) >= 0.95
    assert np.quantile(fault_scores, 0.05) > 10 * np.quantile(held_out, 0.95)

    # Several explanations, of fault and of normal windows alike, are exact and additive to 1e-4.
    for x in [*np.vstack(fault_windows)[::15][:4], *windows.X[-version.metrics["n_holdout"] :][::60][:3]]:
        explanation = explain_window(version, x)
        assert explanation["method"] == "exact_shapley_quadratic"
        assert {f["sensor"] for f in explanation["features"]} == {role.key for role in skab.ROLES}


def test_the_skab_loader_fails_with_a_clear_message_when_the_data_directory_is_missing(db, tmp_path):
    with pytest.raises(skab.DatasetMissing, match="SKAB data not found at .*skab/data"):
        skab.load_skab(["valve1/0"], base=tmp_path)
    skab_or_fail()
    with pytest.raises(skab.DatasetMissing, match="no SKAB file matches 'valve9/1'"):
        skab.list_files(["valve9/1"])
