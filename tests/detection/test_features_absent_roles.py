"""Feature windows over the roles an asset has (optional sensors): a role it has no sensor for is a NaN
column, the window otherwise complete; with no absent role the output is bit-identical to before."""

from __future__ import annotations

import numpy as np
import pytest

from detection.features import STATS, Windows, build_windows, build_windows_many
from tests.models_registry.test_features_many import ROLES, random_series

T0 = 1_767_600_000.0


def assert_same(a: Windows, b: Windows) -> None:
    assert a.names == b.names and a.roles == b.roles
    for name in ("ends", "X", "coverage", "flagged", "dropped_ends"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and left.shape == right.shape, name
        assert np.array_equal(left, right, equal_nan=True), name


def channel(seconds: int, level: float, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(seconds, dtype=np.float64)
    return ts, level + rng.normal(0, 0.01, seconds), np.zeros(seconds, dtype=np.uint16)


def test_a_role_the_asset_lacks_is_a_nan_column_and_the_window_is_kept_for_the_roles_it_has():
    series = {"vibration": channel(600, 0.08, 1)}

    strict = build_windows(series, ["vibration", "vibration_y"], window_s=60, step_s=10)
    windows = build_windows(
        series, ["vibration", "vibration_y"], window_s=60, step_s=10, absent_roles=["vibration_y"]
    )
    alone = build_windows(series, ["vibration"], window_s=60, step_s=10)

    assert len(strict) == 0  # the old rule: every role of the type or no window at all
    assert len(windows) == len(alone) == 54
    width = len(STATS)
    assert np.array_equal(windows.X[:, :width], alone.X)
    assert np.isnan(windows.X[:, width:]).all()
    assert np.array_equal(windows.coverage[:, 1], np.zeros(len(windows)))
    assert not windows.flagged[:, 1].any()
    assert np.array_equal(windows.dropped_ends, alone.dropped_ends)


def test_readings_of_a_role_declared_absent_are_ignored():
    both = {"vibration": channel(600, 0.08, 1), "vibration_y": channel(600, 0.07, 2)}
    only = {"vibration": both["vibration"]}
    kwargs = {"window_s": 60, "step_s": 10, "absent_roles": ["vibration_y"]}

    assert_same(
        build_windows(both, ["vibration", "vibration_y"], **kwargs),
        build_windows(only, ["vibration", "vibration_y"], **kwargs),
    )


def test_an_asset_without_any_of_the_roles_has_no_window_and_unknown_roles_are_refused():
    series = {"vibration": channel(600, 0.08, 1)}
    none = build_windows(series, ["vibration"], window_s=60, step_s=10, absent_roles=["vibration"])
    assert len(none) == 0 and none.X.shape == (0, len(STATS))
    with pytest.raises(ValueError, match="absent_roles"):
        build_windows(series, ["vibration"], window_s=60, step_s=10, absent_roles=["vibration_z"])


@pytest.mark.parametrize("seed", range(12))
def test_no_absent_role_is_bit_identical_and_absent_roles_equal_the_present_roles_alone(seed):
    rng = np.random.default_rng(seed)
    assets = {key: random_series(rng, seconds=int(rng.integers(60, 900))) for key in range(6)}
    absent = {key: [role for role in ROLES if rng.random() < 0.3] for key in assets}
    kwargs = {"window_s": float(rng.choice([20.0, 60.0])), "step_s": float(rng.choice([5.0, 10.0]))}

    plain = build_windows_many(assets, ROLES, **kwargs)
    empty = build_windows_many(assets, ROLES, absent_roles={key: [] for key in assets}, **kwargs)
    mixed = build_windows_many(assets, ROLES, absent_roles=absent, **kwargs)

    for key, series in assets.items():
        assert_same(empty[key], plain[key])
        assert_same(mixed[key], build_windows(series, ROLES, absent_roles=absent[key], **kwargs))
        present = [role for role in ROLES if role not in absent[key]]
        if not present:
            assert len(mixed[key]) == 0
            continue
        alone = build_windows(series, present, **kwargs)
        columns = [i for i, name in enumerate(mixed[key].names) if name.split("__")[0] in present]
        assert np.array_equal(mixed[key].ends, alone.ends)
        assert np.array_equal(mixed[key].X[:, columns], alone.X, equal_nan=True)
        assert np.isnan(np.delete(mixed[key].X, columns, axis=1)).all()
        assert np.array_equal(mixed[key].dropped_ends, alone.dropped_ends)
