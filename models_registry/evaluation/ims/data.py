"""The IMS tests read as fleets of bearings, and what both framings take from the options and the data
folder before any model is trained (``setup``): the settings below were fixed before the first run and none
was changed after seeing a result; the notes of each report say how each was chosen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import CommandError

from detection.baseline import MAD_TO_SIGMA
from models_registry.evaluation.fleet import Event, FleetRun, Protocol, Variant
from models_registry.evaluation.report import NotEvaluable, given, load_parts
from plant.datasets import ims as reader
from plant.ingest.service import quality_rules
from detection.quality import flag_series

# The card's published reference takes the first 200 snapshots as every bearing's normal baseline; the same
# count here (about 33 h at one snapshot per 10 min) is a convention of the dataset's users, not ours.
CALIBRATION_SNAPSHOTS = 200
# Combined (max of calibrated PCA T²+Q and per-sensor robust z) is the portfolio's rule for assets whose
# fault may show as one sensor's change or as a broken relation; it was chosen for that, before any run.
# PCA and the univariate detector alone are reported beside it, as context, never to choose.
PROPOSED = "combined"
DETECTORS = ("combined", "pca", "univariate")
# The tail rule: the version's thresholds come from a few hundred pooled hold-out windows (50 per bearing),
# the short baselines the rule exists for (the simulator fleet's reason too).
TRAIN_PARAMS = {"open_rule": "tail"}
VARIANT = Variant("per_asset_robust", asset_thresholds=True)


@dataclass(frozen=True)
class Setup:
    """What both framings read from the options and the data folder, before any model is trained."""

    n_cal: int
    detectors: list[str]
    judge: str  # the detector the targets (and the bearing framing's choice) read
    present: list[reader.ImsTest]
    loaded: list[tuple[reader.ImsTest, list[FleetRun], dict[str, Any]]]
    skipped: dict[str, str]
    protocol: Protocol


def load_setup(options: dict[str, Any], progress: Callable[[str], None]) -> Setup:
    """The options checked, every selected test read, and the protocol of the product's defaults."""
    n_cal = int(given(options, "calibration_snapshots", CALIBRATION_SNAPSHOTS))
    detectors = list(dict.fromkeys(options.get("detectors") or DETECTORS))
    if n_cal < 20:
        raise CommandError("--calibration-snapshots must be at least 20")
    present = reader.available()
    # Every test is read before any is evaluated, so a file that cannot be used is known up front. A test
    # asked for by --subset that cannot be evaluated stops the command; one found in the folder is set
    # aside with its reason, in the report, and the others are evaluated.
    chosen = {test.name: test for test in _tests(options.get("subset"), present)}
    parts, skipped = load_parts(
        list(chosen),
        lambda name: fleet_runs(chosen[name], n_cal),
        asked=bool(options.get("subset")),
        what="IMS test",
        progress=progress,
    )
    # The choice and the targets read the PROPOSED detector; without it (--detectors pca ...) the first
    # detector asked for, and the report says which.
    judge = PROPOSED if PROPOSED in detectors else detectors[0]
    protocol = Protocol(
        window_s=float(reader.BEARING.window_s),
        step_s=float(reader.BEARING.step_s),
        open_windows=int(settings.VIGIL_ALERT_OPEN_WINDOWS),
        clear_windows=int(settings.VIGIL_ALERT_CLEAR_WINDOWS),
        attribution_s=0.0,
        params=TRAIN_PARAMS,
    )
    loaded = [(chosen[name], runs, facts) for name, (runs, facts) in parts]
    return Setup(n_cal, detectors, judge, present, loaded, skipped, protocol)


def with_detector(protocol: Protocol, detector: str) -> Protocol:
    """The protocol whose model is trained with ``detector`` (and TRAIN_PARAMS)."""
    return replace(protocol, params={**TRAIN_PARAMS, "detector": detector})


def _tests(selectors: Sequence[str] | None, present: Sequence[reader.ImsTest]) -> list[reader.ImsTest]:
    if not present:
        raise CommandError(
            f"no IMS test file in {reader.data_dir()} (expected e.g. 1st_test_mean_abs_per_snapshot.csv)"
        )
    if not selectors:
        return list(present)
    names = {t.name: t for t in present}
    unknown = [s for s in selectors if s.strip().lower() not in names]
    if unknown:
        raise CommandError(
            f"unknown IMS test {', '.join(map(repr, unknown))}; this folder holds: {', '.join(names)}"
        )
    return [names[s.strip().lower()] for s in dict.fromkeys(selectors)]


def fleet_runs(test: reader.ImsTest, n_cal: int) -> tuple[list[FleetRun], dict[str, Any]]:
    """The bearings of one test as fleet runs: readings with the ingest's quality flags, the first ``n_cal``
    snapshots as calibration, the rest as test period; the readme's failures as events at the end."""
    units = reader.read_units([test.name])
    ts = units[0].ts
    if len(ts) < n_cal + 2 * reader.BEARING.window_s / reader.SNAPSHOT_S:
        raise NotEvaluable(
            f"{test.name} has {len(ts)} running snapshots: too few for {n_cal} calibration snapshots and "
            "a scored period"
        )
    end_s = float(ts[-1])
    cal_end = float(ts[n_cal - 1])
    # The model reads the roles every bearing of the test has (test 2: its one channel).
    roles = [r.key for r in reader.ROLES if all(r.key in u.values for u in units)]
    ranges = {r.key: (r.valid_min, r.valid_max) for r in reader.ROLES}
    runs, flagged, drift = [], {}, {}
    for unit in units:
        bearing = int(unit.ref.rsplit("/", 1)[1])
        series = {}
        for role in roles:
            quality = flag_series(
                unit.ts,
                unit.values[role],
                0,
                valid_min=ranges[role][0],
                valid_max=ranges[role][1],
                sample_period_s=reader.SNAPSHOT_S,
                **quality_rules(),
            )
            series[role] = (unit.ts, unit.values[role], quality)
            flagged[f"{unit.tag}:{role}"] = int((quality != 0).sum())
            drift[f"{unit.tag}:{role}"] = level_drift(unit.values[role], n_cal)
        events = (Event(test.failures[bearing], end_s, end_s),) if bearing in test.failures else ()
        runs.append(
            FleetRun(
                key=unit.tag,
                group=test.name,
                series=series,
                calibration=(float(ts[0]), cal_end),
                test=(cal_end, end_s),
                events=events,
                sample_period_s=reader.SNAPSHOT_S,
            )
        )
    facts = {
        "roles": roles,
        "snapshots": len(ts),
        "start": iso(float(ts[0])),
        "calibration_end": iso(cal_end),
        "end": iso(end_s),
        "end_s": end_s,
        "hours": round((end_s - float(ts[0])) / 3600.0, 1),
        "failures": {str(b): kind for b, kind in test.failures.items()},
        "flagged_readings": flagged,
        "level_drift": drift,
        "peer_drift": {
            f"{unit.tag}:{role}": peer_drift(unit.values[role], [u.values[role] for u in units], n_cal)
            for unit in units
            for role in roles
        },
    }
    return runs, facts


def level_drift(values: np.ndarray, n_cal: int, parts: int = 10) -> dict[str, Any]:
    """Descriptive only (it sets nothing): the calibration's robust scale as a share of its level, and the
    median level of each tenth of the scored snapshots in calibration robust sigmas (1.4826·MAD)."""
    calibration, scored = _finite(values[:n_cal]), values[n_cal:]
    level = float(np.median(calibration)) if len(calibration) else float("nan")
    sigma = float(MAD_TO_SIGMA * np.median(np.abs(calibration - level))) if len(calibration) else 0.0
    sigma = sigma or float("nan")
    return {
        "sigma_pct_of_level": _round(100.0 * sigma / level, 2) if level else None,
        "level_z_by_tenth": [_round((_median(c) - level) / sigma, 1) for c in np.array_split(scored, parts)],
    }


def peer_drift(
    values: np.ndarray, peers: Sequence[np.ndarray], n_cal: int, parts: int = 10
) -> dict[str, Any]:
    """Descriptive only (it sets nothing): a bearing's level relative to its test's bearings (its ratio to
    their median snapshot by snapshot, divided by that ratio's calibration median), in per cent per tenth
    of the scored snapshots, and the calibration's robust σ of that ratio in per cent."""
    with np.errstate(all="ignore"):
        ratio = values / np.nanmedian(np.vstack(peers), axis=0)
    base = _median(ratio[:n_cal])
    relative = ratio / base - 1.0
    sigma = MAD_TO_SIGMA * _median(np.abs(relative[:n_cal]))
    return {
        "sigma_pct": _round(100.0 * sigma, 2),
        "pct_by_tenth": [_round(100.0 * _median(c), 1) for c in np.array_split(relative[n_cal:], parts)],
    }


def iso(epoch_s: float) -> str:
    """A moment of the report, to the minute (UTC)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _median(values: np.ndarray) -> float:
    """The median of the finite values (a missing reading is left out, as the windows leave it out)."""
    finite = _finite(np.asarray(values, dtype=np.float64))
    return float(np.median(finite)) if len(finite) else float("nan")


def _round(value: float, digits: int) -> float | None:
    """Rounded, or None where nothing finite was there to describe (the JSON has no NaN)."""
    return round(value, digits) if np.isfinite(value) else None
