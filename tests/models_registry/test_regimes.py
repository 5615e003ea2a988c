"""Operating-regime normalisation: fitting, the per-reading step, its JSON form, and the live scorer applying
it to the versions that carry it (and only to them)."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.models import Alert, Score
from bench import versions
from detection import regimes
from detection.regimes import RegimeSpec, RegimeSpecError
from models_registry.models import IncidentKind, ModelIncident
from alerts.scoring import score_assets
from tests.conftest import T0, make_readings
from tests.models_registry.conftest import linear_onnx
from tests.scoring.conftest import CLEAR, NAMES, OPEN

SPEC = versions.SPEC
SWITCH_S = 300  # the pump moves from 20 A to 40 A (a second operating regime) here
SECONDS = 600


def two_regime_spec() -> RegimeSpec:
    """Fitted on training readings: at 20 A vibration sits at 2 mm/s, at 40 A at 12 mm/s."""
    rng = np.random.default_rng(1)
    current = np.r_[np.full(200, 20.0), np.full(200, 40.0)]
    vibration = np.r_[2.0 + rng.normal(0, 0.05, 200), 12.0 + rng.normal(0, 0.05, 200)]
    return RegimeSpec.fit(
        {"current": current, "vibration": vibration}, keys=["current"], scales=[0.1], roles=["vibration"]
    )


def series(ts, values, quality=None):
    ts = np.asarray(ts, dtype=np.float64)
    q = np.zeros(len(ts), dtype=np.uint16) if quality is None else np.asarray(quality, dtype=np.uint16)
    return ts, np.asarray(values, dtype=np.float64), q


# --- the step itself ----------------------------------------------------------------------------------------


def test_fitting_keeps_one_row_of_moments_per_regime_seen_often_enough():
    spec = two_regime_spec()
    assert sorted(spec.table) == [(2,), (4,)]
    assert spec.table[(2,)][0][0] == pytest.approx(2.0, abs=0.02)
    assert spec.table[(4,)][0][0] == pytest.approx(12.0, abs=0.02)
    assert spec.overall[0][0] == pytest.approx(7.0, abs=0.02)
    rare = RegimeSpec.fit(
        {"k": np.r_[np.zeros(40), np.ones(5)], "x": np.arange(45.0)}, keys=["k"], scales=[1], roles=["x"]
    )
    assert list(rare.table) == [(0,)]  # 5 readings are too few for a regime of their own


def test_apply_standardises_each_reading_by_the_regime_of_the_latest_key_reading():
    spec = RegimeSpec(
        keys=("load",),
        scales=(1.0,),
        roles=("temp",),
        table={(1,): (np.array([10.0]), np.array([2.0])), (2,): (np.array([50.0]), np.array([5.0]))},
        overall=(np.array([30.0]), np.array([10.0])),
    )
    raw = {
        # The key reports every 10 s; 1.6 rounds to regime 2, 7 is a regime the table does not know.
        "load": series([10, 20, 30], [1.2, 1.6, 7.0]),
        "temp": series([5, 10, 15, 25, 35], [40.0, 12.0, 14.0, 55.0, 60.0], [0, 0, 4, 0, 0]),
        "other": series([10], [99.0]),
    }

    out = regimes.apply(spec, raw)

    # t=5: no key yet (overall); 10, 15: regime 1; 25: regime 2; 35: unknown regime (overall).
    assert out["temp"][1].tolist() == pytest.approx([1.0, 1.0, 2.0, 1.0, 3.0])
    assert out["temp"][0].tolist() == [5, 10, 15, 25, 35] and out["temp"][2].tolist() == [0, 0, 4, 0, 0]
    assert out["load"] is raw["load"] and out["other"] is raw["other"]


def test_flagged_key_readings_do_not_decide_the_regime():
    spec = two_regime_spec()
    out = regimes.apply(
        spec,
        {"current": series([1, 2], [20.0, 40.0], [0, 2]), "vibration": series([2], [2.0])},  # 2 = SPIKE
    )
    assert out["vibration"][1][0] == pytest.approx(0.0, abs=0.5)  # still the 20 A regime, not (2 - 12) / 0.05


def test_the_spec_round_trips_through_json_and_names_what_is_malformed():
    spec = two_regime_spec()
    again = RegimeSpec.from_dict(spec.to_dict())
    assert again.keys == spec.keys and again.scales == spec.scales and again.roles == spec.roles
    assert sorted(again.table) == sorted(spec.table)
    assert np.allclose(again.table[(4,)][1], spec.table[(4,)][1])

    broken = spec.to_dict()
    broken["table"][0]["std"] = [0.0]
    with pytest.raises(RegimeSpecError, match="std finite and positive"):
        RegimeSpec.from_dict(broken)
    with pytest.raises(RegimeSpecError, match="malformed"):
        RegimeSpec.from_dict({"keys": ["current"]})
    with pytest.raises(RegimeSpecError, match="cannot also be standardised"):
        RegimeSpec.from_dict({**spec.to_dict(), "roles": ["current"], "table": []} | _overall(1))
    assert regimes.from_output_spec(SPEC) is None


def _overall(n: int) -> dict:
    return {"overall": {"mean": [0.0] * n, "std": [1.0] * n}}


# --- the live scorer ----------------------------------------------------------------------------------------


def vibration_version(asset_type, *, name: str, output_spec: dict, shadow: bool = False):
    """A promoted version whose score is the window's mean vibration (of its regime-standardised readings,
    if its output_spec carries a regime step)."""
    return versions.vibration_version(
        asset_type,
        NAMES,
        name=name,
        output_spec=output_spec,
        open_threshold=OPEN,
        clear_threshold=CLEAR,
        background=np.random.default_rng(5).normal(0.0, 0.5, size=(20, len(NAMES))),
        shadow=shadow,
    )


def two_regime_readings(asset) -> None:
    """A healthy pump that switches from 20 A / 2 mm/s to 40 A / 12 mm/s at SWITCH_S."""
    rng = np.random.default_rng(2)
    before, after = np.arange(SECONDS) < SWITCH_S, np.arange(SECONDS) >= SWITCH_S
    level = {
        "current": 20.0 * before + 40.0 * after,
        "vibration": 2.0 * before + 12.0 * after + rng.normal(0, 0.05, SECONDS),
        "pressure": np.full(SECONDS, 6.0),
        "temperature": np.full(SECONDS, 50.0),
    }
    for sensor in asset.sensors.select_related("role"):
        make_readings(sensor, T0, level[sensor.role.key])


@pytest.fixture
def alert_rules(settings):
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 3


@pytest.mark.django_db
def test_a_model_with_regimes_scores_the_regime_switch_as_normal_and_a_raw_model_alerts(asset, alert_rules):
    raw = vibration_version(asset.asset_type, name="vib-raw", output_spec=SPEC, shadow=True)
    regimed = vibration_version(
        asset.asset_type, name="vib-regimes", output_spec={**SPEC, "regimes": two_regime_spec().to_dict()}
    )
    two_regime_readings(asset)

    report = score_assets([asset.pk])

    assert report.quarantined == []
    raw_scores = np.array(Score.objects.filter(model_version=raw).order_by("window_end").values_list("score"))
    regimed_scores = np.array(
        Score.objects.filter(model_version=regimed).order_by("window_end").values_list("score")
    )
    assert len(raw_scores) == len(regimed_scores) > 40
    # Versions without a regime step are unchanged: the raw vibration mean, 2 then 12 mm/s.
    assert raw_scores.min() == pytest.approx(2.0, abs=0.05) and raw_scores.max() == pytest.approx(
        12.0, abs=0.05
    )
    # With it, both operating points are z ~ 0; windows straddling the switch stay well below the threshold.
    assert np.abs(regimed_scores).max() < 1.0
    assert Alert.objects.filter(model_version=raw, is_shadow=True).count() == 1
    assert not Alert.objects.filter(model_version=regimed).exists()


@pytest.mark.django_db
def test_a_regime_step_naming_a_role_the_asset_type_lacks_quarantines_only_that_version(asset, alert_rules):
    raw = vibration_version(asset.asset_type, name="vib-raw", output_spec=SPEC)
    bad = two_regime_spec().to_dict() | {"keys": ["throttle"]}
    broken = vibration_version(
        asset.asset_type, name="vib-broken", output_spec={**SPEC, "regimes": bad}, shadow=True
    )
    two_regime_readings(asset)

    report = score_assets([asset.pk])

    assert report.quarantined == [broken.pk]
    incident = ModelIncident.objects.get(version=broken)
    assert incident.kind == IncidentKind.INPUTS and "throttle" in incident.message
    assert Score.objects.filter(model_version=raw).count() > 40
    assert not Score.objects.filter(model_version=broken).exists()


# --- the edge runner ----------------------------------------------------------------------------------------


def test_the_edge_runner_applies_the_bundles_regime_table_like_the_scorer():
    from edge import runner as edge

    roles = sorted({name.split("__")[0] for name in NAMES})
    weights = np.zeros(len(NAMES), dtype=np.float32)
    weights[NAMES.index("vibration__mean")] = 1.0
    rng = np.random.default_rng(2)
    ts = T0.timestamp() + np.arange(SECONDS, dtype=np.float64)
    after = np.arange(SECONDS) >= SWITCH_S
    level = {
        "current": 20.0 + 20.0 * after,
        "vibration": 2.0 + 10.0 * after + rng.normal(0, 0.05, SECONDS),
        "pressure": np.full(SECONDS, 6.0),
        "temperature": np.full(SECONDS, 50.0),
    }
    readings = {role: series(ts, level[role]) for role in roles}
    spec = {
        "feature_names": list(NAMES),
        "roles": roles,
        "window_s": 60,
        "step_s": 10,
        "open_threshold": OPEN,
        "clear_threshold": CLEAR,
        "open_windows": 3,
        "clear_windows": 3,
    }
    model = linear_onnx(len(NAMES), weights=weights)
    raw = edge.score_series(edge.Bundle(model=model, spec={**spec, "output_spec": SPEC}), readings)
    regimed = edge.score_series(
        edge.Bundle(
            model=model, spec={**spec, "output_spec": {**SPEC, "regimes": two_regime_spec().to_dict()}}
        ),
        readings,
    )
    assert any(row["alert"] for row in raw)  # the second operating point looks like a fault on raw readings
    assert not any(row["alert"] for row in regimed)
    assert max(abs(row["score"]) for row in regimed if row["score"] is not None) < 1.0

    broken = {**SPEC, "regimes": {**two_regime_spec().to_dict(), "keys": ["altitude"]}}
    with pytest.raises(edge.BundleError, match="altitude"):
        edge.score_series(edge.Bundle(model=model, spec={**spec, "output_spec": broken}), readings)
