"""NAB (Numenta Anomaly Benchmark): Vigil's production anomaly path scored with NAB's windows and rules.

Per series (one sensor, role ``value``):

1. Feature windows from the scoring pipeline's windows step (``detection.pipeline``, raw readings): WINDOW_SAMPLES samples long, one sample apart (the
   sample period is the file's median spacing), the production statistics (mean, std, min, max, slope,
   roughness). Rows whose time does not move forward (two files have a few) are left out of the features,
   and kept for scoring, which counts NAB rows in file order.
2. ``models_registry.training.train_anomaly`` (PCA T² + Q, ONNX) on the windows that end inside NAB's
   probationary period — the first min(15 %, 750) rows, which NAB never scores; nothing after it is seen.
3. Every later window scored by the ONNX artifact through the pipeline's scoring step (onnxruntime).
4. ``detection.rules.alert_episodes`` with the model's own open / clear thresholds and the
   production hysteresis (VIGIL_ALERT_OPEN_WINDOWS, VIGIL_ALERT_CLEAR_WINDOWS), under two production rules,
   each the same for every file: train_anomaly's opt-in ``open_rule="tail"`` (open threshold extrapolated
   from the hold-out's exponential tail to 1 window in 10,000, meant for short baselines such as NAB's
   probation) and its default (99.5 % / 97 % hold-out quantiles). Each alert OPENING is one detection,
   placed at the last NAB row inside the window that opened it.
5. ``nab_scoring`` scores the detections per file and profile; the corpus is normalised against the null
   detector (no detections) and the perfect one, as NAB does.

A file that cannot be evaluated (malformed, or too short to train on its probation) is left out with a
warning naming it and the reason, listed in the report; the other files are scored. A corpus without any
labelled window (e.g. ``--category artificialNoAnomaly``) has no normalised score (NAB's divides by zero):
its rows show raw scores and false positives only.

A second row follows NAB's own protocol, which tunes one threshold per profile over the whole corpus: the
factor scaling both model thresholds is chosen from a fixed grid to maximise the corpus raw score of each
profile. It is in-sample by construction (as NAB's published numbers are) and labelled so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import CommandError

from detection import runtime
from detection.pipeline import RAW_READINGS, Pipeline
from detection import adaptive
from detection.adaptive import PER_ASSET_ADAPTIVE
from detection.baseline import BaselineError, calibrate
from detection.features import Windows
from detection.rules import RuleParams, alert_episodes
from detection.thresholds import OPEN_RULES
from models_registry.evaluation import nab_scoring
from models_registry.evaluation.report import Evaluation, load_parts
from detection.detectors import DETECTORS, METHODS
from models_registry.training import ANOMALY_DEFAULTS, TrainingError, train_anomaly
from plant.datasets import DatasetFormatError, DatasetMissing
from plant.datasets.nab import (
    NabSeries,
    UnknownSeries,
    data_dir,
    list_categories,
    list_series,
    read_series,
)
from plant.datasets.nab_loader import WINDOW_SAMPLES  # the product's NAB asset types window this many samples

ROLE = "value"
NONE = "none"
NORMALISATIONS = (NONE, PER_ASSET_ADAPTIVE)
SENSITIVITY_SAMPLES = (6, 12, 24, 48)
RULES = OPEN_RULES
FACTOR_GRID = tuple(float(f) for f in np.round(np.geomspace(0.5, 32.0, 25), 4))

# results/final_results.json key -> the scoreboard's name for it (README of NAB v1.1).
PUBLISHED_NAMES = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "htmjava": "HTM Java",
    "numentaTM": "Numenta TM",
    "earthgeckoSkyline": "earthgecko Skyline",
    "knncad": "KNN CAD",
    "relativeEntropy": "Relative Entropy",
    "randomCutForest": "Random Cut Forest",
    "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian",
    "skyline": "Etsy Skyline",
    "expose": "EXPoSE",
    "random": "Random",
    "null": "Null",
}
FULL_CORPUS = "NAB v1.1, all 58 files / 116 windows"
ALL = "all"
DETECTOR_NAMES = {
    "pca": "PCA T²+Q",
    "univariate": "robust z (univariate)",
    "combined": "combined PCA + robust z",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--category",
        default="realKnownCause",
        help="NAB data category to evaluate (default realKnownCause), or 'all': every category the data "
        "folder holds, pooled as NAB's scorer pools its corpus.",
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default=None,
        help="Anomaly detector (detection.detectors; default: the product's, ANOMALY_DEFAULTS).",
    )
    parser.add_argument(
        "--series",
        action="append",
        default=None,
        metavar="FILE",
        help="Only this file of the category (e.g. machine_temperature_system_failure.csv); repeatable.",
    )
    parser.add_argument(
        "--normalisation",
        choices=NORMALISATIONS,
        default=NONE,
        help="Per-series step before the model: none (raw features, default) or per_asset_adaptive "
        "(detection.adaptive: robust scale of the probation windows, EWMA location frozen in alert).",
    )


@dataclass
class SeriesRun:
    """One series pushed through the production path: the live windows' scores and where they map to."""

    series: NabSeries
    sample_period_s: float
    probation_rows: int
    n_train_windows: int
    scores: np.ndarray  # ONNX scores of the windows after probation, in time order
    rows: np.ndarray  # NAB row of each of those windows (its last row)
    open_threshold: float
    clear_threshold: float
    tail_open_threshold: float  # the same model's open threshold under open_rule="tail"
    model_metrics: dict[str, Any]
    # per_asset_adaptive: the scores depend on the thresholds gating the location; these are the tail
    # rule's (``scores`` are then the default rule's). None: the scores do not depend on the rule.
    tail_scores: np.ndarray | None = None
    # The same model's open threshold under open_rule="episodes" (and its scores, per_asset_adaptive).
    episodes_open_threshold: float | None = None
    episodes_scores: np.ndarray | None = None
    # Windows of window_samples rows every row share readings with the window_samples - 1 after them: the
    # clear hysteresis in readings (detection.rules.RuleParams.window_overlap), as the lifecycle applies it.
    window_overlap: int = 1

    def rule_scores(self, rule: str) -> np.ndarray:
        """The scores the alert rules read under ``rule``."""
        own = {"tail": self.tail_scores, "episodes": self.episodes_scores}.get(rule)
        return self.scores if own is None else own

    def thresholds(self, rule: str) -> tuple[float, float]:
        """(open, clear) under one of detection.thresholds.OPEN_RULES; the clear threshold does not depend on it."""
        own = {"tail": self.tail_open_threshold, "episodes": self.episodes_open_threshold}.get(rule)
        if rule == "episodes" and own is None:
            raise DatasetFormatError(f"{self.series.name}: the episodes rule was not computed")
        return (self.open_threshold if own is None else float(own)), self.clear_threshold


def run(options: dict[str, Any], progress) -> Evaluation:
    """Evaluate the category's series (or the named ones) and return the report."""
    if options.get("category") is not None and not options["category"].strip():
        # Read as left out, an empty value (an unset variable) evaluated the default category instead.
        raise CommandError("--category is empty: give a NAB category or 'all', or leave it out")
    base = data_dir()
    category = options.get("category") or "realKnownCause"
    detector = options.get("detector") or ANOMALY_DEFAULTS["detector"]
    normalisation = options.get("normalisation") or NONE
    m, n = settings.VIGIL_ALERT_OPEN_WINDOWS, settings.VIGIL_ALERT_CLEAR_WINDOWS
    how = {"detector": detector, "normalisation": normalisation, "rules": (m, n)}
    if category == ALL:
        names = [s for c in list_categories() for s in list_series(c)]
    else:
        names = list_series(category)
    wanted = options.get("series")
    if wanted:
        chosen = []
        for item in wanted:
            if "/" not in item and category == ALL:
                raise UnknownSeries(f"with --category all name series as <category>/<file>, got {item!r}")
            name = item if "/" in item else f"{category}/{item}"
            if name not in names:
                raise UnknownSeries(f"unknown NAB series {item!r} in {category}; known: {', '.join(names)}")
            chosen.append(name)
        names = list(dict.fromkeys(chosen))
    if not names:
        raise DatasetMissing(f"no NAB series (*.csv) in {base / 'data'} for category {category!r}")
    profiles = nab_scoring.load_profiles(_require(base / "config" / "profiles.json"))

    def scored(name: str) -> tuple[NabSeries, SeriesRun]:
        progress(f"{name}: features, training on probation, ONNX scoring")
        series = read_series(name)
        return series, score_series(series, **how)

    # A file that cannot be evaluated is left out by name (left_out: file -> why), the others are scored.
    loaded, left_out = load_parts(names, scored, asked=False, what="NAB file", progress=progress)
    all_series = [series for _, (series, _) in loaded]
    runs = [run for _, (_, run) in loaded]

    # Not a choice made from it: how much the fixed window length matters, reported beside the result.
    sensitivity: dict[str, dict[int, dict[str, float | None]]] = {rule: {} for rule in RULES}
    sensitivity_gaps: dict[int, str] = {}  # window length -> why it was not scored
    for samples in SENSITIVITY_SAMPLES:
        progress(f"sensitivity: {samples}-sample windows")
        try:
            other = (
                runs if samples == WINDOW_SAMPLES else [score_series(x, samples, **how) for x in all_series]
            )
        except DatasetFormatError as exc:
            sensitivity_gaps[samples] = str(exc)
            for rule in RULES:
                sensitivity[rule][samples] = {p: None for p in profiles}
            continue
        for rule in RULES:
            sensitivity[rule][samples] = {
                p: _corpus(other, prof, 1.0, m, n, rule)["score"] for p, prof in profiles.items()
            }
    fixed = {p: _corpus(runs, profile, 1.0, m, n) for p, profile in profiles.items()}
    tail = {p: _corpus(runs, profile, 1.0, m, n, "tail") for p, profile in profiles.items()}
    episodes = {p: _corpus(runs, profile, 1.0, m, n, "episodes") for p, profile in profiles.items()}
    tuned: dict[str, dict[str, Any]] = {}
    for p, profile in profiles.items():
        best = max(FACTOR_GRID, key=lambda f: (_corpus(runs, profile, f, m, n)["raw"], -abs(np.log(f))))
        tuned[p] = {**_corpus(runs, profile, best, m, n), "factor": best}

    n_windows = sum(len(r.series.windows) for r in runs)
    corpus = describe_corpus(runs)
    holds = describe_corpus([], folder=True)
    label = f"Vigil {DETECTOR_NAMES[detector]}" + ("" if normalisation == NONE else f", {normalisation}")
    rows = [
        {
            "detector": f"{label}, production thresholds, episodes rule (open_rule=episodes, 1 false alert "
            "per 30 days)",
            **{p: episodes[p]["score"] for p in profiles},
            "corpus": corpus,
            "source": "vigil",
        },
        {
            "detector": f"{label}, production thresholds, tail rule (open_rule=tail)",
            **{p: tail[p]["score"] for p in profiles},
            "corpus": corpus,
            "source": "vigil",
        },
        {
            "detector": f"{label}, production thresholds, default rule (99.5 % hold-out quantile)",
            **{p: fixed[p]["score"] for p in profiles},
            "corpus": corpus,
            "source": "vigil",
        },
        {
            "detector": f"{label}, threshold factor tuned per profile (NAB protocol, in-sample)",
            **{p: tuned[p]["score"] for p in profiles},
            "corpus": corpus,
            "source": "vigil",
        },
    ]
    published, check = _published(base, profiles)
    rows += published

    standard = next(iter(profiles))
    factors = ", ".join(f"{p} ×{tuned[p]['factor']:g}" for p in profiles)
    details = {
        "files": {r.series.name: _file_details(r, profiles, m, n) for r in runs},
        "corpus": {
            p: _strip(fixed[p])
            | {"tail_rule": _strip(tail[p]), "episodes_rule": _strip(episodes[p]), "tuned": _strip(tuned[p])}
            for p in profiles
        },
        "normalisation_check": check,
        "factor_grid": list(FACTOR_GRID),
        "window_length_sensitivity": {
            rule: {f"{k} samples": v for k, v in by_samples.items()}
            for rule, by_samples in sensitivity.items()
        },
        "window_length_not_scored": {f"{k} samples": v for k, v in sensitivity_gaps.items()},
    }
    summary = {
        "category": category,
        "detector": detector,
        "normalisation": normalisation,
        "folder_holds": holds,
        "by_category_standard": {
            "episodes_rule": episodes[standard]["by_category"],
            "tail_rule": tail[standard]["by_category"],
            "default_rule": fixed[standard]["by_category"],
        },
        "files": len(runs),
        "windows": n_windows,
        "scorable_windows": fixed[standard]["windows"],
        "windows_hit": fixed[standard]["windows_hit"],
        "detections": fixed[standard]["detections"],
        "false_positives": fixed[standard]["false_positives"],
        **{f"vigil_{p}": fixed[p]["score"] for p in profiles},
        "tail_windows_hit": tail[standard]["windows_hit"],
        "tail_false_positives": tail[standard]["false_positives"],
        **{f"vigil_tail_{p}": tail[p]["score"] for p in profiles},
        "episodes_windows_hit": episodes[standard]["windows_hit"],
        "episodes_false_positives": episodes[standard]["false_positives"],
        **{f"vigil_episodes_{p}": episodes[p]["score"] for p in profiles},
        **{f"vigil_tuned_{p}": tuned[p]["score"] for p in profiles},
        **{f"tuned_factor_{p}": tuned[p]["factor"] for p in profiles},
        "null_raw": fixed[standard]["null"],
        "perfect_raw": fixed[standard]["perfect"],
        "normalisation_check_agrees": f"{check['agree']}/{check['compared']}",
        "left_out": left_out,
    }
    notes = [
        "Scoring: NAB v1.1 rules re-implemented in NumPy (models_registry/evaluation/nab_scoring.py): scaled "
        "sigmoid within and after windows, first detection per window, FPs weighted by the distance to the "
        "preceding window, probation = first min(15 %, 750) rows unscored, score = 100·(raw − null)/(perfect − "
        "null) summed over the files evaluated.",
        f"Detector: {WINDOW_SAMPLES}-sample feature windows one sample apart (detection.features), "
        f"{DETECTOR_NAMES[detector]} ({METHODS[detector]}) trained by train_anomaly on the windows inside NAB's probation only, scored with onnxruntime; alerts "
        f"by alert_episodes with open after {m} windows above the open threshold and close after {n} below "
        "the clear threshold; each alert opening = one detection at the window's last row.",
        'Threshold rules. First row: the episodes rule (below). Second row: train_anomaly\'s opt-in tail rule (params open_rule="tail"), meant '
        "for short baselines: overlapping windows make the few hundred hold-out scores (last 25 % of the "
        "probationary windows) worth a few dozen independent ones, so their 99.5 % quantile is little more "
        "than their maximum; the score is a quadratic form of roughly Gaussian features, whose tail is "
        "exponential, so the excesses over the hold-out's 90 % score are fitted by an exponential and the "
        "open threshold is the score exceeded by 1 window in 10,000 (about one window a month at NAB's "
        "5-minute sampling), never below the hold-out maximum; the clear threshold stays the 97 % quantile. "
        "Third row: the product default, the 99.5 % (open) and 97 % (clear) hold-out quantiles. The rules "
        "are the same for every file, nothing tuned. Fourth row: NAB's protocol, one factor per profile "
        "scaling the default rule's thresholds, chosen from a fixed grid (0.5–32, geometric) to maximise this "
        f"corpus's raw score, hence in-sample (factors: {factors}).",
        f"Target (issue 13): realKnownCause standard >= 50 (Random Cut Forest's 51.7 on the whole corpus) with "
        f"the model's own thresholds: {_target_text(episodes, tail, fixed, standard)}.",
        f"What was evaluated: {corpus}. The data folder holds {holds}. With --category all every file "
        "of every category is scored and pooled as NAB's runner pools its corpus: raw and null scores summed "
        "over all files (a file or category without windows adds its false positives, each costing up to "
        "A_fp, and nothing to null), perfect = every window × A_tp; details.corpus.*.by_category gives each "
        "category's own normalised score.",
        "How the tail rule was chosen: the variant was fixed when this copy held realKnownCause only (it now "
        f"holds {holds}), so no held-out category was available to compare variants on. One variant was fixed by "
        "the reasoning above (tail start 90 %, exceedance 1e-4, floor at the hold-out maximum) before it was "
        "scored on any file, and applied once; no other tail start, exceedance, margin, window length or "
        "re-alert spacing was scored. Its realKnownCause score is therefore not in-sample tuned, but it rests "
        "on 7 files only: the other NAB categories are the check.",
        'Episodes rule (first row; train_anomaly\'s opt-in open_rule="episodes", detection.thresholds): the '
        "false-alert budget is stated in time, one false alert per asset per 30 days, instead of a share of "
        "windows: the hold-out's exceedances of its 90 % score are declustered into events (windows fewer "
        f"than {WINDOW_SAMPLES} apart share readings: one event), the events' peak excesses fitted by an "
        "exponential, and the open threshold is the level whose expected event rate is the budget, never "
        "below the hold-out maximum. Budget, tail start and declustering run were fixed from first "
        "principles (module docstring of detection.thresholds) before the rule was scored on any NAB file, "
        "and checked only on synthetic series (tests/detection/test_thresholds_episodes.py); nothing was "
        "changed after. Its standard score "
        + ", ".join(
            f"{name} {_score_text(result[standard]['score'])}"
            for name, result in (("episodes", episodes), ("tail", tail), ("default", fixed))
        )
        + f"; it hits {episodes[standard]['windows_hit']} windows with "
        f"{episodes[standard]['false_positives']} false alarms. It stays opt-in: on SKAB's 400-point "
        "calibrations (about 7 minutes at 1 Hz) a month's budget is a long extrapolation and the pooled fleet's F1 falls "
        "(see docs/evaluation/skab.md), so the product default is unchanged.",
        f"False alarms (standard profile): the tail rule hits {tail[standard]['windows_hit']} of "
        f"{tail[standard]['windows']} windows with {tail[standard]['false_positives']} false alarms (per file: "
        + ", ".join(f"{_short(name, runs)} {len(f.fp_rows)}" for name, f in tail[standard]["files"].items())
        + f"); the default rule hits {fixed[standard]['windows_hit']} with "
        f"{fixed[standard]['false_positives']} (per file: "
        + ", ".join(f"{_short(name, runs)} {len(f.fp_rows)}" for name, f in fixed[standard]["files"].items())
        + "). What remains is mostly a model fitted on a few days of probation meeting level and regime "
        "changes (weekly cycles, re-configurations) that NAB does not label.",
        f"Window length: {WINDOW_SAMPLES} samples (one hour at 5-minute sampling, as the product's NAB asset "
        "type) was fixed before scoring and is kept; for transparency the standard score at other lengths is, "
        "episodes rule: "
        + ", ".join(f"{k} samples {_score_text(v[standard])}" for k, v in sensitivity["episodes"].items())
        + "; tail rule: "
        + ", ".join(f"{k} samples {_score_text(v[standard])}" for k, v in sensitivity["tail"].items())
        + "; default rule: "
        + ", ".join(f"{k} samples {_score_text(v[standard])}" for k, v in sensitivity["quantile"].items())
        + " (details.window_length_sensitivity). Picking the best of these here would be tuning to this corpus.",
        f"Published rows come from NAB's results/final_results.json and cover the whole NAB corpus ({FULL_CORPUS}"
        f"); Vigil's rows cover {corpus} only, so they are indicative, not a like-for-like ranking. Per-file "
        "detector outputs are not in this copy of NAB, so published detectors cannot be re-scored here.",
        f"Scorer cross-check: normalising config/thresholds.json's raw corpus scores with null = its null "
        f"detector's score and perfect = 116 reproduces final_results.json for {check['agree']} of "
        f"{check['compared']} detector × profile pairs to 1e-9 ({', '.join(check['disagree_detectors']) or 'none'} "
        "differ because their thresholds.json entries are not the ones behind final_results.json); the null "
        "score of machine_temperature_system_failure.csv is "
        f"{details['files'].get('realKnownCause/machine_temperature_system_failure.csv', {}).get('null_standard', 'n/a')}"
        " (dataset card: -4.0).",
    ]
    if fixed[standard]["score"] is None:
        notes.insert(
            0,
            "No labelled window in the files evaluated: NAB's normalised score (raw - null) / (perfect - "
            "null) is undefined (perfect = null = 0), so the score columns are empty; the raw scores "
            "(details.corpus) are the false positives' cost alone, "
            f"{fixed[standard]['false_positives']} false positives under the default rule.",
        )
    if sensitivity_gaps:
        notes.append(
            "Window lengths not scored: "
            + "; ".join(f"{k} samples ({why})" for k, why in sensitivity_gaps.items())
        )
    if left_out:
        notes.append(
            f"Files left out, the other {len(runs)} scored: "
            + "; ".join(f"{name} ({why})" for name, why in left_out.items())
        )
    return Evaluation(dataset="nab", rows=rows, summary=summary, notes=notes, details=details)


def _short(name: str, runs: list[SeriesRun]) -> str:
    """A file's name without its category when every run is of one category (else the full name)."""
    one = len({nab_scoring.category_of(r.series.name) for r in runs}) == 1
    return name.split("/", 1)[-1] if one else name


def _score_text(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.1f}"


def score_series(
    series: NabSeries,
    window_samples: int = WINDOW_SAMPLES,
    *,
    detector: str | None = None,
    normalisation: str = NONE,
    rules: tuple[int, int] = (3, 6),
) -> SeriesRun:
    """Features, model trained on probation, and ONNX scores of every later window of one series.
    ``normalisation`` "per_asset_adaptive": the probation windows calibrate the series (robust scale,
    detection.baseline.calibrate) and are replayed through detection.adaptive to train the model; later
    windows are scored one at a time, the location frozen by the alert rules (``rules`` = M, N) under
    each threshold rule's thresholds."""
    if normalisation == PER_ASSET_ADAPTIVE:
        return _score_adaptive(series, window_samples, detector, rules)
    windows, rows, probation, period = _windows(series, window_samples)
    train = rows < probation
    try:
        chosen = {} if detector is None else {"detector": detector}
        model = train_anomaly(windows.X[train], windows.names, params=chosen)
        # Same fit (the detector does not depend on the open rule), so only the open threshold differs.
        tail = train_anomaly(windows.X[train], windows.names, params={**chosen, "open_rule": "tail"})
        episodes = train_anomaly(
            windows.X[train], windows.names, params={**chosen, **_episodes_params(window_samples, period)}
        )
    except TrainingError as exc:
        raise DatasetFormatError(_untrainable(series, probation, window_samples, exc)) from None
    loaded = runtime.LoadedModel.unregistered(
        model.onnx_bytes, windows.names, model.output_spec, runtime.reference_session(model.onnx_bytes)
    )
    live = np.flatnonzero(~train)
    columns = np.arange(len(windows.names))
    scores = (
        Pipeline.score(loaded, Pipeline.inputs(windows, live, columns), finite=False)
        if len(live)
        else np.zeros(0)
    )
    return SeriesRun(
        series=series,
        sample_period_s=period,
        probation_rows=probation,
        n_train_windows=int(train.sum()),
        scores=scores,
        rows=rows[live],
        open_threshold=model.open_threshold,
        clear_threshold=model.clear_threshold,
        tail_open_threshold=tail.open_threshold,
        model_metrics=model.metrics,
        episodes_open_threshold=episodes.open_threshold,
        window_overlap=window_samples,
    )


def _untrainable(series: NabSeries, probation: int, window_samples: int, exc: Exception) -> str:
    return (
        f"{series.name}: cannot train on its probationary period ({probation} of {len(series)} rows, "
        f"{window_samples}-sample windows: {exc})"
    )


def _episodes_params(window_samples: int, period: float) -> dict[str, Any]:
    """train_anomaly's params for the "episodes" rule on this series' windows (its budget: the rule's)."""
    return {"open_rule": "episodes", "window_s": window_samples * period, "step_s": period}


def _windows(series: NabSeries, window_samples: int) -> tuple[Windows, np.ndarray, int, float]:
    """The series' feature windows, the NAB row each ends at, its probation rows and sample period."""
    keep = series.increasing()
    ts, values = series.ts[keep], series.values[keep]
    row_index = np.flatnonzero(keep)
    spacing = np.diff(ts)
    period = float(np.median(spacing[spacing > 0])) if len(ts) > 1 else 1.0
    windows = RAW_READINGS.asset_windows(
        {ROLE: (ts, values, np.zeros(len(ts), dtype=np.uint16))},
        [ROLE],
        window_s=window_samples * period,
        step_s=period,
        sample_period_s=period,
    )
    # The last NAB row inside each window: a detection is emitted once that row has been seen.
    rows = row_index[np.searchsorted(ts, windows.ends, side="right") - 1]
    return windows, rows, nab_scoring.probation_rows(len(series)), period


def _score_adaptive(
    series: NabSeries, window_samples: int, detector: str | None, rules: tuple[int, int]
) -> SeriesRun:
    """``score_series`` with the "per_asset_adaptive" step (see there)."""
    windows, rows, probation, period = _windows(series, window_samples)
    train = rows < probation
    live = np.flatnonzero(~train)
    try:
        calibration = calibrate(windows.X[train])
        Z, state = adaptive.start(windows.X[train], calibration)
        chosen = {} if detector is None else {"detector": detector}
        model = train_anomaly(Z, windows.names, params=chosen)
        tail = train_anomaly(Z, windows.names, params={**chosen, "open_rule": "tail"})
        episodes = train_anomaly(
            Z, windows.names, params={**chosen, **_episodes_params(window_samples, period)}
        )
    except (TrainingError, BaselineError) as exc:
        raise DatasetFormatError(_untrainable(series, probation, window_samples, exc)) from None
    loaded = runtime.LoadedModel.unregistered(
        model.onnx_bytes, windows.names, model.output_spec, runtime.reference_session(model.onnx_bytes)
    )
    higher = runtime.higher_is_worse(model.output_spec)
    scores = {}
    chosen_rules = (
        ("quantile", model.open_threshold),
        ("tail", tail.open_threshold),
        ("episodes", episodes.open_threshold),
    )
    for rule, open_t in chosen_rules:
        params = RuleParams(
            open_t, min(model.clear_threshold, open_t), *rules, higher=higher, window_overlap=window_samples
        )
        _, scores[rule], _, _ = adaptive.advance(
            state, windows.X[live], calibration, lambda z: Pipeline.score(loaded, z, finite=False), params
        )
    return SeriesRun(
        series=series,
        sample_period_s=period,
        probation_rows=probation,
        n_train_windows=int(train.sum()),
        scores=scores["quantile"],
        rows=rows[live],
        open_threshold=model.open_threshold,
        clear_threshold=model.clear_threshold,
        tail_open_threshold=tail.open_threshold,
        model_metrics=model.metrics,
        tail_scores=scores["tail"],
        episodes_open_threshold=episodes.open_threshold,
        episodes_scores=scores["episodes"],
        window_overlap=window_samples,
    )


def detections(
    run: SeriesRun, factor: float, open_windows: int, clear_windows: int, rule: str = "quantile"
) -> np.ndarray:
    """Boolean per NAB row: an alert opened there (``rule``'s thresholds scaled by ``factor``)."""
    open_t, clear_t = run.thresholds(rule)
    episodes = alert_episodes(
        run.rule_scores(rule),
        factor * open_t,
        factor * clear_t,
        open_windows,
        clear_windows,
        window_overlap=run.window_overlap,
    )
    detected = np.zeros(len(run.series), dtype=bool)
    detected[[run.rows[e.opened] for e in episodes]] = True
    return detected


def _corpus(
    runs: list[SeriesRun], profile: nab_scoring.Profile, factor: float, m: int, n: int, rule: str = "quantile"
) -> dict[str, Any]:
    pooled = nab_scoring.score_corpus(
        {r.series.name: (r.series.ts, detections(r, factor, m, n, rule), r.series.windows) for r in runs},
        profile,
    )
    files = pooled.files
    return {
        "score": pooled.score,
        "raw": pooled.raw,
        "null": pooled.null,
        "perfect": pooled.perfect,
        "windows": sum(len(f.window_hits) for f in files.values()),
        "windows_hit": sum(f.windows_hit for f in files.values()),
        "false_positives": pooled.false_positives,
        "detections": sum(len(f.fp_rows) + f.tp_detections for f in files.values()),
        "by_category": nab_scoring.by_category(
            pooled, {r.series.name: len(r.series.windows) for r in runs}, profile
        ),
        "files": files,
    }


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "files"}


def _file_details(r: SeriesRun, profiles: dict[str, nab_scoring.Profile], m: int, n: int) -> dict[str, Any]:
    detected = detections(r, 1.0, m, n)
    scored = {
        p: nab_scoring.score_file(r.series.ts, detected, r.series.windows, prof)
        for p, prof in profiles.items()
    }
    first = scored[next(iter(profiles))]
    spans = nab_scoring.window_spans(r.series.ts, r.series.windows)
    windows = []
    hits = iter(first.window_hits)
    probation = r.probation_rows
    for (start, end), span in zip(r.series.windows, spans, strict=True):
        counted = span is not None and span[1] >= probation
        hit = next(hits) if counted else None
        windows.append(
            {
                "start": _iso(start),
                "end": _iso(end),
                "scored": counted,
                "hit": hit is not None,
                "first_detection": _iso(r.series.ts[hit]) if hit is not None else None,
            }
        )
    rows = np.flatnonzero(detected)
    scorable = rows[rows >= probation]
    standard = next(iter(profiles.values()))
    tail = nab_scoring.score_file(r.series.ts, detections(r, 1.0, m, n, "tail"), r.series.windows, standard)
    episodes = nab_scoring.score_file(
        r.series.ts, detections(r, 1.0, m, n, "episodes"), r.series.windows, standard
    )
    return {
        "rows": len(r.series),
        "sample_period_s": r.sample_period_s,
        "probation_rows": probation,
        "training_windows": r.n_train_windows,
        "live_windows": len(r.scores),
        "open_threshold": r.open_threshold,
        "clear_threshold": r.clear_threshold,
        "model_components": r.model_metrics.get("n_components"),
        "detections": len(scorable),
        "detection_times": [_iso(r.series.ts[i]) for i in scorable],
        "false_positives": len(first.fp_rows),
        "windows_hit": first.windows_hit,
        "windows_scored": len(first.window_hits),
        "windows": windows,
        "null_standard": first.null,
        **{f"raw_{p}": s.raw for p, s in scored.items()},
        "tail_open_threshold": r.tail_open_threshold,
        "tail_detections": len(tail.fp_rows) + tail.tp_detections,
        "tail_false_positives": len(tail.fp_rows),
        "tail_windows_hit": tail.windows_hit,
        "tail_raw_standard": tail.raw,
        "episodes_open_threshold": r.episodes_open_threshold,
        "episodes_detections": len(episodes.fp_rows) + episodes.tp_detections,
        "episodes_false_positives": len(episodes.fp_rows),
        "episodes_windows_hit": episodes.windows_hit,
        "episodes_raw_standard": episodes.raw,
    }


def _published(
    base: Path, profiles: dict[str, nab_scoring.Profile]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Published rows from results/final_results.json, and the normalisation cross-check against it."""
    final = _load_json(base / "results" / "final_results.json")
    rows = []
    for key, scores in sorted(final.items(), key=lambda item: -float(item[1].get("standard", 0.0))):
        rows.append(
            {
                "detector": PUBLISHED_NAMES.get(key, key),
                **{p: scores.get(p) for p in profiles},
                "corpus": FULL_CORPUS,
                "source": "published",
            }
        )
    return rows, normalisation_check(final, _load_json(base / "config" / "thresholds.json"), profiles)


def normalisation_check(
    final: dict[str, Any],
    thresholds: dict[str, Any],
    profiles: dict[str, nab_scoring.Profile],
    n_windows: int = 116,
) -> dict[str, Any]:
    """Re-derive final_results.json from thresholds.json's raw corpus scores with ``nab_scoring.normalised``."""
    compared, agree, disagree = 0, 0, set()
    largest = 0.0
    for detector, scores in final.items():
        if detector == "null" or detector not in thresholds:
            continue
        for p, profile in profiles.items():
            if p not in scores or p not in thresholds[detector]:
                continue
            null = thresholds["null"][p]["score"]
            mine = nab_scoring.normalised(
                thresholds[detector][p]["score"], null, nab_scoring.perfect_score(n_windows, profile)
            )
            compared += 1
            if abs(mine - scores[p]) <= 1e-9:
                agree += 1
                largest = max(largest, abs(mine - scores[p]))
            else:
                disagree.add(detector)
    return {
        "compared": compared,
        "agree": agree,
        "disagree_detectors": sorted(disagree),
        "max_abs_error": largest,
    }


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DatasetMissing(f"NAB file not found at {path} (see the dataset card)")
    return path


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(_require(path).read_text())
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), tz=dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def describe_corpus(runs: list[SeriesRun], *, folder: bool = False) -> str:
    """What is evaluated (the runs) or what the data folder holds (``folder``): categories with their files
    and windows, those without windows named as such."""
    counts: dict[str, list[int]] = {}
    if folder:
        for category in list_categories():
            names = list_series(category)
            counts[category] = [len(names), -1]
        return ", ".join(f"{c} ({n} file{'s' * (n != 1)})" for c, (n, _) in counts.items()) or "no category"
    for r in runs:
        entry = counts.setdefault(nab_scoring.category_of(r.series.name), [0, 0])
        entry[0] += 1
        entry[1] += len(r.series.windows)
    parts = [
        f"{c}, {n} file{'s' * (n != 1)} / {w} window{'s' * (w != 1)}" + (" (no anomalies)" if w == 0 else "")
        for c, (n, w) in counts.items()
    ]
    total_files = sum(n for n, _ in counts.values())
    total_windows = sum(w for _, w in counts.values())
    if len(parts) == 1:
        return parts[0]
    return f"{len(parts)} categories, {total_files} files / {total_windows} windows: " + "; ".join(parts)


def _target_text(episodes: dict[str, Any], tail: dict[str, Any], fixed: dict[str, Any], standard: str) -> str:
    scores = []
    named = (("episodes rule", episodes), ("tail rule", tail), ("default rule", fixed))
    for name, result in ((name, result[standard]) for name, result in named):
        part = result["by_category"].get("realKnownCause")
        if part and part["score"] is not None:
            scores.append(f"{name} {part['score']:.1f}")
    if not scores:
        return "realKnownCause was not evaluated"
    met = any(float(x.rsplit(" ", 1)[1]) >= 50 for x in scores)
    return ", ".join(scores) + ("; met" if met else "; not met")
