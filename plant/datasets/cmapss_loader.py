"""C-MAPSS into the plant: one asset per engine, 21 sensors + 3 operational settings, cycles on a clock.

Uses the pure reader ``plant.datasets.cmapss``. Flight cycles have no wall-clock time; cycle ``c`` of every
engine is stamped ``EPOCH + (c - 1) * CYCLE_S`` (1 cycle = 1 hour from 2000-01-01 00:00 UTC — stated in the
asset type's description, each asset's location and the command's output).

Assets ``fd001-train-17`` / ``fd001-test-17`` on site ``cmapss``. Labels (source dataset): a train engine
fails after its last cycle, so its final ``RUL_WINDOW`` cycles (RUL < 30) are one fault Label ending at the
last cycle; a test engine is cut off ``RUL`` cycles before failure, so its true RUL is in its name and its
fault Label covers the cycles with RUL < 30 up to the extrapolated failure cycle (after its data when RUL is
30 or more). Selectors: ``FD001``, ``FD001/train``, ``FD001/test`` or one engine ``FD001/train/17``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np

from plant.choices import LabelKind
from plant.datasets import UnknownSubset, cmapss
from plant.datasets.common import AssetTypeSpec, LabelSpec, RoleSpec, Unit, check_limit
from plant.params import is_digits

SITE = ("cmapss", "C-MAPSS turbofan fleet (NASA)")
EPOCH = datetime(2000, 1, 1, tzinfo=dt_timezone.utc).timestamp()
CYCLE_S = 3600.0
TIME_MAPPING = "1 cycle = 1 hour; cycle 1 at 2000-01-01 00:00 UTC"
RUL_WINDOW = 30
SPLITS = ("train", "test")
# Fault modes per the card: FD001/FD002 HPC degradation, FD003/FD004 HPC or fan degradation; a subset
# beyond the NASA release gets the generic "degradation".
FAULTS = {
    "FD001": "hpc_degradation",
    "FD002": "hpc_degradation",
    "FD003": "hpc_or_fan_degradation",
    "FD004": "hpc_or_fan_degradation",
}

# Units per Saxena et al. (2008), Table 2; ranges: the union over FD001-FD004 with a wide margin.
_SENSORS = (
    ("s1", "T2", "Total temperature at fan inlet", "°R", 400.0, 560.0),
    ("s2", "T24", "Total temperature at LPC outlet", "°R", 480.0, 700.0),
    ("s3", "T30", "Total temperature at HPC outlet", "°R", 1100.0, 1750.0),
    ("s4", "T50", "Total temperature at LPT outlet", "°R", 900.0, 1600.0),
    ("s5", "P2", "Pressure at fan inlet", "psia", 0.0, 20.0),
    ("s6", "P15", "Total pressure in bypass duct", "psia", 0.0, 30.0),
    ("s7", "P30", "Total pressure at HPC outlet", "psia", 0.0, 700.0),
    ("s8", "Nf", "Physical fan speed", "rpm", 1500.0, 2700.0),
    ("s9", "Nc", "Physical core speed", "rpm", 7000.0, 10000.0),
    ("s10", "epr", "Engine pressure ratio (P50/P2)", "", 0.5, 2.0),
    ("s11", "Ps30", "Static pressure at HPC outlet", "psia", 20.0, 70.0),
    ("s12", "phi", "Ratio of fuel flow to Ps30", "pps/psi", 50.0, 650.0),
    ("s13", "NRf", "Corrected fan speed", "rpm", 1500.0, 2700.0),
    ("s14", "NRc", "Corrected core speed", "rpm", 7000.0, 9000.0),
    ("s15", "BPR", "Bypass ratio", "", 5.0, 15.0),
    ("s16", "farB", "Burner fuel-air ratio", "", 0.0, 0.1),
    ("s17", "htBleed", "Bleed enthalpy", "", 200.0, 500.0),
    ("s18", "Nf_dmd", "Demanded fan speed", "rpm", 1500.0, 2700.0),
    ("s19", "PCNfR_dmd", "Demanded corrected fan speed", "%", 50.0, 120.0),
    ("s20", "W31", "HPT coolant bleed", "lbm/s", 0.0, 60.0),
    ("s21", "W32", "LPT coolant bleed", "lbm/s", 0.0, 40.0),
)
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("setting_1", "Operational setting 1 (altitude, kft)", "kft", -1.0, 50.0),
    RoleSpec("setting_2", "Operational setting 2 (Mach number)", "Mach", -0.1, 1.0),
    RoleSpec("setting_3", "Operational setting 3 (throttle resolver angle)", "deg", 0.0, 120.0),
    *(
        RoleSpec(key, f"{short}: {label}", unit, low, high, short)
        for key, short, label, unit, low, high in _SENSORS
    ),
)
TURBOFAN = AssetTypeSpec(
    slug="cmapss-turbofan",
    name="C-MAPSS turbofan engine",
    description=f"Simulated turbofan engine of NASA C-MAPSS (run to failure); {TIME_MAPPING}.",
    roles=ROLES,
    window_s=int(RUL_WINDOW * CYCLE_S),
    step_s=int(CYCLE_S),
)


def cycle_time(cycle: float | np.ndarray) -> float | np.ndarray:
    """Epoch seconds of a (1-based) cycle."""
    return EPOCH + (np.asarray(cycle, dtype=np.float64) - 1) * CYCLE_S


def valid_subsets(available: Sequence[str] = cmapss.SUBSETS) -> str:
    first = available[0] if available else "FD001"
    return ", ".join(available) + f" (or e.g. {first}/train, {first}/test, {first}/train/17)"


def _parse(selector: str, available: Sequence[str]) -> tuple[str, str | None, int | None]:
    parts = selector.strip().strip("/").split("/")
    subset = parts[0].upper()
    split = parts[1].lower() if len(parts) > 1 else None
    unit = parts[2] if len(parts) > 2 else None
    if (
        subset not in available
        or len(parts) > 3
        or (split is not None and split not in SPLITS)
        or (unit is not None and not is_digits(unit))
    ):
        raise UnknownSubset(f"unknown C-MAPSS subset {selector!r}; valid subsets: {valid_subsets(available)}")
    return subset, split, int(unit) if unit is not None else None


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """One unit per selected engine (pure: no database); ``limit_rows`` keeps each engine's first cycles.

    Labels come from each engine's full life, so they do not move with ``limit_rows``.
    """
    check_limit(limit_rows)
    # Any subset the folder holds (FD004, or more than the NASA release), all of them by default.
    available = cmapss.available_subsets(base)
    wanted = [_parse(s, available) for s in (selectors or available)]
    units: list[Unit] = []
    cache: dict[str, cmapss.CmapssSubset] = {}
    for subset, split, only in wanted:
        if subset not in cache:
            cache[subset] = cmapss.read_subset(subset, base=base)
        data = cache[subset]
        for which in (split,) if split else SPLITS:
            engines = data.train if which == "train" else data.test
            if only is not None and only not in engines:
                raise UnknownSubset(
                    f"C-MAPSS {subset} {which} has no engine {only}; engines are 1..{max(engines)}"
                )
            for engine in [only] if only is not None else sorted(engines):
                units.append(_unit(data, which, engine, limit_rows))
    return units


def _unit(data: cmapss.CmapssSubset, split: str, engine: int, limit_rows: int | None) -> Unit:
    rows = data.train[engine] if split == "train" else data.test[engine]
    n = len(rows)
    true_rul = 0 if split == "train" else data.test_rul[engine]
    life = n + true_rul  # the cycle after which the engine fails (RUL 0 at that cycle)
    shown = rows[:limit_rows] if limit_rows is not None else rows
    first_fault = max(1, life - RUL_WINDOW + 1)
    fault = FAULTS.get(data.name, "degradation")
    if split == "train":
        note = f"train engine fails after cycle {life}; RUL < {RUL_WINDOW} from cycle {first_fault} ({TIME_MAPPING})"
        name = f"C-MAPSS {data.name} train engine {engine} (fails after cycle {life})"
    else:
        note = (
            f"test engine cut off at cycle {n}, true RUL {true_rul} cycles: fails after cycle {life}; "
            f"RUL < {RUL_WINDOW} from cycle {first_fault} ({TIME_MAPPING})"
        )
        name = f"C-MAPSS {data.name} test engine {engine} (true RUL {true_rul} cycles)"
    label = LabelSpec(
        float(cycle_time(first_fault)),
        float(cycle_time(life)),
        LabelKind.FAULT,
        fault,
        reason=f"RUL<{RUL_WINDOW}",
        note=note,
    )
    return Unit(
        ref=f"{data.name}/{split}/{engine}",
        tag=f"{data.name.lower()}-{split}-{engine}",
        name=name,
        location=f"C-MAPSS {data.name} {split}; {TIME_MAPPING}",
        asset_type=TURBOFAN,
        ts=np.asarray(cycle_time(np.arange(1, len(shown) + 1)), dtype=np.float64),
        values={column: shown[:, i] for i, column in enumerate(data.columns)},
        labels=[label],
        sample_period_s=CYCLE_S,
    )
