"""Synthetic 1 Hz sensor series with known changes, cut into feature windows by detection.features.

Three sensors: ``flow`` and ``current`` follow one slowly varying load (they move together), ``temp``
varies on its own (a slow AR(1) wander plus noise). A change starts at ``change_s`` and lasts to the end:

* ``level_shift`` — temp's level steps up by 4 × its slow wander's standard deviation;
* ``variance`` — temp's fast noise grows 3×;
* ``drift`` — temp drifts linearly, reaching 6 × its slow wander's standard deviation at the end;
* ``broken_correlation`` — current stops following the load and follows another load with the same
  distribution (each sensor stays in its normal range; only the relation breaks).
"""

from __future__ import annotations

import numpy as np

from detection.features import Windows, build_windows

ROLES = ["current", "flow", "temp"]
CHANGES = ("level_shift", "variance", "drift", "broken_correlation")
CHANGED_ROLE = {"level_shift": "temp", "variance": "temp", "drift": "temp", "broken_correlation": "current"}
WINDOW_S, STEP_S = 60.0, 10.0
ORIGIN = 1_767_600_000.0
WANDER_SD = 0.5


def _ar1(rng: np.random.Generator, n: int, tau_s: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series with time constant tau_s samples and standard deviation sd."""
    a = np.exp(-1.0 / tau_s)
    noise = rng.normal(scale=sd * np.sqrt(1 - a * a), size=n)
    out = np.empty(n)
    out[0] = rng.normal(scale=sd)
    for i in range(1, n):
        out[i] = a * out[i - 1] + noise[i]
    return out


def series(seconds: int, seed: int, change: str | None = None, change_s: int | None = None) -> dict:
    """Readings {role: (ts, values, quality)} of `seconds` seconds, with `change` from `change_s` on."""
    rng = np.random.default_rng(seed)
    n = int(seconds)
    load = _ar1(rng, n, 300.0, 1.0)
    flow = 10 + 2 * load + rng.normal(scale=0.2, size=n)
    current_load = load.copy()
    temp_wander = _ar1(rng, n, 200.0, WANDER_SD)
    temp_noise = rng.normal(scale=0.3, size=n)
    if change is not None:
        start = n // 2 if change_s is None else int(change_s)
        after = np.arange(n) >= start
        if change == "level_shift":
            temp_wander[after] += 4 * WANDER_SD
        elif change == "variance":
            temp_noise[after] *= 3.0
        elif change == "drift":
            temp_wander[after] += 6 * WANDER_SD * (np.arange(n - start) + 1) / (n - start)
        elif change == "broken_correlation":
            current_load[after] = _ar1(rng, n, 300.0, 1.0)[after]
        else:
            raise ValueError(change)
    current = 5 + current_load + rng.normal(scale=0.1, size=n)
    temp = 40 + temp_wander + temp_noise
    ts = ORIGIN + np.arange(n, dtype=np.float64)
    q = np.zeros(n, dtype=np.uint16)
    return {"current": (ts, current, q), "flow": (ts, flow, q), "temp": (ts, temp, q)}


def windows(seconds: int, seed: int, change: str | None = None, change_s: int | None = None) -> Windows:
    return build_windows(series(seconds, seed, change, change_s), ROLES, window_s=WINDOW_S, step_s=STEP_S)
