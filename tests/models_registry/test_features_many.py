"""build_windows_many: many assets in one vectorised pass, bit-identical to each asset alone (build_windows,
its one-asset case): batching never leaks one asset's readings, ranges or periods into another's windows."""

from __future__ import annotations

import numpy as np
import pytest

from detection import features
from detection.features import EXCLUDED_QUALITY, build_windows, build_windows_many

T0 = 1_767_600_000.0
ROLES = ["current", "pressure", "vibration"]


def random_series(rng: np.random.Generator, *, seconds: int) -> dict[str, tuple]:
    """Per role: jittered or regular timestamps, gaps, flagged and non-finite readings, sometimes nothing."""
    out = {}
    for role in ROLES:
        kind = rng.integers(0, 6)
        if kind == 0:
            continue  # the role has no sensor data at all
        period = float(rng.choice([0.5, 1.0, 2.0, 5.0]))
        n = int(seconds / period) if kind != 1 else int(rng.integers(0, 5))
        ts = T0 + float(rng.integers(0, 40)) + period * np.arange(n, dtype=np.float64)
        if kind == 2:
            ts = ts + rng.uniform(-0.4, 0.4, size=n) * period  # jitter
        if n and kind == 3:
            gap = (ts > ts[0] + seconds * rng.uniform(0.1, 0.5)) & (
                ts < ts[0] + seconds * rng.uniform(0.5, 0.9)
            )
            ts = ts[~gap]
        n = len(ts)
        values = 1e3 * rng.uniform(0, 10) + rng.normal(size=n) * rng.uniform(0.01, 100) + 0.01 * np.arange(n)
        quality = np.where(rng.random(n) < 0.05, rng.integers(1, 16, size=n), 0).astype(np.uint16)
        values[rng.random(n) < 0.01] = np.nan
        if n > 3 and kind == 4:
            order = rng.permutation(n)  # unsorted input
            ts, values, quality = ts[order], values[order], quality[order]
        out[role] = (ts, values, quality)
    return out


def assert_identical(many, single):
    assert np.array_equal(many.ends, single.ends)
    assert np.array_equal(many.X, single.X, equal_nan=True)
    assert np.array_equal(np.isnan(many.X), np.isnan(single.X))
    assert many.X.dtype == single.X.dtype == np.float32
    assert np.array_equal(many.coverage, single.coverage)
    assert np.array_equal(many.flagged, single.flagged) and many.flagged.dtype == np.uint16
    assert np.array_equal(many.dropped_ends, single.dropped_ends)
    assert many.names == single.names and many.roles == single.roles
    assert many.X.shape == single.X.shape and many.coverage.shape == single.coverage.shape


@pytest.mark.parametrize("seed", range(12))
def test_many_assets_at_once_give_bit_identical_windows_to_one_asset_at_a_time(seed):
    rng = np.random.default_rng(seed)
    window_s, step_s = float(rng.choice([30, 60, 120])), float(rng.choice([5, 10, 30]))
    series = {f"asset-{i}": random_series(rng, seconds=int(rng.integers(0, 3000))) for i in range(25)}
    starts = {key: (T0 + float(rng.uniform(-50, 600)) if rng.random() < 0.6 else None) for key in series}
    ends = {key: (T0 + float(rng.uniform(0, 3000)) if rng.random() < 0.6 else None) for key in series}
    periods = {key: ({role: 1.0 for role in ROLES} if rng.random() < 0.5 else None) for key in series}
    min_coverage = float(rng.choice([0.0, 0.5, 0.9]))

    many = build_windows_many(
        series,
        ROLES,
        window_s=window_s,
        step_s=step_s,
        start_s=starts,
        end_s=ends,
        min_coverage=min_coverage,
        sample_period_s=periods,
    )

    assert list(many) == list(series)
    checked = 0
    for key, item in series.items():
        single = build_windows(
            item,
            ROLES,
            window_s=window_s,
            step_s=step_s,
            start_s=starts[key],
            end_s=ends[key],
            min_coverage=min_coverage,
            sample_period_s=periods[key],
        )
        assert_identical(many[key], single)
        checked += len(single) + len(single.dropped_ends)
    assert checked > 0


def test_long_series_spanning_many_cumulative_sum_chunks_stay_bit_identical():
    rng = np.random.default_rng(7)
    n = 20_000
    series = {}
    for i in range(4):
        ts = T0 + i + np.arange(n, dtype=np.float64)
        values = 10_000.0 + 0.001 * rng.normal(size=n) + 1e-4 * np.arange(n)
        quality = np.where(rng.random(n) < 0.02, EXCLUDED_QUALITY, 0).astype(np.uint16)
        series[i] = {"current": (ts, values, quality), "vibration": (ts[::2], values[::2], quality[::2])}
    many = build_windows_many(series, ["current", "vibration"], window_s=60, step_s=10, sample_period_s=1.0)
    for key, item in series.items():
        single = build_windows(item, ["current", "vibration"], window_s=60, step_s=10, sample_period_s=1.0)
        assert len(single) > 1000
        assert_identical(many[key], single)


@pytest.mark.parametrize("seed", range(4))
def test_the_searchsorted_and_the_vectorised_segment_search_give_the_same_windows(monkeypatch, seed):
    # _bisect_right picks np.searchsorted per segment or one binary search over all segments by how many
    # queries each segment has; force each in turn over the same assets.
    rng = np.random.default_rng(100 + seed)
    series = {i: random_series(rng, seconds=int(rng.integers(0, 4000))) for i in range(20)}
    built = {}
    for run in (0, 10**12):
        monkeypatch.setattr(features, "_SEARCHSORTED_RUN", run)
        monkeypatch.setattr(features, "_FEW_ROWS", 0 if run else 10**6)
        built[run] = build_windows_many(series, ROLES, window_s=60, step_s=5)
    assert any(len(windows) for windows in built[0].values())
    for key in series:
        assert_identical(built[0][key], built[10**12][key])


@pytest.mark.parametrize("seed", range(6))
def test_series_in_any_accepted_form_give_the_windows_of_their_normal_form(seed):
    # Sorted float64 / float64 / uint16 arrays (the sweep's reads) are checked together; lists, other dtypes,
    # 2-D arrays, a non-finite or an out-of-order timestamp go through _normalise. Mixed in one batch, every
    # asset must get the windows its series give once normalised one by one.
    rng = np.random.default_rng(200 + seed)
    series = {i: random_series(rng, seconds=int(rng.integers(0, 1500))) for i in range(30)}
    forms = [
        lambda ts, v, q: (ts.tolist(), v, q),
        lambda ts, v, q: (ts, v.astype(np.float32), q.astype(np.int64)),
        lambda ts, v, q: (ts.reshape(1, -1), v.reshape(-1, 1), q),
        lambda ts, v, q: (np.where(np.arange(len(ts)) == len(ts) // 2, np.nan, ts), v, q),
        lambda ts, v, q: (ts[::-1], v[::-1], q[::-1]),
        lambda ts, v, q: (ts, v, q),
    ]
    mixed = {
        key: {role: forms[int(rng.integers(len(forms)))](*item) for role, item in roles.items()}
        for key, roles in series.items()
    }
    normal = {
        key: {role: features._normalise(role, item) for role, item in roles.items()}
        for key, roles in mixed.items()
    }
    absent = {key: [role for role in ROLES if rng.random() < 0.2] for key in series}

    built = [
        build_windows_many(each, ROLES, window_s=60, step_s=10, absent_roles=absent)
        for each in (mixed, normal)
    ]

    assert any(len(windows) for windows in built[0].values())
    for key in series:
        assert_identical(built[0][key], built[1][key])


def test_no_assets_empty_assets_and_too_short_ranges_give_empty_windows():
    assert build_windows_many({}, ROLES, window_s=60, step_s=10) == {}
    ts = T0 + np.arange(30.0)
    series = {"empty": {}, "short": {"current": (ts, ts * 0, np.zeros(30, dtype=np.uint16))}}
    many = build_windows_many(series, ROLES, window_s=60, step_s=10)
    for key in series:
        assert len(many[key]) == 0 and many[key].X.shape == (0, 3 * 6)
        assert_identical(many[key], build_windows(series[key], ROLES, window_s=60, step_s=10))


def test_invalid_arguments_raise_the_same_clear_errors_as_build_windows():
    ts = T0 + np.arange(100.0)
    with pytest.raises(ValueError, match="same length"):
        build_windows_many({1: {"current": (ts, ts[:-1], ts)}}, ROLES, window_s=60, step_s=10)
    with pytest.raises(ValueError, match="positive"):
        build_windows_many({}, ROLES, window_s=60, step_s=0)
    with pytest.raises(ValueError, match="min_coverage"):
        build_windows_many({}, ROLES, window_s=60, step_s=10, min_coverage=-1)


@pytest.mark.parametrize("min_coverage", [0.0, 0.5])
def test_a_six_hour_look_back_around_a_minute_of_data_is_bit_identical_and_drops_the_empty_windows(
    min_coverage,
):
    # The scoring sweep's first run: hours of window ends, readings only in the last 70 s of each asset
    # (with min_coverage 0 the partial windows at both edges of the data are kept too).
    rng = np.random.default_rng(11)
    series, starts, ends = {}, {}, {}
    for i in range(40):
        ts = T0 + i * 3 + np.arange(70.0) + rng.uniform(0, 0.3, size=70)
        series[i] = {
            role: (ts, rng.normal(size=70), np.where(rng.random(70) < 0.1, 4, 0).astype(np.uint16))
            for role in ROLES[: 1 + i % 3]
        }
        starts[i], ends[i] = ts[-1] - 6 * 3600 - 60 + 1e-6, ts[-1] + (i % 2) * 100
    roles = ROLES[:2]
    many = build_windows_many(
        series, roles, window_s=60, step_s=10, start_s=starts, end_s=ends, min_coverage=min_coverage
    )
    kept = 0
    for key, item in series.items():
        single = build_windows(
            item,
            roles,
            window_s=60,
            step_s=10,
            start_s=starts[key],
            end_s=ends[key],
            min_coverage=min_coverage,
        )
        assert_identical(many[key], single)
        assert len(single.dropped_ends) > 2000
        kept += len(single)
    assert kept > 0
