"""Is a calibration period settled (detection.baseline.level_trends)? Synthetic series with known changes:
a warm-up is reported with its levels and only for its sensor; steady noise (also serially correlated), a
change of spread only and a constant sensor are not; too few independent windows say nothing."""

from __future__ import annotations

import numpy as np
import pytest

from detection.baseline import level_trends, mann_kendall_p

WINDOW_S, STEP_S = 60.0, 10.0


def windows(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window ends every STEP_S and the level feature of each (one column per sensor)."""
    levels = np.asarray(levels, dtype=np.float64)
    levels = levels[:, None] if levels.ndim == 1 else levels
    return WINDOW_S + STEP_S * np.arange(len(levels)), levels


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + rng.normal()
    return out


def test_a_warm_up_is_reported_with_its_first_and_last_levels():
    rng = np.random.default_rng(1)
    ends, X = windows(np.linspace(31.4, 31.9, 200) + rng.normal(0, 0.1, 200))
    [trend] = level_trends(ends, X, ["flow__mean"], WINDOW_S)
    assert trend.role == "flow" and trend.first == pytest.approx(31.48, abs=0.05)
    assert trend.last == pytest.approx(31.82, abs=0.05) and trend.p_value < 1e-4 and trend.sigmas > 1


def test_only_the_sensor_that_warms_up_is_reported():
    rng = np.random.default_rng(2)
    flow = np.linspace(10.0, 12.0, 200) + rng.normal(0, 0.3, 200)
    steady = 50.0 + rng.normal(0, 0.3, 200)
    ends, X = windows(np.c_[flow, steady])
    names = ["flow__mean", "temperature__mean"]
    assert [t.role for t in level_trends(ends, X, names, WINDOW_S)] == ["flow"]


@pytest.mark.parametrize("phi", [0.0, 0.8])
def test_steady_noise_rarely_warns_even_when_serially_correlated(phi):
    """About one false warning per hundred calibrations of a steady asset (TREND_ALPHA over its sensors,
    the serial correlation allowed for); at most 8 in 200 runs of a four-sensor asset whose level wanders
    (AR(1) 0.8 from one independent window to the next)."""
    warned = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        noise = [50.0 + ar1(rng, 200, phi) for _ in range(4)]
        ends = WINDOW_S * (1 + np.arange(200))  # every window independent of the last
        X = np.column_stack(noise)
        warned += bool(level_trends(ends, X, [f"s{k}__mean" for k in range(4)], WINDOW_S))
    assert warned <= 8


def test_a_change_of_spread_or_a_constant_sensor_is_no_trend():
    rng = np.random.default_rng(3)
    spread = 5.0 + np.r_[rng.normal(0, 0.1, 100), rng.normal(0, 1.0, 100)]
    ends, X = windows(np.c_[spread, np.full(200, 7.0)])
    assert level_trends(ends, X, ["vibration__mean", "pressure__mean"], WINDOW_S) == []


def test_only_level_features_are_tested_and_short_periods_say_nothing():
    ends, X = windows(np.linspace(0.0, 10.0, 200))
    assert level_trends(ends, X, ["flow__slope"], WINDOW_S) == []  # not a level
    short_ends, short_X = windows(np.linspace(0.0, 10.0, 12))  # two independent windows
    assert level_trends(short_ends, short_X, ["flow__mean"], WINDOW_S) == []


def test_mann_kendall_p_of_a_monotone_and_a_shuffled_series():
    rising = np.arange(30, dtype=float)
    assert mann_kendall_p(rising) < 1e-6 and mann_kendall_p(rising[::-1]) < 1e-6
    assert mann_kendall_p(np.random.default_rng(0).permutation(rising)) > 0.01
    assert mann_kendall_p(np.ones(10)) == 1.0 and mann_kendall_p(np.array([1.0, 2.0])) == 1.0
