"""C-MAPSS engines turned into the product's feature windows (pure NumPy; no database).

Protocol (also printed under the evaluation table):

* Time: one flight cycle is one reading per sensor at ``CYCLE_S`` = 3600 s (cycle c at c × 3600 s); the
  windows are those of ``detection.pipeline.Pipeline.windows`` (the regime step, then
  ``detection.features.build_windows_many``) with ``window_s`` = ``WINDOW_CYCLES`` × 3600 and ``step_s`` =
  3600, i.e. one window ending at every cycle: the pipeline the live scorer builds from the model's spec.
* Short histories: the windows start ``WINDOW_CYCLES`` before the first cycle, so the time before an engine's
  first cycle is a gap and the product's coverage rule decides: a window is scored once it holds at least
  ``MIN_COVERAGE`` of its expected readings (20 of 40 cycles). Train windows follow the same rule, so the
  model has seen such partial first windows; every test engine of FD001–FD003 has at least 21 cycles.
* Operating conditions: the product's regime step (``detection.regimes``, applied by the Pipeline of a
  version whose ``output_spec`` carries the table), as the live scorer applies it. The three settings are readings of the key roles
  ``setting_1..3`` at the cycle's timestamp; regime = (rint(altitude), rint(100 × Mach), rint(throttle)):
  FD002's six conditions, one regime in FD001/FD003. Each sensor is standardised with its regime's mean and
  standard deviation over the TRAIN cycles only (``fit_regimes``), before windowing: the ONNX model cannot
  do it because a 30-cycle window mixes regimes. The fitted table travels with the model as
  ``output_spec["regimes"]``, so a version registered from it is scored on live readings the same way.
* Sensors: the 14 that vary in FD001 (s1, s5, s6, s10, s16, s18, s19 are constant there and carry no wear
  signal), the same list for every subset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detection.features import Windows, feature_names
from detection.pipeline import Pipeline
from detection.regimes import SPEC_KEY, RegimeSpec
from plant.datasets.cmapss import COLUMNS, SETTINGS

CYCLE_S = 3600.0
WINDOW_CYCLES = 30
MIN_COVERAGE = 0.5
SENSORS_USED = ("s2", "s3", "s4", "s7", "s8", "s9", "s11", "s12", "s13", "s14", "s15", "s17", "s20", "s21")
REGIME_SCALES = (1.0, 100.0, 1.0)  # altitude (kft), Mach, throttle resolver angle: rounded after scaling


def fit_regimes(units: Mapping[int, np.ndarray], sensors: tuple[str, ...] = SENSORS_USED) -> RegimeSpec:
    """Per-regime mean and standard deviation of each used sensor, from these (train) cycles only."""
    rows = np.vstack(list(units.values()))
    columns = {name: rows[:, COLUMNS.index(name)] for name in (*SETTINGS, *sensors)}
    return RegimeSpec.fit(columns, keys=SETTINGS, scales=REGIME_SCALES, roles=sensors)


@dataclass
class UnitWindows:
    """The feature windows of one engine; ``cycles[i]`` is the cycle that window i ends at."""

    X: np.ndarray
    cycles: np.ndarray
    n_cycles: int


def unit_windows(
    units: Mapping[int, np.ndarray],
    spec: RegimeSpec,
    *,
    window_cycles: int = WINDOW_CYCLES,
) -> tuple[list[str], dict[int, UnitWindows]]:
    """Feature names and, per unit, the windows of its regime-normalised sensors (one per cycle, see the
    module doc): readings per role, then the windows of the Pipeline a version carrying ``spec`` has."""
    roles = list(spec.roles)
    names = feature_names(roles)
    pipeline = Pipeline.from_spec(names, {SPEC_KEY: spec.to_dict()}, roles=[*spec.keys, *roles])
    series = {}
    for unit, rows in units.items():
        ts = np.arange(1, len(rows) + 1, dtype=np.float64) * CYCLE_S
        quality = np.zeros(len(rows), dtype=np.uint16)
        series[unit] = {name: (ts, rows[:, COLUMNS.index(name)], quality) for name in (*spec.keys, *roles)}
    built: dict[int, Windows] = pipeline.windows(
        series,
        roles,
        window_s=window_cycles * CYCLE_S,
        step_s=CYCLE_S,
        start_s={unit: (1 - window_cycles) * CYCLE_S for unit in units},
        end_s={unit: len(rows) * CYCLE_S for unit, rows in units.items()},
        sample_period_s={unit: dict.fromkeys(roles, CYCLE_S) for unit in units},
        min_coverage=MIN_COVERAGE,
    )
    out = {
        unit: UnitWindows(
            X=windows.X, cycles=np.rint(windows.ends / CYCLE_S).astype(np.int64), n_cycles=len(units[unit])
        )
        for unit, windows in built.items()
    }
    return names, out
