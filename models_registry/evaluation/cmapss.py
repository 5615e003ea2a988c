"""Evaluate the remaining-useful-life model on NASA C-MAPSS: RMSE, PHM08 score, alert lead time.

Protocol (``manage.py evaluate cmapss [--subsets all|FD001,...]``): every subset the data folder holds
(``plant.datasets.cmapss.available_subsets``; the report names them), per subset:

1. Features: the product's feature windows of the regime-normalised sensors, one window per cycle, built by
   ``detection.pipeline.Pipeline`` from the model's spec (``cmapss_features`` states the cycle-to-time
   mapping, the short-history rule and the normalisation, ``detection.regimes``: the step the live scorer
   applies to a version that carries it).
2. Target: RUL capped at 125 cycles (piecewise linear; Heimes 2008 and most of the literature; the card
   says 125 or 130). Not tuned: the literature's test protocol caps the truth at the training cap, so a cap
   chosen by a capped score would move the yardstick with the model. Model: ``training.train_rul``
   (LightGBM regressor; ``--ensemble`` boosters with consecutive seeds averaged and merged into ONE tree
   ensemble, exported to ONNX and checked against the mean of the LightGBM boosters); every prediction
   below comes from onnxruntime through ``detection.runtime``, never from the native model.
3. Selection, on the TRAIN engines only: 5-fold cross-validation grouped by engine (engines dealt to folds
   by a seeded permutation; the regime table refitted on each fold's training engines). The window
   length (``--windows``, default 30, 40, 50, 60 cycles) with the lowest RMSE over all out-of-fold windows
   (capped truth) wins; the fold models are single boosters (``n_seeds`` = 1) to keep the run short. A length
   is a candidate only if every test engine is long enough for the product's coverage rule to score its
   last cycle (at least half a window: FD001's shortest test engine has 31 cycles, FD002's 21, so 60 is
   offered on FD001 and FD003, not on FD002); this uses the engines' lengths, never their RUL.
   The LightGBM settings (``MODEL_PARAMS``) were fixed beforehand by the same grouped 5-fold CV on FD001's
   train engines (single boosters). First round (50-cycle windows, RMSE over out-of-fold windows): 300
   trees at 0.05 = 11.33, 600 at 0.025 = 11.25, num_leaves 7 / 15 / 31 = 11.60 / 11.33 / 11.31,
   min_child_samples 50 / 100 / 200 = 11.33 / 11.33 / 11.30, feature fraction 0.3 / 0.5 / 0.8 = 11.32 /
   11.33 / 11.51; five seeds averaged = 11.21, with feature fraction 0.3 = 11.13. Second round (issue 13),
   after 60-cycle windows were offered (40 / 50 / 60 cycles = 12.23 / 11.57 / 11.42 with the first round's
   settings), at 60 cycles, each figure "all out-of-fold windows / ten seeded test-like cuts per engine"
   (last cycle at a random true RUL of 6-150, truth capped): first-round settings 11.42 / 12.24;
   num_leaves 7 / 31 / 63 = 11.42 / 11.23 / 11.28 (12.37 / 11.97 / 12.05); 600 trees at 0.025 = 11.23 /
   12.09; num_leaves 31 with 600 trees at 0.025 = 11.11 / 11.92 (adopted); num_leaves 31 with
   min_child_samples 50 / 200 = 11.32 / 11.29; min_child_samples 200 = 11.36; feature fraction 0.5 =
   11.37; reg_lambda 10 = 11.43; 150 trees = 11.42. The test set played no part in any of this.
4. Final model: refitted on all train engines with the chosen length (regime table from all train cycles;
   it is stored in the model's ``output_spec["regimes"]``): the ONNX artifact a registered version scores.
5. Test, once: the window ending at the LAST cycle of every test engine against ``RUL_FDxxx.txt``: RMSE and
   the PHM08 score S = Σ exp(-d/13) - 1 (d < 0) + Σ exp(d/10) - 1 (d >= 0), d = predicted - true, with the
   truth capped at the training cap (``rmse``, ``phm08_score``: the literature's protocol) and as given
   (``rmse_given``, ``phm08_given``), the share of test engines whose true RUL is above the cap (a capped
   model cannot reach them: FD002 has 22 %), and the same figures per operating regime of the scored cycle.
6. Alerts: each engine's prediction series goes through ``detection.rules.alert_episodes`` with the
   model's thresholds (open below 30 cycles, clear above 40), lower-is-worse, and the lifecycle's
   VIGIL_ALERT_OPEN_WINDOWS / VIGIL_ALERT_CLEAR_WINDOWS. Lead time (cycles from the first alert's opening to
   the failure) is measured on the train engines, which run to failure, each scored by the fold model that
   did not see it (chosen length); false alerts are alerts that open while the true RUL is above 60
   cycles, counted per engine on those engines and on the test engines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import CommandError

from detection import runtime
from detection.regimes import MIN_REGIME_ROWS, SPEC_KEY
from detection.rules import alert_episodes
from models_registry import training
from models_registry.evaluation.cmapss_features import MIN_COVERAGE, UnitWindows, fit_regimes, unit_windows
from models_registry.evaluation.report import Evaluation, NotEvaluable, given, load_parts
from plant.datasets import DatasetMissing
from plant.datasets.cmapss import (
    SETTINGS,
    CmapssSubset,
    available_subsets,
    incomplete_subsets,
    read_subset,
)

RUL_CAP = 125.0
OPEN_RUL, CLEAR_RUL = 30.0, 40.0
FALSE_ALERT_RUL = 60.0
FD001_RMSE_TARGET = 12.3  # issue 13: FFVE's 12.31, capped-truth protocol
CV_FOLDS = 5
WINDOW_CHOICES = (30, 40, 50, 60)
ENSEMBLE = 5
# The CV of the module docstring had flattened by the tuned 600 trees at learning rate 0.025 (150 trees were
# within 0.3 RMSE of it), and the run's time grows with the trees: every CV fold of every --windows length
# and each of the --ensemble final boosters fits that many. Ten times the tuned count is room to check the
# curve has flattened; a mistyped 10**30 trees is refused before minutes of reading and CV.
MAX_TREES = 6000
# Chosen by grouped 5-fold CV on FD001's train engines (module docstring, step 3); 1 thread: the whole
# evaluation stays at a few minutes on a shared machine.
MODEL_PARAMS: dict[str, Any] = {
    "n_estimators": 600,
    "learning_rate": 0.025,
    "num_leaves": 31,
    "min_child_samples": 100,
    "subsample": 0.8,
    "colsample_bytree": 0.3,
    "rul_cap": RUL_CAP,
    "open_rul": OPEN_RUL,
    "clear_rul": CLEAR_RUL,
    "num_threads": 1,
}
# DATASET_CARD.md, "Published results" (RMSE / score; LLerDagu/RUL-FFVE Benchmark.md, Table 4).
PUBLISHED: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "MLP (Babu 2016)": {"FD001": (37.56, 18000), "FD002": (80.03, 7.8e6), "FD003": (37.39, 17400)},
    "SVR": {"FD001": (20.96, 1380), "FD002": (42.00, 590000), "FD003": (21.05, 1600)},
    "RVR": {"FD001": (23.80, 1500), "FD002": (31.30, 17400), "FD003": (22.37, 1430)},
    "CNN (Babu 2016)": {"FD001": (18.45, 1299), "FD002": (30.29, 13600), "FD003": (None, 1600)},
    "Deep LSTM (Zheng 2017)": {"FD001": (16.14, 338), "FD002": (24.49, 4450), "FD003": (16.18, 852)},
    "AGCNN": {"FD001": (12.42, 225.5), "FD002": (19.43, 1492), "FD003": (13.39, 227.1)},
    "MS-DCNN": {"FD001": (11.44, 196.22), "FD002": (19.35, 3747), "FD003": (11.67, 241.89)},
    "MTSTAN": {"FD001": (10.97, 175.36), "FD002": (16.81, 1154), "FD003": (10.90, 188.22)},
    "RVE (interpretable)": {"FD001": (13.42, 323.82), "FD002": (14.92, 1379), "FD003": (12.51, 256.36)},
    "FFVE (source paper)": {"FD001": (12.31, 280.21), "FD002": (12.55, 772.17), "FD003": (12.43, 302.1)},
    # Fan, Li, Chang, Sensors 2024 (24(3) 824), RMSE as quoted in issue 13; the card does not list it.
    "STAR (Fan 2024)": {"FD002": (13.47, None), "FD003": (10.71, None)},
}
# FD004 column of the same card table.
for _method, (_rmse, _score) in {
    "MLP (Babu 2016)": (77.37, 5.62e6),
    "SVR": (45.35, 371000),
    "RVR": (34.34, 26500),
    "CNN (Babu 2016)": (29.16, 7890),
    "Deep LSTM (Zheng 2017)": (28.17, 5550),
    "AGCNN": (21.50, 3392),
    "MS-DCNN": (22.22, 4844),
    "MTSTAN": (18.85, 1446),
    "RVE (interpretable)": (16.37, 1846),
    "FFVE (source paper)": (14.08, 1149),
}.items():
    PUBLISHED[_method]["FD004"] = (_rmse, _score)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--subsets",
        default="all",
        help="Comma-separated subsets, or 'all' (default): every FDnnn the data folder holds.",
    )
    parser.add_argument(
        "--windows",
        default=",".join(str(w) for w in WINDOW_CHOICES),
        help="Candidate window lengths in cycles, chosen by grouped 5-fold CV on train engines (default "
        + ",".join(map(str, WINDOW_CHOICES))
        + ").",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the CV folds and the trees.")
    parser.add_argument(
        "--trees",
        type=int,
        default=MODEL_PARAMS["n_estimators"],
        help=f"Trees per booster (default {MODEL_PARAMS['n_estimators']}, at most {MAX_TREES}).",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=ENSEMBLE,
        help=f"Boosters averaged in the final model, merged into one ONNX tree ensemble (default {ENSEMBLE}).",
    )


def run(options: dict[str, Any], progress) -> Evaluation:
    try:
        available = available_subsets()
    except DatasetMissing as exc:
        raise CommandError(str(exc)) from None
    incomplete = incomplete_subsets()
    text = str(given(options, "subsets", "all"))
    subsets = parse_subsets(text, available, incomplete)
    windows = parse_windows(str(given(options, "windows", ",".join(map(str, WINDOW_CHOICES)))))
    trees = int(given(options, "trees", MODEL_PARAMS["n_estimators"]))
    if not 1 <= trees <= MAX_TREES:
        raise CommandError(f"--trees must be between 1 and {MAX_TREES} trees per booster, got {trees}")
    ensemble = int(given(options, "ensemble", ENSEMBLE))
    if int(given(options, "seed", 0)) < 0:
        raise CommandError(f"--seed must be a whole number >= 0, got {given(options, 'seed', 0)}")
    if not 1 <= ensemble <= 20:
        raise CommandError(f"--ensemble must be between 1 and 20 boosters, got {ensemble}")
    params = {
        **MODEL_PARAMS,
        "n_estimators": trees,
        "seed": int(given(options, "seed", 0)),
        "n_seeds": ensemble,
    }

    def load(name: str) -> CmapssSubset:
        progress(f"{name}: reading {settings.VIGIL_DATA_DIR}/cmapss")
        subset = read_subset(name)
        feasible_windows(subset, windows)
        return subset

    # Every subset is read (and checked) before any is trained: see load_parts.
    loaded, skipped = load_parts(
        subsets, load, asked=text.strip().lower() != "all", what="C-MAPSS subset", progress=progress
    )
    results = {
        name: evaluate_subset(subset, windows=windows, params=params, progress=progress)
        for name, subset in loaded
    }
    return build_report(results, params, available=available, skipped=skipped, incomplete=incomplete)


def parse_subsets(
    text: str, available: tuple[str, ...] | None = None, incomplete: dict[str, list[str]] | None = None
) -> list[str]:
    """The subsets to evaluate: ``all`` = every subset the data folder holds, else the named ones, each of
    which must be there (``available`` defaults to ``available_subsets()``; a named subset in
    ``incomplete`` is refused naming its missing files)."""
    if available is None:
        try:
            available = available_subsets()
        except DatasetMissing as exc:
            raise CommandError(str(exc)) from None
    if text.strip().lower() == "all":
        return list(available)
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in available]
    partial = [
        f"{name} lacks {', '.join(incomplete[name])}" for name in unknown if name in (incomplete or {})
    ]
    if partial:
        raise CommandError(f"subset(s) not complete in the data folder: {'; '.join(partial)}")
    if not names or unknown:
        raise CommandError(
            f"unknown subset(s) {', '.join(unknown) or text!r}; the data folder holds {', '.join(available)}"
        )
    return list(dict.fromkeys(names))


def parse_windows(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(
            f"--windows must be comma-separated whole numbers of cycles, got {text!r}"
        ) from None
    if not values or any(not 5 <= value <= 100 for value in values):
        raise CommandError(f"--windows must list lengths between 5 and 100 cycles, got {text!r}")
    return list(dict.fromkeys(values))


def rmse(predicted: np.ndarray, true: np.ndarray) -> float:
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(error**2)))


def phm08_score(predicted: np.ndarray, true: np.ndarray) -> float:
    """PHM08 score; late predictions (d > 0) cost more than early ones."""
    return training.phm08_score(predicted, true)


def evaluate_subset(
    subset: CmapssSubset, *, windows: list[int], params: dict[str, Any], progress=lambda message: None
) -> dict[str, Any]:
    """Window choice by grouped CV on train engines, final fit, test scores and alert statistics of a subset."""
    units = sorted(subset.train)
    shortest = min(len(rows) for rows in subset.test.values())
    feasible = feasible_windows(subset, windows)
    folds = engine_folds(units, CV_FOLDS, params.get("seed", 0))
    fold_params = {**params, "n_seeds": 1}
    choices = []
    for window in feasible:
        out_of_fold: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for fold in folds:
            fit_units = {u: subset.train[u] for u in units if u not in fold}
            val_units = {u: subset.train[u] for u in units if u in fold}
            spec = fit_regimes(fit_units)
            names, fit_windows = unit_windows(fit_units, spec, window_cycles=window)
            _, val_windows = unit_windows(val_units, spec, window_cycles=window)
            X, y = _stack(fit_windows)
            fold_model = training.train_rul(X, y, names, params=fold_params)
            session = runtime.reference_session(fold_model.onnx_bytes)
            for unit, w in val_windows.items():
                out_of_fold[unit] = _series(session, fold_model.output_spec, w, w.n_cycles - w.cycles)
        predicted = np.concatenate([p for p, _ in out_of_fold.values()])
        true = np.minimum(np.concatenate([t for _, t in out_of_fold.values()]), params["rul_cap"])
        cv_rmse = rmse(predicted, true)
        progress(f"{subset.name}: window {window} cycles, {CV_FOLDS}-fold CV RMSE {cv_rmse:.2f}")
        choices.append((cv_rmse, window, out_of_fold))
    cv_rmse, window, out_of_fold = min(choices, key=lambda choice: choice[0])

    spec = fit_regimes(subset.train)
    names, train_windows = unit_windows(subset.train, spec, window_cycles=window)
    X, y = _stack(train_windows)
    model = training.train_rul(X, y, names, params=params)
    # The regime step travels with the model: a version registered from it is scored the same way live.
    model.output_spec[SPEC_KEY] = spec.to_dict()
    _, test_windows = unit_windows(subset.test, spec, window_cycles=window)

    session = runtime.reference_session(model.onnx_bytes)
    test_units = sorted(subset.test)
    last_rows = []
    for unit in test_units:
        w = test_windows[unit]
        if len(w.cycles) == 0 or w.cycles[-1] != w.n_cycles:
            raise CommandError(f"{subset.name} test engine {unit}: no feature window ends at its last cycle")
        last_rows.append(w.X[-1])
    predicted = runtime.run_batch(session, np.vstack(last_rows), model.output_spec)
    true = np.array([subset.test_rul[unit] for unit in test_units], dtype=np.float64)
    cap = float(params["rul_cap"])
    scores = last_cycle_scores(predicted, true, cap)
    # The operating condition each test engine is scored in: its regime at its last cycle.
    settings_at_end = np.vstack([subset.test[unit][-1, : len(SETTINGS)] for unit in test_units])
    by_regime = regime_errors(predicted, true, cap, spec.regimes_of(settings_at_end))
    progress(
        f"{subset.name}: window {window}, test RMSE {scores['rmse']:.2f} (truth capped at {cap:g}), "
        f"{scores['rmse_given']:.2f} (as given)"
    )

    tested = {
        unit: _series(session, model.output_spec, w, subset.test_rul[unit] + (w.n_cycles - w.cycles))
        for unit, w in test_windows.items()
    }
    return {
        "subset": subset.name,
        "window_cycles": window,
        "window_choice": {str(w): round(r, 3) for r, w, _ in choices},
        "windows_not_offered": [w for w in windows if w not in feasible],
        "validation": f"grouped {CV_FOLDS}-fold CV on train engines (seed {params.get('seed', 0)})",
        "validation_rmse": cv_rmse,
        "n_train_engines": len(units),
        "n_test_engines": len(test_units),
        "shortest_test_engine_cycles": shortest,
        "regimes_found": len(spec.table),
        "n_train_windows": len(X),
        "n_features": len(names),
        **scores,
        "by_regime": by_regime,
        "predictions": {str(u): round(float(p), 3) for u, p in zip(test_units, predicted, strict=True)},
        # One window per cycle, `window` cycles long: each shares readings with the window - 1 after it.
        "alerts_held_out": alert_stats(out_of_fold, run_to_failure=True, window_overlap=window),
        "alerts_test": alert_stats(tested, run_to_failure=False, window_overlap=window),
        "model": {
            "onnx_sha256": runtime.sha256(model.onnx_bytes),
            "n_trees": model.metrics["n_trees"],
            "n_seeds": model.metrics["n_seeds"],
            "output_spec": {k: v for k, v in model.output_spec.items() if k != SPEC_KEY},
            "open_threshold": model.open_threshold,
            "clear_threshold": model.clear_threshold,
        },
        "preprocessing": spec.to_dict(),
    }


def feasible_windows(subset: CmapssSubset, windows: list[int]) -> list[int]:
    """The ``windows`` lengths that can score every test engine's last cycle (the coverage rule needs
    ``MIN_COVERAGE`` of a window) and a subset the grouped CV can split; NotEvaluable says why not."""
    shortest = min(len(rows) for rows in subset.test.values())
    feasible = [w for w in windows if int(np.ceil(MIN_COVERAGE * w)) <= shortest]
    if not feasible:
        raise NotEvaluable(
            f"{subset.name}: its shortest test engine has {shortest} cycles; every --windows length needs at "
            f"least {MIN_COVERAGE:.0%} of its cycles to score it, choose lengths up to {int(shortest / MIN_COVERAGE)}"
        )
    if len(subset.train) < 2:
        raise NotEvaluable(
            f"{subset.name}: {len(subset.train)} train engine; the grouped cross-validation needs at least 2"
        )
    return feasible


def last_cycle_scores(predicted: np.ndarray, true: np.ndarray, cap: float) -> dict[str, Any]:
    """RMSE and PHM08 of last-cycle predictions against the true RUL capped at the training cap (the
    literature's protocol: ``rmse``, ``phm08_score``) and as given (``*_given``), with the engines whose true
    RUL is above the cap: a capped model cannot predict more than the cap, so they dominate the given error."""
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    capped = np.minimum(true, cap)
    above = true > cap
    return {
        "truth_cap": cap,
        "rmse": rmse(predicted, capped),
        "phm08_score": phm08_score(predicted, capped),
        "rmse_given": rmse(predicted, true),
        "phm08_given": phm08_score(predicted, true),
        "engines_above_cap": int(above.sum()),
        "share_above_cap": float(above.mean()) if len(true) else None,
        "rmse_given_above_cap": rmse(predicted[above], true[above]) if above.any() else None,
        "rmse_at_or_below_cap": rmse(predicted[~above], true[~above]) if (~above).any() else None,
    }


def regime_errors(
    predicted: np.ndarray, true: np.ndarray, cap: float, regimes_at_end: list[tuple[int, ...]]
) -> dict[str, dict[str, Any]]:
    """``last_cycle_scores`` per operating regime (the regime of each engine's scored cycle), keyed by the regime
    code written as comma-separated integers, in code order."""
    labels = np.array([",".join(map(str, code)) for code in regimes_at_end])
    out = {}
    for label in sorted(set(labels.tolist()), key=lambda text: tuple(int(v) for v in text.split(","))):
        chosen = labels == label
        scores = last_cycle_scores(np.asarray(predicted)[chosen], np.asarray(true)[chosen], cap)
        out[label] = {"engines": int(chosen.sum()), **scores}
    return out


def engine_folds(units: list[int], k: int, seed: int) -> list[set[int]]:
    """k disjoint sets of engines covering all of them, dealt from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(np.asarray(units))
    return [set(order[i::k].tolist()) for i in range(min(k, len(units)))]


def _stack(windows: dict[int, UnitWindows]) -> tuple[np.ndarray, np.ndarray]:
    X = np.vstack([w.X for w in windows.values()])
    y = np.concatenate([(w.n_cycles - w.cycles).astype(np.float64) for w in windows.values()])
    return X, y


def _series(session, output_spec, w: UnitWindows, true_rul: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return runtime.run_batch(session, w.X, output_spec), np.asarray(true_rul, dtype=np.float64)


def alert_stats(
    series: dict[int, tuple[np.ndarray, np.ndarray]],
    *,
    run_to_failure: bool,
    open_rul: float = OPEN_RUL,
    clear_rul: float = CLEAR_RUL,
    false_above: float = FALSE_ALERT_RUL,
    window_overlap: int = 1,
) -> dict[str, Any]:
    """Alerts the lifecycle rules raise on each engine's (predicted RUL, true RUL) series.

    ``lead`` (run-to-failure engines only): the true RUL at the window that opened the first alert, i.e.
    the cycles left between that alert and the failure. ``false`` counts alerts opened while the true RUL
    was above ``false_above``.
    """
    m, n = settings.VIGIL_ALERT_OPEN_WINDOWS, settings.VIGIL_ALERT_CLEAR_WINDOWS
    leads: list[float] = []
    false_alerts = alerts = 0
    for predicted, true in series.values():
        episodes = alert_episodes(
            predicted, open_rul, clear_rul, m, n, higher=False, window_overlap=window_overlap
        )
        alerts += len(episodes)
        false_alerts += sum(1 for e in episodes if true[e.opened] > false_above)
        if run_to_failure and episodes:
            leads.append(float(true[episodes[0].opened]))
    engines = len(series)
    out: dict[str, Any] = {
        "engines": engines,
        "alerts": alerts,
        "false_alerts": false_alerts,
        "false_alerts_per_engine": false_alerts / engines if engines else None,
    }
    if run_to_failure:
        out.update(
            alerted_engines=len(leads),
            missed_engines=engines - len(leads),
            lead_median=float(np.median(leads)) if leads else None,
            lead_p10=float(np.percentile(leads, 10)) if leads else None,
        )
    return out


def build_report(
    results: dict[str, dict[str, Any]],
    params: dict[str, Any],
    *,
    available: tuple[str, ...] | None = None,
    skipped: dict[str, str] | None = None,
    incomplete: dict[str, list[str]] | None = None,
) -> Evaluation:
    """The table (Vigil's rows, then the published ones for the evaluated subsets), summary and notes; the
    notes name the subsets evaluated and, if given, the ones the data folder holds, the ones set aside
    (``skipped``: why) and the ones it holds only some files of (``incomplete``: the missing files)."""
    skipped, incomplete = skipped or {}, incomplete or {}
    cap = float(params["rul_cap"])
    rows: list[dict[str, Any]] = []
    for name, r in results.items():
        held, test = r["alerts_held_out"], r["alerts_test"]
        rows.append(
            {
                "subset": name,
                "method": f"Vigil LightGBM ({r['model']['n_seeds']} seeds, one ONNX ensemble) on "
                f"{r['window_cycles']}-cycle feature windows",
                "source": "vigil",
                "rmse": r["rmse"],
                "phm08_score": r["phm08_score"],
                "rmse_given": r["rmse_given"],
                "phm08_given": r["phm08_given"],
                "share_above_cap": r["share_above_cap"],
                "lead_median": held["lead_median"],
                "lead_p10": held["lead_p10"],
                "false_alerts_per_engine": test["false_alerts_per_engine"],
            }
        )
    for name in results:
        for method, by_subset in PUBLISHED.items():
            if name not in by_subset:
                continue
            value, score = by_subset[name]
            rows.append(
                {
                    "subset": name,
                    "method": method,
                    "source": "published",
                    "rmse": value,
                    "phm08_score": score,
                    "rmse_given": None,
                    "phm08_given": None,
                    "share_above_cap": None,
                    "lead_median": None,
                    "lead_p10": None,
                    "false_alerts_per_engine": None,
                }
            )
    summary: dict[str, Any] = {
        name: {
            "rmse": r["rmse"],
            "phm08_score": r["phm08_score"],
            "rmse_given": r["rmse_given"],
            "phm08_given": r["phm08_given"],
            "share_above_cap": r["share_above_cap"],
            "window_cycles": r["window_cycles"],
            "validation_rmse": r["validation_rmse"],
            "lead_median": r["alerts_held_out"]["lead_median"],
            "lead_p10": r["alerts_held_out"]["lead_p10"],
            "false_alerts_per_engine_held_out": r["alerts_held_out"]["false_alerts_per_engine"],
            "false_alerts_per_engine_test": r["alerts_test"]["false_alerts_per_engine"],
        }
        for name, r in results.items()
    }
    summary["evaluated_subsets"] = list(results)
    if available is not None:
        summary["available_subsets"] = list(available)
    summary["skipped_subsets"] = skipped
    summary["incomplete_subsets"] = incomplete
    summary["truth_cap"] = cap
    if "FD001" in results:
        summary["fd001_rmse_target"] = FD001_RMSE_TARGET
        summary["fd001_rmse_target_met"] = results["FD001"]["rmse"] <= FD001_RMSE_TARGET
    held_back = [name for name in (available or ()) if name not in results and name not in skipped]
    shortest = ", ".join(f"{name} {r['shortest_test_engine_cycles']}" for name, r in results.items())
    regimes = ", ".join(f"{name} {r['regimes_found']}" for name, r in results.items())
    settings_note = ""
    if params.get("n_seeds") != ENSEMBLE or params.get("n_estimators") != MODEL_PARAMS["n_estimators"]:
        settings_note = (
            f" This run: {params.get('n_seeds')} booster(s) of {params.get('n_estimators')} trees "
            "(--ensemble / --trees), not the fixed settings."
        )
    notes = [
        f"Evaluated: {', '.join(results)}"
        + (f" (the data folder also holds {', '.join(held_back)}, not asked for)" if held_back else "")
        + (f"; the data folder holds {', '.join(available)}." if available is not None else "."),
    ]
    if skipped or incomplete:
        notes.append(
            "Not evaluated: "
            + "; ".join(
                [f"{name}: {why}" for name, why in skipped.items()]
                + [f"{name}: lacks {', '.join(missing)}" for name, missing in incomplete.items()]
            )
            + "."
        )
    notes += [
        f"Protocol: RUL capped at {cap:g} cycles for training; test = the window ending at the last cycle of "
        f"each test engine vs RUL_FDxxx. rmse / phm08_score: truth capped at {cap:g} (the literature's protocol,"
        " Heimes 2008 onwards, against which the published rows are quoted); rmse_given / phm08_given: truth as "
        "given. share_above_cap = share of test engines whose true RUL exceeds the cap: a capped model predicts "
        f"at most {cap:g} for them, so they dominate the as-given error (see 'Above the cap' below). PHM08 "
        "S = Σ exp(-d/13)-1 (d<0) + exp(d/10)-1 (d>=0), d = predicted - true. Predictions come from onnxruntime "
        "(detection.runtime) on the ONNX artifact train_rul exports, the one a registered version scores.",
        "Features: detection.pipeline.Pipeline windows of the model's spec (regime standardisation, then "
        "detection.features: mean, std, min, max, slope, diff RMS) of 14 sensors, 1 cycle = 1 hour, one window "
        "per cycle. A window is scored once it holds half its cycles (the product's 50 % coverage rule), so "
        f"short test engines are scored on a partial window (shortest test engine, cycles: {shortest}).",
        f"Selection on train engines only: grouped {CV_FOLDS}-fold CV (engines dealt by a seeded permutation, "
        "regime table refitted per fold) picks the window length from --windows by the RMSE over all "
        "out-of-fold windows (capped truth; 'validation_rmse'); a length is offered only if the shortest test "
        "engine holds half a window (lengths, never RUL). LightGBM settings and the "
        f"{ENSEMBLE}-seed ensemble were fixed by the same CV on FD001 train engines (cmapss module docstring); "
        f"the cap is the literature's 125, not tuned. The test set is scored once.{settings_note}",
        "Model: the boosters of consecutive seeds averaged by merging their trees (leaf values x 1/k) into one "
        "TreeEnsembleRegressor, so the product runs one ONNX graph and TreeSHAP on it stays additive.",
        "Operating regimes: detection.regimes standardises each sensor per regime (settings rounded: "
        "altitude, Mach x 100, throttle; moments from train cycles only) before the windows; the table is "
        "stored as the model's output_spec['regimes'] (JSON details, 'preprocessing') and the live scorer "
        "applies the same function to such a version's readings. Regimes found in each subset's train "
        f"cycles (own moments from {MIN_REGIME_ROWS} cycles on): {regimes}.",
        f"Alerts: alert_episodes, lower-is-worse, open below {OPEN_RUL:g} cycles / clear above {CLEAR_RUL:g}, "
        f"{settings.VIGIL_ALERT_OPEN_WINDOWS} windows to open / {settings.VIGIL_ALERT_CLEAR_WINDOWS} to close. "
        "lead_* = cycles from the first alert to failure on the train engines (run to failure), each scored "
        "out of fold by the CV model that did not see it; false_alerts_per_engine = alerts opened while the "
        f"true RUL > {FALSE_ALERT_RUL:g}, on test engines (out-of-fold train engines in the JSON summary).",
    ]
    for name, r in results.items():
        if r["engines_above_cap"]:
            notes.append(
                f"Above the cap, {name}: {r['engines_above_cap']} of {r['n_test_engines']} test engines "
                f"({r['share_above_cap']:.0%}) have a true RUL above {cap:g}; as-given RMSE on them "
                f"{r['rmse_given_above_cap']:.2f}, on the others {r['rmse_at_or_below_cap']:.2f}."
            )
    for name, r in results.items():
        if len(r["by_regime"]) > 1:
            parts = [
                f"({code}) {e['engines']} engines: {e['rmse']:.2f} capped / {e['rmse_given']:.2f} given"
                for code, e in r["by_regime"].items()
            ]
            notes.append(
                f"Per operating regime, {name} (regime of the scored last cycle: altitude kft, Mach x 100, "
                f"throttle; RMSE): " + "; ".join(parts) + "."
            )
    notes.append(
        "Published rows: DATASET_CARD.md (LLerDagu/RUL-FFVE Benchmark.md, Table 4) and STAR (Fan et al., "
        "Sensors 2024, RMSE as quoted in issue 13); papers differ in window length and some in the cap, most "
        "cap the test truth at 125."
        + (f" FD001 target: RMSE <= {FD001_RMSE_TARGET:g} (capped truth)." if "FD001" in results else "")
    )
    params_used = {k: v for k, v in params.items() if k != "background_size"}
    return Evaluation(
        dataset="cmapss",
        rows=rows,
        summary=summary,
        notes=notes,
        details={"params": params_used, "subsets": results},
    )
