"""Feature windows: exact statistics, window alignment, gaps, flagged readings and empty input."""

from __future__ import annotations


import numpy as np
import pytest

from detection import features
from detection.features import STATS, build_windows, feature_names, role_of
from plant.choices import QualityFlag

T0 = 1_767_600_000.0  # an epoch second that is a multiple of 10 (2026-01-05)


def regular(values: np.ndarray, *, start: float = T0, period: float = 1.0, quality=None):
    ts = start + period * np.arange(len(values), dtype=np.float64)
    q = np.zeros(len(values), dtype=np.uint16) if quality is None else np.asarray(quality, dtype=np.uint16)
    return ts, np.asarray(values, dtype=np.float64), q


def reference_stats(ts: np.ndarray, values: np.ndarray) -> list[float]:
    slope = np.polyfit(ts - ts[0], values, 1)[0] if len(values) > 1 else 0.0
    diff_rms = np.sqrt(np.mean(np.diff(values) ** 2)) if len(values) > 1 else 0.0
    return [values.mean(), values.std(), values.min(), values.max(), slope, diff_rms]


def test_feature_names_are_role_major_with_every_stat():
    names = feature_names(["vibration", "current"])
    assert names[: len(STATS)] == [f"vibration__{s}" for s in STATS]
    assert len(names) == 2 * len(STATS) and len(STATS) >= 6
    assert role_of("vibration__diff_rms") == "vibration"


def test_the_excluded_quality_bits_match_plant_choices():
    assert features.EXCLUDED_QUALITY == QualityFlag.OUT_OF_RANGE | QualityFlag.SPIKE | QualityFlag.SOURCE_BAD


def test_it_computes_exact_statistics_of_a_known_series():
    rng = np.random.default_rng(3)
    n = 600
    values = 5.0 + 0.01 * np.arange(n) + np.sin(np.arange(n) / 7.0) + 0.1 * rng.normal(size=n)
    ts, v, q = regular(values)
    w = build_windows({"vibration": (ts, v, q)}, ["vibration"], window_s=60, step_s=10)

    assert w.X.dtype == np.float32 and w.X.shape == (len(w.ends), len(STATS))
    for i, end in enumerate(w.ends):
        inside = (ts > end - 60) & (ts <= end)
        assert inside.sum() == 60
        np.testing.assert_allclose(w.X[i], reference_stats(ts[inside], v[inside]), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(w.coverage, 1.0)
    assert not w.flagged.any()


def test_statistics_stay_exact_with_epoch_timestamps_large_offsets_and_many_chunks():
    rng = np.random.default_rng(4)
    n = 20_000  # several thousand windows: many cumulative-sum chunks
    values = 10_000.0 + 0.001 * rng.normal(size=n) + 1e-4 * np.arange(n)
    ts, v, q = regular(values)
    w = build_windows({"level": (ts, v, q)}, ["level"], window_s=60, step_s=10)
    for i in (0, len(w.ends) // 2, len(w.ends) - 1):
        inside = (ts > w.ends[i] - 60) & (ts <= w.ends[i])
        expected = reference_stats(ts[inside], v[inside])
        np.testing.assert_allclose(w.X[i, [1, 4, 5]], np.array(expected)[[1, 4, 5]], rtol=1e-4)
        np.testing.assert_allclose(w.X[i, 0], expected[0], rtol=1e-7)


def test_window_ends_are_step_multiples_and_windows_are_half_open_on_the_left():
    ts, v, q = regular(np.arange(200.0), start=T0 + 3)  # first reading 3 s after a step boundary
    w = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10)

    assert np.all(w.ends % 10 == 0)
    assert w.ends[0] == T0 + 70  # the first end with a whole window after the first reading
    assert w.ends[-1] <= ts[-1]
    first = w.X[0]
    # (T0+10, T0+70]: readings 8..67 -> min 8, max 67 (the reading at exactly T0+10 is excluded)
    assert first[STATS.index("min")] == 8 and first[STATS.index("max")] == 67
    assert first[STATS.index("slope")] == pytest.approx(1.0)


def test_flagged_readings_are_left_out_of_stats_but_reported():
    values = np.full(120, 2.0)
    quality = np.zeros(120, dtype=np.uint16)
    values[100], quality[100] = 500.0, QualityFlag.SPIKE
    values[101], quality[101] = -40.0, QualityFlag.OUT_OF_RANGE
    quality[102] = QualityFlag.STUCK  # stays in the stats (value is normal), but shows in flagged
    ts, v, q = regular(values, quality=quality)
    w = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10)

    last = -1
    assert w.X[last, STATS.index("max")] == 2.0 and w.X[last, STATS.index("min")] == 2.0
    assert w.X[last, STATS.index("std")] == 0.0
    assert w.flagged[last, 0] == QualityFlag.SPIKE | QualityFlag.OUT_OF_RANGE | QualityFlag.STUCK
    assert w.flagged[0, 0] == 0
    assert w.coverage[last, 0] == pytest.approx(58 / 60)


def test_non_finite_values_are_ignored_like_flagged_ones():
    values = np.full(120, 1.0)
    values[[90, 91]] = [np.nan, np.inf]
    ts, v, q = regular(values)
    w = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10)
    assert np.all(np.isfinite(w.X))
    assert w.X[-1, STATS.index("max")] == 1.0


def test_a_window_with_too_little_coverage_is_dropped_not_imputed():
    ts, v, q = regular(np.random.default_rng(1).normal(size=400))
    gap = (ts >= T0 + 150) & (ts < T0 + 200)  # 50 s without data
    w = build_windows({"a": (ts[~gap], v[~gap], q[~gap])}, ["a"], window_s=60, step_s=10, min_coverage=0.5)

    assert np.all(w.coverage >= 0.5)
    assert len(w.dropped_ends) > 0
    # A window that lies almost entirely in the gap cannot be kept.
    assert T0 + 200 in w.dropped_ends and T0 + 200 not in w.ends
    assert len(w.ends) + len(w.dropped_ends) == len(np.arange(T0 + 60, T0 + 400, 10))


def test_a_window_is_dropped_when_any_role_lacks_coverage():
    ts, v, q = regular(np.ones(300))
    half = ts < T0 + 150
    w = build_windows(
        {"a": (ts, v, q), "b": (ts[half], v[half], q[half])}, ["a", "b"], window_s=60, step_s=10
    )
    assert w.ends.max() <= T0 + 180  # b stops at T0+149: windows need >= 30 of b's 60 samples
    assert w.X.shape[1] == 2 * len(STATS)


def test_roles_with_different_sample_periods_are_aligned_on_the_same_ends():
    ts1, v1, q1 = regular(np.arange(300.0))
    ts2, v2, q2 = regular(np.arange(150.0), period=2.0)
    w = build_windows(
        {"fast": (ts1, v1, q1), "slow": (ts2, v2, q2)}, ["fast", "slow"], window_s=60, step_s=10
    )
    np.testing.assert_allclose(w.coverage, 1.0)
    assert w.X[0, STATS.index("slope")] == pytest.approx(1.0)
    assert w.X[0, len(STATS) + STATS.index("slope")] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "series",
    [
        {},
        {"a": (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.uint16))},
        {"a": regular(np.ones(30))},  # shorter than one window
        {"other": regular(np.ones(300))},  # the role is missing
    ],
)
def test_empty_or_partial_input_returns_no_windows_with_the_right_shapes(series):
    w = build_windows(series, ["a", "b"], window_s=60, step_s=10)
    assert len(w) == 0
    assert w.X.shape == (0, 2 * len(STATS)) and w.X.dtype == np.float32
    assert w.coverage.shape == (0, 2) and w.flagged.shape == (0, 2)
    assert w.names == feature_names(["a", "b"])


def test_a_window_is_only_emitted_once_its_end_has_been_reached():
    ts, v, q = regular(np.ones(95))  # last reading at T0+94
    w = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10)
    assert w.ends.max() == T0 + 90
    explicit = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10, start_s=T0 + 20, end_s=T0 + 85)
    assert list(explicit.ends) == [T0 + 80]


def test_unsorted_input_gives_the_same_windows_as_sorted():
    ts, v, q = regular(np.random.default_rng(2).normal(size=200))
    order = np.random.default_rng(0).permutation(len(ts))
    a = build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10)
    b = build_windows({"a": (ts[order], v[order], q[order])}, ["a"], window_s=60, step_s=10)
    np.testing.assert_array_equal(a.X, b.X)


def test_invalid_arguments_raise_clear_errors():
    ts, v, q = regular(np.ones(100))
    with pytest.raises(ValueError, match="same length"):
        build_windows({"a": (ts, v[:-1], q)}, ["a"], window_s=60, step_s=10)
    with pytest.raises(ValueError, match="positive"):
        build_windows({"a": (ts, v, q)}, ["a"], window_s=0, step_s=10)
    with pytest.raises(ValueError, match="non-empty"):
        build_windows({"a": (ts, v, q)}, [], window_s=60, step_s=10)
    with pytest.raises(ValueError, match="min_coverage"):
        build_windows({"a": (ts, v, q)}, ["a"], window_s=60, step_s=10, min_coverage=2)
