"""NAB realKnownCause into the plant: one single-sensor asset per series, with its windows and anomalies.

Uses the pure reader ``plant.datasets.nab``. Assets on site ``nab`` are tagged by file stem
(``machine-temperature-system-failure``); each has one sensor (role ``value``) whose unit, plausible range
and sample period depend on the series (table below; an unknown series gets no range). Labels (source
dataset): each scoring window is a fault Label (fault type ``anomaly_window``) and each labelled anomaly
point a zero-length fault Label (``anomaly``). Rows repeating an earlier timestamp (two files have them,
see the reader) are counted as duplicates by the ingest path and stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plant.choices import LabelKind
from plant.datasets import UnknownSubset, nab
from plant.datasets.common import AssetTypeSpec, LabelSpec, RoleSpec, Unit, check_limit

SITE = ("nab", "NAB realKnownCause series")
CATEGORY = "realKnownCause"
SERIES = AssetTypeSpec(
    slug="nab-series",
    name="NAB single-sensor series",
    description="A univariate series of the Numenta Anomaly Benchmark (realKnownCause).",
    roles=(RoleSpec("value", "Value", ""),),
    window_s=3600,
    step_s=300,
)
# stem → (label, unit, valid min, valid max): what each series measures, per NAB's data/README.md.
SERIES_META: dict[str, tuple[str, str, float | None, float | None]] = {
    "machine_temperature_system_failure": ("Internal component temperature", "°F", -50.0, 300.0),
    "ambient_temperature_system_failure": ("Office ambient temperature", "°F", 0.0, 150.0),
    "cpu_utilization_asg_misconfiguration": ("CPU utilisation", "%", 0.0, 100.0),
    "ec2_request_latency_system_failure": ("Request latency", "ms", 0.0, 10_000.0),
    "nyc_taxi": ("Taxi passengers per 30 min", "passengers", 0.0, 100_000.0),
    "rogue_agent_key_hold": ("Key hold time", "s", 0.0, 100.0),
    "rogue_agent_key_updown": ("Key up/down time", "s", 0.0, 1000.0),
}


def stem_of(name: str) -> str:
    return Path(name).stem


def _resolve(selectors: Sequence[str] | None, base: Path | str | None) -> list[str]:
    names = nab.list_series(CATEGORY, base=base)
    if not selectors:
        return names
    by_alias = {}
    for name in names:
        stem = stem_of(name)
        for alias in (name, stem, f"{stem}.csv", stem.replace("_", "-")):
            by_alias[alias] = name
    chosen = []
    for selector in selectors:
        name = by_alias.get(selector.strip().strip("/"))
        if name is None:
            valid = ", ".join(stem_of(n) for n in names)
            raise UnknownSubset(f"unknown NAB series {selector!r}; valid subsets: {valid}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """One unit per selected realKnownCause series (pure: no database)."""
    check_limit(limit_rows)
    units = []
    for name in _resolve(selectors, base):
        series = nab.read_series(name, base=base)
        stem = stem_of(name)
        label, unit_name, low, high = SERIES_META.get(stem, (stem.replace("_", " "), "", None, None))
        ts, values = series.ts, series.values
        if limit_rows is not None:
            ts, values = ts[:limit_rows], values[:limit_rows]
        steps = np.diff(series.ts[series.increasing()])
        period = float(np.median(steps)) if len(steps) else 300.0
        labels = [
            LabelSpec(start, end, LabelKind.FAULT, "anomaly_window", note=f"NAB scoring window of {name}")
            for start, end in series.windows
        ]
        labels += [
            LabelSpec(at, at, LabelKind.FAULT, "anomaly", note=f"NAB labelled anomaly of {name}")
            for at in series.anomalies
        ]
        units.append(
            Unit(
                ref=stem,
                tag=stem.replace("_", "-")[:60],
                name=f"NAB {label}",
                location=f"NAB {name}",
                asset_type=SERIES,
                ts=ts,
                values={"value": values},
                labels=labels,
                sample_period_s=period,
                role_ranges={"value": (unit_name, low, high)},
            )
        )
    return units
