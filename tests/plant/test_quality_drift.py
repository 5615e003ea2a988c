"""The DRIFT rule (plant.quality.find_drift / drift_scores) on synthetic correlated signals."""

from __future__ import annotations

import numpy as np

from plant.quality import DRIFT_RECENT_BINS, bin_medians, drift_scores, find_drift

N_BINS = 120  # one hour of 30 s bins


def _plant(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four signals driven by one operating point (load with steps and a slow wave), each with its own noise,
    and the time axis in bins."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_BINS, dtype=np.float64)
    load = 0.7 + 0.2 * np.sign(np.sin(t / 9.0)) + 0.05 * np.sin(t / 23.0)
    gains = np.array([10.0, 4.0, 50.0, 2.0])
    offsets = np.array([20.0, 1.0, 5.0, 0.5])
    noise = rng.normal(scale=0.01, size=(N_BINS, 4)) * gains
    return offsets + load[:, None] * gains + noise, t


def _ramp(t: np.ndarray, size: float) -> np.ndarray:
    """A slow additive drift over the last DRIFT_RECENT_BINS bins, reaching `size`."""
    start = N_BINS - DRIFT_RECENT_BINS
    return np.clip((t - start + 1) / DRIFT_RECENT_BINS, 0.0, 1.0) * size


def test_a_slow_additive_drift_on_one_of_several_correlated_signals_is_flagged():
    bins, t = _plant()
    bins[:, 2] += _ramp(t, 6.0)  # 12 % of the signal's level, 12 noise sigmas at the end
    assert find_drift(bins).tolist() == [False, False, True, False]


def test_the_same_drift_of_the_operating_point_moving_every_signal_together_is_not_flagged():
    bins, t = _plant()
    gains = np.array([10.0, 4.0, 50.0, 2.0])
    bins += _ramp(t, 0.04)[:, None] * gains  # the load itself drifts: a real process change
    assert not find_drift(bins).any()


def test_the_same_additive_drift_on_every_signal_is_not_blamed_on_one_sensor():
    bins, t = _plant()
    bins += _ramp(t, 6.0)[:, None]
    assert not find_drift(bins).any()


def test_stationary_noisy_sensors_are_never_flagged():
    hits = 0
    for seed in range(50):
        bins, _ = _plant(seed)
        bins[:, 1] += np.random.default_rng(1000 + seed).normal(scale=0.3, size=N_BINS)  # a noisy one
        hits += int(find_drift(bins).any())
    assert hits == 0


def test_a_lone_sensor_is_judged_against_its_own_long_run_level():
    rng = np.random.default_rng(3)
    t = np.arange(N_BINS, dtype=np.float64)
    bins = (50.0 + rng.normal(scale=0.1, size=N_BINS))[:, None]
    assert not find_drift(bins).any()
    bins[:, 0] += _ramp(t, 2.0)  # 20 noise sigmas
    assert find_drift(bins).tolist() == [True]


def test_too_little_history_gives_no_verdict():
    bins, _ = _plant()
    z, level = drift_scores(bins[:20])
    assert np.isnan(z).all() and np.isnan(level).all() and not find_drift(bins[:20]).any()


def test_bin_medians_leave_out_spikes_and_report_drift_flags():
    ts = np.arange(1.0, 61.0)
    values = np.full(60, 5.0)
    values[3] = 500.0
    quality = np.zeros(60, dtype=np.uint16)
    quality[3] = 2  # SPIKE
    quality[40] = 16  # DRIFT
    med, drift, spread = bin_medians([(ts, values, quality)], 0.0, 60.0, 30.0)
    assert med[:, 0].tolist() == [5.0, 5.0]
    assert drift[:, 0].tolist() == [False, True]
    assert spread[:, 0].tolist() == [0.0, 0.0]
