"""Simulator fleet: pumps of three sizes and noise levels under one shared model, per-asset normalisation.

The question (issue 13): with one model and one threshold per asset type, the noisiest pump sets the scale
every pump is judged on, so faults on the quiet pumps go unseen. Nine simulated pumps (``plant.simulator``)
in three classes (``CLASSES``: flow and current scale with size, healthy noise with ``noise``) run normally
for a calibration period, then through a test period in which every pump gets a bearing-wear and a
cavitation fault with normal stretches around them. The fleet protocol (``models_registry.evaluation.fleet``:
the scorer's windows, the product's trainer, ONNX scores, the lifecycle's alert rules) runs once per
normalisation, side by side: none, "per_asset" (today: minus the mean) and "per_asset_robust" (median /
robust scale) with per-asset thresholds, plus "per_asset_robust" with the version's thresholds to tell the
two steps apart.

Every setting below was fixed before the first run and none was changed after seeing a result; the
notes of the report say how each was chosen.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from models_registry.evaluation.fleet import (
    NONE,
    NORMALISATIONS,
    Event,
    FleetRun,
    Protocol,
    RunOutcome,
    Variant,
    evaluate,
    prepare,
    summarise,
)
from models_registry.evaluation.report import Evaluation, given
from plant.ingest.service import quality_rules
from detection.quality import flag_series
from plant.simulator import ROLES, Fault, FaultSchedule, PlantSimulator, SimAsset

# class name, size (rated flow and current x), noise (healthy noise x): quiet -> noisy is 4x the scale and
# 8x the noise, the "2-8x" span; medium sits in between (2x, 3x).
CLASSES: tuple[tuple[str, float, float], ...] = (
    ("quiet", 0.5, 1.0),
    ("medium", 1.0, 3.0),
    ("noisy", 2.0, 8.0),
)
PUMPS_PER_CLASS = 3
SEEDS = (1, 2)
CALIBRATION_HOURS = 8.0
TEST_HOURS = 16.0
# The fleet is simulated in memory at 1 Hz (five roles per pump, then its windows): a week of the default
# nine pumps is the most a run may ask for, so a mistyped --test-hours 1e9 is refused, not a MemoryError.
MAX_PUMP_HOURS = 9 * 168.0
# Each seed is one more whole simulation, run one after another: the seeds bound the run's time, not its
# memory. The default run (two seeds of 216 pump-hours) takes ~13 s (simfleet.json's "seconds"), so ten
# weeks of the default fleet in all is ~8 minutes, about 70 seeds at the defaults — a seed-to-seed spread is
# plain long before that (70 seeds all meeting the target already put its failure rate under ~4 %, the
# rule of three); `--seeds $(seq 1000)` asking for hours is refused.
MAX_RUN_PUMP_HOURS = 10 * MAX_PUMP_HOURS
SAMPLE_PERIOD_S = 1.0  # the simulator's default rate
# Early-stage faults, by the usual field criteria rather than the demo's full-blown severity 1.0: bearing
# wear at 0.4 doubles the vibration velocity once fully developed (+2.5 x 0.4 of rated), the common "alarm
# at twice baseline" rule; cavitation at 0.2 drops the head 5 % (0.25 x 0.2), just past the 3 % head drop
# that defines NPSH3, the onset of cavitation.
SEVERITY = {"bearing_wear": 0.4, "cavitation": 0.2}
# The sensor valid ranges the demo configures for its pumps (demo.seed.PUMP_ROLES; demo sits above this app).
VALID_RANGES = {
    "vibration": (0.0, 50.0),
    "temperature": (-20.0, 150.0),
    "current": (0.0, 400.0),
    "pressure": (0.0, 25.0),
    "flow": (0.0, 600.0),
}
# The product's windows (AssetType defaults: 60 s every 10 s).
WINDOW_S, STEP_S = 60.0, 10.0
# A fault's alerts count until its last window has passed and the slowest signal (bearing temperature,
# a 300 s first-order lag in the simulator) has settled: three time constants (95 %).
ATTRIBUTION_S = WINDOW_S + 3 * 300.0
# The product's trainer with its tail rule: per-asset thresholds come from a few hundred windows, the short
# baselines the tail rule exists for (the 99.5 % quantile of that many overlapping windows is their maximum).
TRAIN_PARAMS = {"open_rule": "tail"}
VARIANTS = (
    Variant(NONE),
    Variant("per_asset"),
    Variant("per_asset_robust", asset_thresholds=True),
    Variant("per_asset_robust", asset_thresholds=False),
)
PROPOSED = VARIANTS[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help=f"Simulator seeds (1 2); one simulation each, so the seeds times each seed's pump-hours may be at "
        f"most {MAX_RUN_PUMP_HOURS:,.0f} pump-hours (ten weeks of the default fleet, ~8 minutes; about "
        f"{int(MAX_RUN_PUMP_HOURS // (len(CLASSES) * PUMPS_PER_CLASS * (CALIBRATION_HOURS + TEST_HOURS)))} "
        "seeds at the defaults).",
    )
    parser.add_argument(
        "--pumps-per-class", type=int, default=PUMPS_PER_CLASS, help="Pumps in each size class (3)."
    )
    parser.add_argument(
        "--calibration-hours",
        type=float,
        default=CALIBRATION_HOURS,
        help="Normal running that calibrates each pump and trains the shared model (8).",
    )
    parser.add_argument(
        "--test-hours", type=float, default=TEST_HOURS, help="Test period with scheduled faults (16)."
    )
    parser.add_argument(
        "--normalisation",
        action="append",
        choices=[n for n in NORMALISATIONS if n not in {v.normalisation for v in VARIANTS}],
        default=None,
        help="Also run this per-asset step with per-asset thresholds (repeatable), e.g. per_asset_adaptive.",
    )


def run(options: dict[str, Any], progress: Callable[[str], None]) -> Evaluation:
    """Simulate the fleet for each seed and evaluate every variant on it; see the module docstring."""
    started = time.monotonic()
    seeds = list(dict.fromkeys(options.get("seeds") or SEEDS))
    per_class = int(given(options, "pumps_per_class", PUMPS_PER_CLASS))
    calibration_s = 3600.0 * float(given(options, "calibration_hours", CALIBRATION_HOURS))
    test_s = 3600.0 * float(given(options, "test_hours", TEST_HOURS))
    if not (per_class >= 1 and 0 < calibration_s < math.inf and 3600.0 <= test_s < math.inf):
        raise CommandError("--pumps-per-class must be >= 1, --calibration-hours > 0 and --test-hours >= 1")
    if any(seed < 0 for seed in seeds):
        raise CommandError(f"--seeds must be whole numbers >= 0, got {' '.join(map(str, seeds))}")
    pump_hours = len(CLASSES) * per_class * (calibration_s + test_s) / 3600.0
    if pump_hours > MAX_PUMP_HOURS:
        raise CommandError(
            f"--pumps-per-class x {len(CLASSES)} classes x (--calibration-hours + --test-hours) must be at most "
            f"{MAX_PUMP_HOURS:,.0f} pump-hours (a week of {len(CLASSES) * PUMPS_PER_CLASS} pumps), got "
            f"{pump_hours:,.0f}"
        )
    if len(seeds) * pump_hours > MAX_RUN_PUMP_HOURS:
        raise CommandError(
            f"{len(seeds)} --seeds of {pump_hours:,.0f} pump-hours each must be at most {MAX_RUN_PUMP_HOURS:,.0f} "
            f"pump-hours in all (ten weeks of the default fleet, ~8 minutes): at most "
            f"{int(MAX_RUN_PUMP_HOURS // pump_hours)} seeds with these settings"
        )
    protocol = Protocol(
        window_s=WINDOW_S,
        step_s=STEP_S,
        open_windows=int(settings.VIGIL_ALERT_OPEN_WINDOWS),
        clear_windows=int(settings.VIGIL_ALERT_CLEAR_WINDOWS),
        attribution_s=ATTRIBUTION_S,
        params=TRAIN_PARAMS,
    )
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"per_run": {}}
    quiet_ok: dict[str, bool] = {}
    for seed in seeds:
        runs = simulate(seed, per_class, calibration_s, test_s)
        prepared = prepare(runs, list(ROLES), protocol)
        progress(f"seed {seed}: simulated and windowed {len(runs)} pumps")
        extra = tuple(
            Variant(n, asset_thresholds=True) for n in dict.fromkeys(options.get("normalisation") or ())
        )
        for variant in VARIANTS + extra:
            outcomes = evaluate(prepared, protocol, variant)
            rows += _rows(seed, variant, outcomes)
            details["per_run"][f"seed {seed}, {variant.label}"] = [o.as_dict() for o in outcomes]
            quiet = summarise([o for o in outcomes if o.group == CLASSES[0][0]])
            quiet_ok[f"seed {seed}, {variant.label}"] = quiet["faults_alerted"] == quiet["faults"]
            progress(
                f"seed {seed}, {variant.label}: quiet faults {quiet['faults_alerted']}/{quiet['faults']}, "
                f"false alarms {summarise(outcomes)['false_alarms']}"
            )
    proposed = [quiet_ok[f"seed {seed}, {PROPOSED.label}"] for seed in seeds]
    summary = {
        "seeds": seeds,
        "pumps": per_class * len(CLASSES),
        "quiet_faults_all_alerted": quiet_ok,
        "target": "every scheduled fault on the quiet pumps alerts while the noisy pumps are in the fleet",
        "target_met": all(proposed),
        "target_variant": PROPOSED.label,
        "seconds": round(time.monotonic() - started, 1),
    }
    details["protocol"] = {
        "classes": [{"class": c, "size": s, "noise": n} for c, s, n in CLASSES],
        "pumps_per_class": per_class,
        "calibration_hours": calibration_s / 3600.0,
        "test_hours": test_s / 3600.0,
        "severity": SEVERITY,
        "window_s": WINDOW_S,
        "step_s": STEP_S,
        "open_windows": protocol.open_windows,
        "clear_windows": protocol.clear_windows,
        "attribution_s": ATTRIBUTION_S,
        "train_params": TRAIN_PARAMS,
    }
    return Evaluation(
        dataset="simfleet",
        rows=rows,
        summary=summary,
        notes=_notes(per_class, calibration_s, test_s, protocol),
        details=details,
    )


def fleet(per_class: int) -> list[tuple[SimAsset, str]]:
    """The pumps and their class, classes interleaved (p-01 quiet, p-02 medium, p-03 noisy, ...)."""
    out = []
    for _ in range(per_class):
        for name, size, noise in CLASSES:
            tag = f"p-{len(out) + 1:02d}"
            out.append(
                (SimAsset(tag, {role: f"{tag}.{role}" for role in ROLES}, size=size, noise=noise), name)
            )
    return out


def schedule(tags: list[str], calibration_s: float, test_s: float) -> list[Fault]:
    """Each pump's bearing wear and cavitation, as fractions of the test period T so that a shorter test
    keeps the pattern: normal first eighth; bearing wear from T/8 (T/8 long, 2 h of 16 h); cavitation
    from 9T/16 (T/32 long, 30 min); pump k starts k·T/48 later (20 min of 16 h), so at most a few pumps are
    faulty at once and at least the last quarter of the test is normal on every pump."""
    faults = []
    stagger = test_s / 48.0 * 8.0 / max(len(tags) - 1, 8)
    for k, tag in enumerate(tags):
        shift = calibration_s + k * stagger
        faults.append(
            Fault("bearing_wear", tag, None, shift + test_s / 8, test_s / 8, SEVERITY["bearing_wear"])
        )
        faults.append(
            Fault("cavitation", tag, None, shift + 9 * test_s / 16, test_s / 32, SEVERITY["cavitation"])
        )
    return faults


def simulate(seed: int, per_class: int, calibration_s: float, test_s: float) -> list[FleetRun]:
    """The fleet's readings with the ingest's quality flags, as fleet runs with their scheduled faults."""
    pumps = fleet(per_class)
    tags = [asset.tag for asset, _ in pumps]
    faults = schedule(tags, calibration_s, test_s)
    simulator = PlantSimulator(
        [asset for asset, _ in pumps],
        seed=seed,
        faults=FaultSchedule(faults),
        sample_period_s=SAMPLE_PERIOD_S,
    )
    end = calibration_s + test_s
    frame = simulator.signals(0.0, end + SAMPLE_PERIOD_S / 2)
    runs = []
    for asset, group in pumps:
        series = {}
        for role in ROLES:
            values = frame.values[asset.tag][role]
            low, high = VALID_RANGES[role]
            quality = flag_series(
                frame.ts,
                values,
                0,
                valid_min=low,
                valid_max=high,
                sample_period_s=SAMPLE_PERIOD_S,
                **quality_rules(),
            )
            series[role] = (frame.ts, values, quality)
        events = tuple(
            Event(f.kind, f.start_s, f.start_s + f.duration_s) for f in faults if f.asset_tag == asset.tag
        )
        runs.append(
            FleetRun(
                key=asset.tag,
                group=group,
                series=series,
                calibration=(0.0, calibration_s),
                test=(calibration_s, end),
                events=events,
                sample_period_s=SAMPLE_PERIOD_S,
            )
        )
    return runs


def _rows(seed: int, variant: Variant, outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    rows = []
    for group in [name for name, _, _ in CLASSES] + ["all"]:
        mine = [o for o in outcomes if group in ("all", o.group)]
        s = summarise(mine)
        rows.append(
            {
                "seed": seed,
                "normalisation": variant.normalisation,
                "thresholds": "per asset" if variant.asset_thresholds else "version",
                "class": group,
                "pumps": s["runs"],
                "faults_alerted": f"{s['faults_alerted']}/{s['faults']}",
                **{kind: "{}/{}".format(*s["by_kind"].get(kind, (0, 0))) for kind in SEVERITY},
                "median_delay_min": None
                if s["median_delay_s"] is None
                else round(s["median_delay_s"] / 60, 1),
                "false_alarms": s["false_alarms"],
                "pump_days": round(s["normal_days"], 2),
                "false_alarms_per_pump_day": None
                if s["false_alarms_per_day"] is None
                else round(s["false_alarms_per_day"], 2),
            }
        )
    return rows


def _notes(per_class: int, calibration_s: float, test_s: float, protocol: Protocol) -> list[str]:
    classes = ", ".join(f"{name} (size {size:g}, noise x{noise:g})" for name, size, noise in CLASSES)
    return [
        f"Fleet: {per_class} pumps per class, {classes}: size scales rated flow and current, noise every "
        "healthy noise term of the simulator (plant.simulator.SimAsset.noise). One simulation per seed: "
        f"{calibration_s / 3600:g} h of normal running (calibration and training), then {test_s / 3600:g} "
        f"h with one bearing wear (severity {SEVERITY['bearing_wear']:g}, T/8 long) and one cavitation "
        f"(severity {SEVERITY['cavitation']:g}, T/32 long) on every pump, staggered, normal stretches "
        "between.",
        "Production path: the ingest's quality flags (detection.quality.flag_series, the demo's valid "
        f"ranges), {WINDOW_S:g} s feature windows every {STEP_S:g} s through detection.pipeline, one PCA "
        "T²+Q model (models_registry.training.train_anomaly, open_rule tail) over every pump's "
        "calibration windows, onnxruntime scores, and alerts by detection.rules.alert_episodes with M = "
        f"{protocol.open_windows}, N = {protocol.clear_windows} (the settings' defaults).",
        "Normalisations: none (raw features); per_asset (minus each pump's mean calibration vector, "
        "today's product); per_asset_robust (minus the median, divided by 1.4826·MAD with floors: "
        "detection.baseline.calibrate). Per-asset thresholds: each pump's open/clear by the version's "
        "rule and budget (detection.thresholds.asset_thresholds) on its own hold-out windows (the last "
        "quarter of its calibration period, which the shared model was not fitted on); the version's "
        "thresholds come from the pooled hold-out.",
        f"Counting: a fault is alerted when an alert opens between its start and {ATTRIBUTION_S:g} s after"
        " its end (last window plus three temperature time constants); delay from the fault's start to "
        "that opening; every other alert opening in the test period is a false alarm; pump-days are the "
        "test period's normal time (outside those spans), summed over pumps.",
        "How the settings were chosen (all before the first run, none changed after): classes span the "
        "issue's 2-8x; severities from field criteria (vibration doubled; 5 % head drop, just past "
        "NPSH3's 3 %), not from detection results; windows, M, N and the trainer are the product's "
        "defaults; the tail rule because per-asset thresholds come from a few hundred windows; seeds 1 "
        "and 2 are simply the first two.",
        "One rule changed after a run, and it was not one of these: a smoke run of the command on a "
        "3-pump, 1.5 h fleet (not reported) showed per-asset thresholds set from 134 overlapping windows "
        "(22 min) far below the version's, so detection.thresholds now counts window_s / step_s "
        "overlapping windows as one independent window before deciding whether an asset has enough of "
        "them (the overlap the trainer's docstring already names); the runs reported here all came after "
        "that (later reruns only added columns and notes: the simulation and training are deterministic).",
        "Per-asset thresholds need at least 600 hold-out windows at the product's 60 s / 10 s (tail rule,"
        " ten independent windows above its 90 % quantile): a pump with a shorter calibration keeps the "
        "version's thresholds (details: thresholds.source per pump).",
    ]
