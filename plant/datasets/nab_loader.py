"""NAB into the plant: one single-sensor asset per series of every category the data folder holds, with
its windows and anomalies.

Uses the pure reader ``plant.datasets.nab``. Assets on site ``nab`` are tagged by file stem; a series of
realKnownCause (the category first loaded, whose tags demos and tests name) keeps the bare stem
(``machine-temperature-system-failure``), any other category's is prefixed with the category
(``realtweets-twitter-volume-aapl``), so equal stems in two categories stay two assets. Each has one sensor
(role ``value``); the seven realKnownCause series have the unit and plausible range of the table below, any
other series is labelled by its file stem with no unit and no range. The sample period is the series' median
spacing; series share an asset type per sample period (``nab-series`` at 5 min, ``nab-series-3600s`` ...),
whose feature window holds WINDOW_SAMPLES samples one sample apart, so an hourly series is not windowed
one sample at a time. Labels (source dataset): each scoring window is a fault Label (fault type
``anomaly_window``) and each labelled anomaly point a zero-length fault Label (``anomaly``); a series the
label files do not name is refused (DatasetFormatError naming it) before anything is stored. Rows repeating
an earlier timestamp (two files have them, see the reader) are counted as duplicates by the ingest path and
stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detection.wording import duration_text

from plant.choices import LabelKind
from plant.datasets import DatasetFormatError, UnknownSubset, nab
from plant.datasets.common import AssetTypeSpec, LabelSpec, RoleSpec, Unit, check_limit

SITE = ("nab", "NAB series (Numenta Anomaly Benchmark)")
CATEGORY = "realKnownCause"  # its series keep their bare-stem tags and refs
WINDOW_SAMPLES = 12  # samples per feature window, one sample apart (evaluate nab scores with these too)
SERIES_PERIOD_S = 300  # the period of the original type, ``nab-series`` (an hour of 5-minute samples)
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


def series_type(period_s: float) -> AssetTypeSpec:
    """The asset type of the series sampled every ``period_s`` (rounded to whole seconds): WINDOW_SAMPLES
    samples a window, one sample a step; the 5-minute one keeps the original slug ``nab-series``."""
    period = max(1, round(period_s))
    return AssetTypeSpec(
        slug="nab-series" if period == SERIES_PERIOD_S else f"nab-series-{period}s",
        name=f"NAB single-sensor series, one sample every {duration_text(period)}",
        description=f"A univariate series of the Numenta Anomaly Benchmark sampled every {duration_text(period)}"
        f" (any category: the asset's location names the file).",
        roles=(RoleSpec("value", "Value", ""),),
        window_s=WINDOW_SAMPLES * period,
        step_s=period,
    )


SERIES = series_type(SERIES_PERIOD_S)


def ref_of(name: str) -> str:
    """How a series is named in the load's output: the bare stem in CATEGORY, ``<category>/<stem>`` else."""
    category, _, _ = name.partition("/")
    return stem_of(name) if category == CATEGORY else f"{category}/{stem_of(name)}"


def tag_of(name: str) -> str:
    return ref_of(name).replace("/", "-").replace("_", "-").lower()[:60]


def _resolve(selectors: Sequence[str] | None, base: Path | str | None) -> list[str]:
    """The series (``<category>/<file>.csv``) the selectors name, every one the folder holds without any.

    A selector is a category (all its series), ``<category>/<stem>`` or, when only one category has that
    file, the stem alone (also as ``<stem>.csv`` or with dashes, the tag's spelling)."""
    categories = {c: nab.list_series(c, base=base) for c in nab.list_categories(base=base)}
    names = [name for series in categories.values() for name in series]
    valid = "categories " + ", ".join(categories) + "; series " + ", ".join(ref_of(n) for n in names)
    if not selectors:
        if not names:
            raise UnknownSubset(
                f"no NAB series (*.csv) in any category folder of {nab.data_dir(base) / 'data'}"
            )
        return names
    by_alias: dict[str, list[str]] = dict(categories)
    for name in names:
        category, stem = name.partition("/")[0], stem_of(name)
        qualified = {name, f"{category}/{stem}", f"{category}/{stem.replace('_', '-')}"}
        for alias in qualified | {stem, f"{stem}.csv", stem.replace("_", "-"), tag_of(name)}:
            if alias in categories:
                continue  # a category name selects the category
            by_alias.setdefault(alias, [])
            if name not in by_alias[alias]:
                by_alias[alias].append(name)
    chosen: list[str] = []
    for selector in selectors:
        key = selector.strip().strip("/")
        found = by_alias.get(key)
        if found is None:
            raise UnknownSubset(f"unknown NAB subset {selector!r}; valid subsets: {valid}")
        if not found:
            raise UnknownSubset(f"NAB category {key!r} holds no series (*.csv); valid subsets: {valid}")
        if len(found) > 1 and key not in categories:
            raise UnknownSubset(
                f"NAB subset {selector!r} is a file of several categories ({', '.join(found)}): "
                "name it as <category>/<stem>"
            )
        chosen += [name for name in found if name not in chosen]
    return chosen


def read_units(
    selectors: Sequence[str] | None = None, *, limit_rows: int | None = None, base: Path | str | None = None
) -> list[Unit]:
    """One unit per selected series, of every category by default (pure: no database).

    Raises UnknownSubset (listing the categories and series) for a selector the folder does not have and
    DatasetFormatError when two series would get one tag or a series has no entry in the label files."""
    check_limit(limit_rows)
    names = _resolve(selectors, base)
    tags: dict[str, str] = {}
    for name in names:
        if tag_of(name) in tags:
            raise DatasetFormatError(
                f"NAB series {tags[tag_of(name)]} and {name} would both be asset {tag_of(name)!r}"
            )
        tags[tag_of(name)] = name
    units = []
    for name in names:
        series = nab.read_series(name, base=base)
        stem = stem_of(name)
        meta = SERIES_META.get(stem) if name.startswith(f"{CATEGORY}/") else None
        label, unit_name, low, high = meta or (stem.replace("_", " "), "", None, None)
        ts, values = series.ts, series.values
        if limit_rows is not None:
            ts, values = ts[:limit_rows], values[:limit_rows]
        steps = np.diff(series.ts[series.increasing()])
        period = float(np.median(steps)) if len(steps) else float(SERIES_PERIOD_S)
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
                ref=ref_of(name),
                tag=tag_of(name),
                name=f"NAB {label}",
                location=f"NAB {name}",
                asset_type=series_type(period),
                ts=ts,
                values={"value": values},
                labels=labels,
                sample_period_s=period,
                role_ranges={"value": (unit_name, low, high)},
            )
        )
    return units
