"""detection.baseline.pool: an asset's calibration scale shrunk toward its fleet's in proportion to how
little its calibration can tell (the "per_asset_pooled" mode's calibration, product and evaluations)."""

from __future__ import annotations

import numpy as np
import pytest

from detection.baseline import (
    ABS_FLOOR,
    MAD_TO_SIGMA,
    MEAN_AD_TO_SIGMA,
    MODES,
    POOL_HORIZON_S,
    ROBUST_MODES,
    POOL_PRIOR_WINDOWS,
    REL_FLOOR,
    BaselineError,
    Calibration,
    calibrate,
    calibration_span,
    independent_windows,
    pool,
    pool_weight,
    pooled,
)

DAY = POOL_HORIZON_S
RNG = np.random.default_rng(11)


def _cal(scale: float, count: int, location: float = 0.0, d: int = 2) -> Calibration:
    return Calibration(np.full(d, location), np.full(d, scale), count)


def test_independent_windows_count_overlap_as_one_and_a_short_span_as_its_share_of_a_day():
    assert independent_windows(600, DAY, 60.0, 10.0) == pytest.approx(100.0)
    assert independent_windows(600, DAY / 4, 60.0, 10.0) == pytest.approx(25.0)
    assert independent_windows(600, 10 * DAY, 60.0, 10.0) == pytest.approx(100.0)  # a day or more: full
    assert independent_windows(600, DAY, 5.0, 10.0) == pytest.approx(600.0)  # gaps: no overlap
    assert pool_weight(POOL_PRIOR_WINDOWS) == pytest.approx(0.5)
    assert pool_weight(0.0) == 0.0


def test_a_short_calibration_with_a_too_small_scale_is_pulled_to_the_fleet_and_keeps_its_location():
    fleet = {f"long{i}": _cal(1.0 + 0.1 * i, 100_000) for i in range(5)}
    fleet["short"] = _cal(0.05, 12, location=7.0)  # 12 windows, 2 minutes: a calm stretch
    spans = {key: 10 * DAY for key in fleet} | {"short": 120.0}
    pooled = pool(fleet, spans, 60.0, 10.0)
    centre = np.exp(np.median(np.log([c.scale[0] for c in fleet.values()])))
    assert pooled["short"].scale == pytest.approx(np.full(2, centre), rel=1e-3)
    assert np.array_equal(pooled["short"].location, fleet["short"].location)
    assert pooled["short"].count == 12


def test_a_long_calibration_keeps_its_own_scale():
    fleet = {f"a{i}": _cal(1.0, 50) for i in range(4)} | {"long": _cal(0.05, 100_000)}
    spans = {key: 600.0 for key in fleet} | {"long": 10 * DAY}
    pooled = pool(fleet, spans, 60.0, 10.0)
    w = pool_weight(100_000 / 6)
    assert pooled["long"].scale == pytest.approx(np.exp(w * np.log(0.05) + (1 - w) * np.log(1.0)))
    assert pooled["long"].scale[0] == pytest.approx(0.05, rel=0.03)


def test_quiet_and_noisy_assets_with_a_days_calibration_stay_apart():
    # Three sizes as in the simulator fleet (noise 1x, 3x, 8x), each calibrated on a day of 60 s / 10 s
    # windows (8640, 1440 independent, weight 0.91): the pooled scales keep most of the 8x spread.
    fleet = {name: _cal(s, 8640) for name, s in (("quiet", 1.0), ("medium", 3.0), ("noisy", 8.0))}
    pooled = pool(fleet, dict.fromkeys(fleet, DAY), 60.0, 10.0)
    ratio = pooled["noisy"].scale[0] / pooled["quiet"].scale[0]
    assert ratio == pytest.approx(8.0 ** pool_weight(1440.0))
    assert ratio > 6.5
    assert pooled["quiet"].scale[0] < pooled["medium"].scale[0] < pooled["noisy"].scale[0]


def test_the_floors_hold_after_pooling():
    fleet = {"tiny": _cal(1e-9, 100_000, location=0.0), "level": _cal(1e-9, 10, location=1000.0)}
    pooled = pool(fleet, {"tiny": 10 * DAY, "level": 60.0}, 60.0, 10.0)
    assert pooled["level"].scale[0] == pytest.approx(REL_FLOOR * 1000.0)
    assert pooled["tiny"].scale[0] >= ABS_FLOOR


def test_pooling_refuses_an_empty_fleet_different_features_and_a_bad_window():
    with pytest.raises(BaselineError, match="at least one"):
        pool({}, {}, 60.0, 10.0)
    with pytest.raises(BaselineError, match="same features"):
        pool({"a": _cal(1.0, 10, d=2), "b": _cal(1.0, 10, d=3)}, {"a": 1.0, "b": 1.0}, 60.0, 10.0)
    with pytest.raises(BaselineError, match="positive"):
        pool({"a": _cal(1.0, 10)}, {"a": 1.0}, 60.0, 0.0)


def test_the_robust_calibration_and_the_product_modes_are_unchanged():
    # Bit-identity of "per_asset_robust": calibrate is the documented formula, operation for operation.
    X = RNG.normal(3.0, 2.0, size=(50, 4))
    X[:40, 3] = 5.0  # MAD 0: the mean-absolute-deviation fallback
    X[:, 2] = 0.0  # constant at 0: the absolute floor
    location = np.median(X, axis=0)
    deviation = np.abs(X - location)
    scale = MAD_TO_SIGMA * np.median(deviation, axis=0)
    scale = np.where(scale > 0, scale, MEAN_AD_TO_SIGMA * deviation.mean(axis=0))
    scale = np.maximum(scale, np.maximum(REL_FLOOR * np.abs(location), ABS_FLOOR))
    c = calibrate(X)
    assert np.array_equal(c.location, location) and np.array_equal(c.scale, scale)
    assert MODES == ("per_asset", "per_asset_robust", "per_asset_pooled")
    assert ROBUST_MODES == ("per_asset_robust", "per_asset_pooled")  # both applied as a Calibration


def test_pooled_is_pool_of_the_asset_with_its_fleet_and_an_asset_alone_keeps_its_own_scale():
    fleet = {"a": _cal(1.0, 40), "b": _cal(3.0, 400), "c": _cal(0.5, 4000)}
    spans = {"a": DAY / 8, "b": DAY, "c": 2 * DAY}
    together = pool(fleet, spans, 60.0, 10.0)
    for key, own in fleet.items():
        others = [(fleet[k], spans[k]) for k in fleet if k != key]
        one = pooled(own, spans[key], others, 60.0, 10.0)
        assert np.array_equal(one.scale, together[key].scale)  # bit for bit: the same rule
        assert np.array_equal(one.location, own.location) and one.count == own.count
    alone = pooled(fleet["a"], spans["a"], [], 60.0, 10.0)
    np.testing.assert_allclose(alone.scale, fleet["a"].scale, rtol=1e-12)  # its own centre


def test_calibration_span_is_first_window_start_to_last_window_end():
    assert calibration_span(np.array([120.0, 60.0, 300.0]), 60.0) == 300.0
    assert calibration_span(np.array([]), 60.0) == 0.0
