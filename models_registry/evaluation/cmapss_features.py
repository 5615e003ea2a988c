"""C-MAPSS engines turned into the product's feature windows (pure NumPy; no database).

Protocol (also printed under the evaluation table):

* Time: one flight cycle is one reading per sensor at ``CYCLE_S`` = 3600 s (cycle c at c × 3600 s); the
  windows are ``plant.features.build_windows_many`` with ``window_s`` = ``WINDOW_CYCLES`` × 3600 and
  ``step_s`` = 3600, i.e. one window ending at every cycle, the same code that scores live assets.
* Short histories: the windows start ``WINDOW_CYCLES`` before the first cycle, so the time before an engine's
  first cycle is a gap and the product's coverage rule decides: a window is scored once it holds at least
  ``MIN_COVERAGE`` of its expected readings (20 of 40 cycles). Train windows follow the same rule, so the
  model has seen such partial first windows; every test engine of FD001–FD003 has at least 21 cycles.
* Operating conditions: each cycle's regime is a deterministic rule on the three settings (altitude rounded
  to 1, Mach × 100 rounded, throttle angle rounded: FD002's six conditions, one regime in FD001/FD003).
  Each sensor is standardised with its regime's mean and standard deviation over the TRAIN cycles only
  (``RegimeNormaliser``), before windowing: the ONNX model cannot do it because a 30-cycle window mixes
  regimes. It is a per-reading pre-processing step (a "virtual sensor" per role); its table
  (``RegimeNormaliser.to_dict``) is written into the evaluation report so the same numbers can be applied
  on the product path, which does not apply it yet.
* Sensors: the 14 that vary in FD001 (s1, s5, s6, s10, s16, s18, s19 are constant there and carry no wear
  signal), the same list for every subset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from plant.datasets.cmapss import COLUMNS, SETTINGS
from plant.features import Windows, build_windows_many, feature_names

CYCLE_S = 3600.0
WINDOW_CYCLES = 30
MIN_COVERAGE = 0.5
SENSORS_USED = ("s2", "s3", "s4", "s7", "s8", "s9", "s11", "s12", "s13", "s14", "s15", "s17", "s20", "s21")
MIN_REGIME_ROWS = 30  # fewer train cycles than this in a regime: use the overall statistics instead


def regime_keys(rows: np.ndarray) -> np.ndarray:
    """Regime id per cycle from the three settings (int64 code; equal settings give equal codes)."""
    settings = rows[:, [COLUMNS.index(name) for name in SETTINGS]]
    altitude = np.rint(settings[:, 0]).astype(np.int64)
    mach = np.rint(settings[:, 1] * 100).astype(np.int64)
    throttle = np.rint(settings[:, 2]).astype(np.int64)
    return (altitude + 1000) * 10_000_000 + (mach + 1000) * 10_000 + throttle


@dataclass
class RegimeNormaliser:
    """Per-regime mean and standard deviation of each used sensor, fitted on train cycles only."""

    sensors: tuple[str, ...]
    regimes: dict[int, tuple[np.ndarray, np.ndarray]]
    overall: tuple[np.ndarray, np.ndarray]

    @classmethod
    def fit(
        cls, units: Mapping[int, np.ndarray], sensors: tuple[str, ...] = SENSORS_USED
    ) -> RegimeNormaliser:
        rows = np.vstack(list(units.values()))
        values = rows[:, [COLUMNS.index(name) for name in sensors]]
        keys = regime_keys(rows)
        overall = _moments(values)
        regimes = {}
        for key in np.unique(keys):
            chosen = keys == key
            if chosen.sum() >= MIN_REGIME_ROWS:
                regimes[int(key)] = _moments(values[chosen])
        return cls(sensors=tuple(sensors), regimes=regimes, overall=overall)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """[n, len(sensors)] standardised sensor values of these cycles (unknown regime: overall moments)."""
        values = rows[:, [COLUMNS.index(name) for name in self.sensors]]
        keys = regime_keys(rows)
        mean = np.tile(self.overall[0], (len(rows), 1))
        std = np.tile(self.overall[1], (len(rows), 1))
        for key, (mu, sigma) in self.regimes.items():
            chosen = keys == key
            mean[chosen], std[chosen] = mu, sigma
        return (values - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """The table as plain JSON, to store with the model version's parameters."""
        return {
            "rule": "regime = (rint(setting_1), rint(100 * setting_2), rint(setting_3)); z = (x - mean) / std",
            "sensors": list(self.sensors),
            "regimes": {
                str(k): {"mean": m.tolist(), "std": s.tolist()} for k, (m, s) in self.regimes.items()
            },
            "overall": {"mean": self.overall[0].tolist(), "std": self.overall[1].tolist()},
        }


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    # A constant sensor in a regime keeps its offset removed but is not blown up.
    return mean, np.where(std > 1e-9, std, 1.0)


@dataclass
class UnitWindows:
    """The feature windows of one engine; ``cycles[i]`` is the cycle that window i ends at."""

    X: np.ndarray
    cycles: np.ndarray
    n_cycles: int


def unit_windows(
    units: Mapping[int, np.ndarray],
    normaliser: RegimeNormaliser,
    *,
    window_cycles: int = WINDOW_CYCLES,
) -> tuple[list[str], dict[int, UnitWindows]]:
    """Feature names and, per unit, the windows of its normalised sensors (one per cycle, see module doc)."""
    roles = list(normaliser.sensors)
    series = {}
    starts = {}
    for unit, rows in units.items():
        z = normaliser.transform(rows)
        ts = np.arange(1, len(rows) + 1, dtype=np.float64) * CYCLE_S
        quality = np.zeros(len(rows), dtype=np.uint16)
        series[unit] = {role: (ts, z[:, j], quality) for j, role in enumerate(roles)}
        starts[unit] = (1 - window_cycles) * CYCLE_S
    built: dict[int, Windows] = build_windows_many(
        series,
        roles,
        window_s=window_cycles * CYCLE_S,
        step_s=CYCLE_S,
        start_s=starts,
        min_coverage=MIN_COVERAGE,
        sample_period_s=CYCLE_S,
    )
    out = {
        unit: UnitWindows(
            X=windows.X, cycles=np.rint(windows.ends / CYCLE_S).astype(np.int64), n_cycles=len(units[unit])
        )
        for unit, windows in built.items()
    }
    return feature_names(roles), out
