"""Robust per-asset calibration (detection.baseline.calibrate / Calibration / apply) and the Pipeline's
per_asset_robust step, beside the unchanged mean-vector path."""

from __future__ import annotations

import numpy as np
import pytest

from detection import runtime
from detection.baseline import (
    ABS_FLOOR,
    MEAN_AD_TO_SIGMA,
    MIN_WINDOWS,
    REL_FLOOR,
    BaselineError,
    Calibration,
    apply,
    baseline_mode,
    calibrate,
    mean_vector,
)
from detection.features import Windows
from detection.pipeline import Pipeline, PipelineError
from models_registry.training import train_anomaly

RNG = np.random.default_rng(3)


def test_a_constant_feature_gets_a_scale_floored_by_its_level_or_an_absolute_epsilon():
    X = np.column_stack([np.full(50, 200.0), np.zeros(50), RNG.normal(0.0, 1.0, 50)])
    calibration = calibrate(X)
    assert calibration.scale[0] == pytest.approx(REL_FLOOR * 200.0)
    assert calibration.scale[1] == ABS_FLOOR
    later = apply(np.array([[201.0, 0.5, 0.0]]), calibration)
    assert np.isfinite(later).all()
    assert later[0, 0] == pytest.approx(1.0 / (REL_FLOOR * 200.0), rel=1e-6)


def test_a_feature_identical_in_most_windows_falls_back_to_the_mean_absolute_deviation():
    column = np.r_[np.full(45, 3.0), np.full(5, 4.0)]  # MAD is 0, yet the feature does move
    calibration = calibrate(column[:, None])
    assert calibration.location[0] == 3.0
    assert calibration.scale[0] == pytest.approx(MEAN_AD_TO_SIGMA * 5 / 50)


def test_outliers_in_the_calibration_period_move_neither_location_nor_scale():
    clean = RNG.normal(10.0, 2.0, size=(400, 2))
    dirty = clean.copy()
    dirty[::10] += 500.0  # a tenth of the period is a bad stretch
    robust_clean, robust_dirty = calibrate(clean), calibrate(dirty)
    assert np.allclose(robust_dirty.location, robust_clean.location, atol=0.5)
    assert np.allclose(robust_dirty.scale, robust_clean.scale, rtol=0.2)
    assert np.allclose(robust_clean.scale, 2.0, rtol=0.15)
    # the mean vector, by contrast, is carried off by the same stretch
    assert (mean_vector(dirty)[0] - mean_vector(clean)[0] > 40).all()


def test_incomplete_and_flagged_windows_never_calibrate():
    X = np.vstack([np.full((6, 2), 1.0), [[np.nan, 1.0]], [[1000.0, 1000.0]]])
    flagged = np.zeros((8, 3), dtype=np.uint16)
    flagged[7, 2] = 4  # one role of the last window carried a quality bit
    calibration = calibrate(X, flagged)
    assert calibration.count == 6
    assert calibration.location.tolist() == [1.0, 1.0]


def test_too_few_usable_windows_are_refused_with_both_counts():
    X = np.ones((MIN_WINDOWS + 1, 2))
    flagged = np.zeros(MIN_WINDOWS + 1, dtype=bool)
    flagged[:2] = True
    with pytest.raises(
        BaselineError, match=rf"only {MIN_WINDOWS - 1} of {MIN_WINDOWS + 1} .* at least {MIN_WINDOWS}"
    ):
        calibrate(X, flagged)


def test_a_calibration_round_trips_through_json_lists_and_rejects_a_broken_document():
    calibration = calibrate(RNG.normal(size=(30, 4)))
    document = calibration.to_json()
    assert all(isinstance(v, list) for v in (document["location"], document["scale"]))
    again = Calibration.from_json(document)
    assert np.array_equal(again.location, calibration.location) and again.count == 30
    with pytest.raises(BaselineError, match="finite and positive"):
        Calibration.from_json({**document, "scale": [0.0] * 4})
    with pytest.raises(BaselineError, match="not a stored calibration"):
        Calibration.from_json({"location": [1.0]})


def test_the_spec_names_the_mode_and_an_unknown_mode_is_not_scored_raw():
    assert baseline_mode({}) is None
    assert baseline_mode({"baseline": "per_asset"}) == "per_asset"
    assert Pipeline.from_spec(["a"], {"baseline": "per_asset_robust"}).robust
    with pytest.raises(PipelineError, match="unknown baseline mode 'per_pump'"):
        Pipeline.from_spec(["a"], {"baseline": "per_pump"})


def _windows(X: np.ndarray) -> Windows:
    n, d = X.shape
    return Windows(
        ends=np.arange(n, dtype=np.float64) * 10.0,
        X=X.astype(np.float32),
        names=[f"r{i}__mean" for i in range(d)],
        coverage=np.ones((n, d)),
        flagged=np.zeros((n, d), dtype=np.uint16),
        roles=[f"r{i}" for i in range(d)],
    )


def _model(names: list[str], spec: dict) -> runtime.LoadedModel:
    trained = train_anomaly(RNG.normal(size=(200, len(names))), names)
    return runtime.LoadedModel(
        0,
        runtime.sha256(trained.onnx_bytes),
        trained.onnx_bytes,
        runtime.load_session(trained.onnx_bytes),
        names,
        {**trained.output_spec, **spec},
        trained.background,
    )


def test_the_mean_vector_path_is_unchanged_and_the_robust_path_standardises():
    X = RNG.normal(5.0, 3.0, size=(40, 3))
    windows = _windows(X)
    names = windows.names
    vector = np.array([5.0, 4.0, 6.0])
    old = Pipeline.from_spec(names, {"baseline": "per_asset"})
    scored = old.run(_model(names, {"baseline": "per_asset"}), {"a": windows}, baselines={"a": vector})["a"]
    assert np.array_equal(scored.X, (windows.X.astype(np.float64) - vector).astype(np.float32))
    assert np.array_equal(scored.baseline, vector)

    calibration = calibrate(windows.X)
    robust = Pipeline.from_spec(names, {"baseline": "per_asset_robust"})
    model = _model(names, {"baseline": "per_asset_robust"})
    scored = robust.run(model, {"a": windows}, baselines={"a": calibration})["a"]
    expected = ((windows.X.astype(np.float64) - calibration.location) / calibration.scale).astype(np.float32)
    assert np.array_equal(scored.X, expected)
    assert scored.baseline is calibration
    with pytest.raises(PipelineError, match="needs a calibration"):
        robust.run(model, {"a": windows}, baselines={"a": vector})
    with pytest.raises(PipelineError, match="needs a mean vector"):
        old.run(model, {"a": windows}, baselines={"a": calibration})
    with pytest.raises(PipelineError, match="has 2 features, the version reads 3"):
        robust.run(model, {"a": windows}, baselines={"a": calibration.subset([0, 1])})
