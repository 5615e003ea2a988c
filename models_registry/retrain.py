"""Retraining from operator feedback: verdicts become labels, labels and normal data become a candidate.

``start_retrain`` records a queued RetrainRun and enqueues ``retrain_model_task`` after commit;
``execute_run`` (the task and ``manage.py retrain``) claims it, moves its stage and percent forward and ends
it succeeded with the candidate and its training report, or failed with the reason.

Labels (``feedback_events``): the Label rows of the asset type's active assets written by operator feedback
or by hand, each classed by the verdict in force on it — ``confirmed_fault``, ``not_actionable`` and
``missed_failure`` are positives, ``false_alarm`` is normal with its reason, a hand-entered label keeps its
kind. Simulator and dataset ground truth is not operator knowledge and is not used. A window overlapping a
positive is a fault window, else one overlapping a false alarm is a normal-by-feedback window, else it is
unlabelled and taken as normal — except within ``GUARD_WINDOWS`` windows of a positive, where a fault
builds up or fades without anyone having labelled it (left out of fit and metrics).

Split: of each class with at least two labelled events, the most recent quarter (at least one) is held out;
unlabelled windows are held out in blocks of ten windows, a fifth of the blocks (seeded). Offline metrics of
the candidate and of the current champion are computed on the same held-out windows.

Anomaly kind (PCA T² + Q, models_registry.training.train_anomaly), fitted on the training split's normal
windows. Windows that a false alarm relabelled normal join the fit data, repeated so that they weigh at
least ``FEEDBACK_NORMAL_SHARE`` of it (a few minutes of a new operating point would otherwise barely move the
covariance), so the model learns that operating point. Thresholds (``choose_thresholds``), with M the
lifecycle's opening run (VIGIL_ALERT_OPEN_WINDOWS) and a window's *run strength* the lowest score of the M
consecutive windows ending at it (the highest open threshold at which that window would open an alert):

* t_fault = the weakest labelled fault's strongest run; t_normal = the strongest run made only of normal
  windows (unlabelled and false-alarm ones). Faults whose strongest run is below the 99th percentile of the
  normal runs cannot be told from normal by this model and do not pull the threshold down (reported).
* open = √(t_normal · t_fault) when t_normal < t_fault: every labelled fault opens an alert, no normal run
  does, with the same relative margin on both sides; otherwise open sits just below t_fault (every labelled
  fault still caught, the fewest normal windows above it). With no positive labels, open = 1.1 · t_normal.
* clear = min(99th percentile of the normal windows' scores, 0.9 · open).

Failure-classifier kind: LightGBM (training.train_failure_classifier) on the training split's fault windows
(positives) and normal windows, labels used directly.

RUL kind: each positive label is a failure; services.fit_rul fits the training split's windows whose
remaining life is known, in the champion's unit and with its cap and limits; the hold-out figures are
RMSE, MAE and the PHM08 score against the capped truth.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from detection import features
from detection.baseline import baseline_mode
from detection.pipeline import Pipeline, PipelineError
from detection import runtime
from models_registry import cache, training
from models_registry.services import (
    baseline_training_windows,
    current_champion,
    fit_rul,
    register_trained,
    training_provenance,
)
from models_registry.choices import ModelKind, RetrainStatus, WindowLabel
from models_registry.training_data import (
    LabelEvent,
    TrainingDataError,
    label_windows,
    load_training_windows,
    reason_words,
    source_words,
)
from models_registry.models import RUL_UNIT_S, ModelVersion, RetrainRun
from models_registry.training import TrainingError, jsonable
from plant.choices import LabelKind, LabelSource
from plant.models import AssetType, Label

logger = logging.getLogger(__name__)

RETRAINABLE_KINDS = (ModelKind.ANOMALY, ModelKind.FAILURE_CLASSIFIER, ModelKind.RUL)
GUARD_WINDOWS = 5
FEEDBACK_NORMAL_SHARE = 0.10
MAX_FEEDBACK_REPEATS = 50
HOLDOUT_EVENT_SHARE = 0.25
HOLDOUT_BLOCK_SHARE = 0.20
BLOCK_WINDOWS = 10
MIN_WINDOWS = 50
STALE_RUN = timedelta(hours=2)  # a "running" run older than this lost its worker and may be claimed again

# (key, what the page shows, percent when the stage starts)
STAGES: tuple[tuple[str, str, int], ...] = (
    ("labels", "Collecting feedback labels", 5),
    ("windows", "Building feature windows", 15),
    ("split", "Splitting training and held-out data", 40),
    ("fit", "Fitting the model", 50),
    ("thresholds", "Choosing thresholds", 70),
    ("evaluate", "Evaluating candidate and champion", 80),
    ("register", "Registering the candidate", 92),
)
STAGE_LABELS = {key: label for key, label, _ in STAGES}
STAGE_PERCENT = {key: percent for key, _, percent in STAGES}


Progress = Callable[[str], None]


# The one training error: a retraining that cannot run (unknown kind, too few labels or windows) fails for
# the same reasons, with the same kind of message, as train_model.
RetrainError = TrainingError


# --- runs -------------------------------------------------------------------------------------------------


def start_retrain(
    asset_type: AssetType, kind: str, *, actor: Any = None, since: datetime | None = None
) -> RetrainRun:
    """Record a queued run and enqueue its task after commit; RetrainError for a request check_request
    refuses."""
    check_request(asset_type, kind, since)
    run = RetrainRun.objects.create(
        asset_type=asset_type,
        kind=kind,
        since=since,
        requested_by=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
    )
    transaction.on_commit(lambda: enqueue_run(run.pk))
    return run


# The retrain task lives in models_registry.tasks, which imports this module: ModelsRegistryConfig.ready()
# hands its sender in, so this module never imports the tasks (no import cycle, not even a hidden one).
_send_run: Callable[[int], None] | None = None


def provide_run_sender(send: Callable[[int], None]) -> None:
    """Register how a queued run is sent to a worker (once, from an AppConfig)."""
    global _send_run
    _send_run = send


def enqueue_run(run_id: int) -> None:
    """Send the run to a worker; an unreachable broker fails the run with a clear reason instead of hanging."""
    if _send_run is None:
        raise ImproperlyConfigured(
            "no retrain run sender registered (models_registry.retrain.provide_run_sender)"
        )
    try:
        _send_run(run_id)
    except Exception as exc:  # kombu raises several unrelated types when Redis is down
        logger.warning("retrain run %s could not be queued: %s", run_id, exc)
        _finish(
            run_id, failed=f"could not queue the run: the task queue is unreachable ({type(exc).__name__})"
        )


def check_request(
    asset_type: AssetType, kind: str, since: datetime | None, *, field: str = "“since”"
) -> None:
    """RetrainError for a request no run could carry out, before a run is recorded (the form and `manage.py
    retrain` alike): a kind that cannot retrain, or a “since” that selects nothing to retrain from — in the
    future, or after the last operator feedback on the type's active assets (operator_feedback). `field`:
    what the caller calls “since” (the command's --since)."""
    check_kind(kind)
    if since is None:
        return
    if since > timezone.now():
        raise RetrainError(f"{field} {since:%Y-%m-%d %H:%M} is in the future: there is no data after it yet")
    operator_feedback(asset_type, since, field=field)


def check_kind(kind: str) -> str:
    if kind not in RETRAINABLE_KINDS:
        raise RetrainError(
            f"cannot retrain kind {kind!r} from feedback; choose one of {', '.join(RETRAINABLE_KINDS)}"
        )
    return kind


def claim_run(run_id: int) -> bool:
    """Compare-and-set queued (or stale running) → running; False when another worker has it or it is done."""
    now = timezone.now()
    runs = RetrainRun.objects.filter(pk=run_id)
    fresh = runs.filter(status=RetrainStatus.QUEUED)
    stale = runs.filter(status=RetrainStatus.RUNNING, started_at__lt=now - STALE_RUN)
    fields = {"status": RetrainStatus.RUNNING, "started_at": now, "stage": "Starting", "percent": 1}
    return bool(fresh.update(**fields) or stale.update(**fields))


def execute_run(run_id: int, *, echo: Callable[[str, int], None] | None = None) -> RetrainRun | None:
    """Claim and run a retrain; returns the finished run (None if it was not claimable). Never raises for
    bad data: the run ends failed with the reason."""
    if not claim_run(run_id):
        return None
    run = RetrainRun.objects.select_related("asset_type", "requested_by").get(pk=run_id)

    def progress(stage: str) -> None:
        label, percent = STAGE_LABELS[stage], STAGE_PERCENT[stage]
        RetrainRun.objects.filter(pk=run_id, status=RetrainStatus.RUNNING).update(
            stage=label, percent=percent
        )
        if echo is not None:
            echo(label, percent)

    try:
        version, report = retrain_from_feedback(
            run.asset_type,
            run.kind,
            since=run.since,
            actor=run.requested_by,
            progress=progress,
            run_id=run.pk,
        )
    except RetrainError as exc:
        _finish(run_id, failed=str(exc))
    except Exception as exc:  # the run must never stay "running" because of a bug or a broken artifact
        logger.exception("retrain run %s failed", run_id)
        _finish(run_id, failed=f"internal error: {type(exc).__name__}: {str(exc)[:500]}")
    else:
        _finish(run_id, version=version, report=report)
    run.refresh_from_db()
    return run


def _finish(
    run_id: int, *, failed: str = "", version: ModelVersion | None = None, report: dict | None = None
) -> None:
    now = timezone.now()
    if failed:
        RetrainRun.objects.filter(pk=run_id).exclude(status=RetrainStatus.SUCCEEDED).update(
            status=RetrainStatus.FAILED,
            error=failed,
            finished_at=now,  # the stage says where it stopped
        )
        return
    RetrainRun.objects.filter(pk=run_id).update(
        status=RetrainStatus.SUCCEEDED,
        stage="Done",
        percent=100,
        result=version,
        report=report or {},
        finished_at=now,
    )


# --- labels -----------------------------------------------------------------------------------------------


def feedback_events(
    asset_ids: list[int],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    excluded: bool = False,
) -> list[LabelEvent]:
    """Operator labels (feedback and hand-entered) on the assets overlapping [start, end], in time order.

    Feedback rewrites an alert's Label on every verdict or correction, so the Label rows alone hold the
    verdict in force: their kind says positive or not, their `verdict` which verdict it was. ``excluded``:
    also the faulty sensors' ranges (LabelKind.EXCLUDED, ``LabelEvent.excluded``), which training leaves
    out; they are no verdict on the machine, so the comparisons never count them."""
    labels = Label.objects.filter(
        asset_id__in=asset_ids, source__in=[LabelSource.FEEDBACK, LabelSource.MANUAL]
    ).order_by("start", "pk")
    if not excluded:
        labels = labels.exclude(kind=LabelKind.EXCLUDED)
    if start is not None:
        labels = labels.filter(end__gte=start)
    if end is not None:
        labels = labels.filter(start__lte=end)
    events = []
    for pk, asset_id, label_start, label_end, kind, reason, source, verdict in labels.values_list(
        "pk", "asset_id", "start", "end", "kind", "reason", "source", "verdict"
    ):
        positive = kind == LabelKind.FAULT
        if kind == LabelKind.EXCLUDED:
            events.append(
                LabelEvent(
                    pk, asset_id, label_start.timestamp(), label_end.timestamp(), False, "excluded", "", True
                )
            )
            continue
        if source == LabelSource.MANUAL:
            verdict = "manual_fault" if positive else "manual_normal"
        events.append(
            LabelEvent(
                label_id=pk,
                asset_id=asset_id,
                start_s=label_start.timestamp(),
                end_s=label_end.timestamp(),
                positive=positive,
                source=verdict or ("confirmed_fault" if positive else "false_alarm"),
                reason="" if positive else (reason or "unspecified"),
            )
        )
    return events


def operator_feedback(
    asset_type: AssetType, since: datetime | None, *, field: str = "“since”"
) -> list[LabelEvent]:
    """The feedback labels (faulty sensors' ranges included) a retrain of `asset_type` from `since` learns
    from; RetrainError when there is no active asset or no operator feedback to learn from (`field` names
    “since” as the caller does)."""
    asset_ids = list(asset_type.assets.filter(is_active=True).values_list("pk", flat=True))
    if not asset_ids:
        raise RetrainError(f"there is no active {asset_type.name} asset to retrain on")
    events = feedback_events(asset_ids, start=since, excluded=True)
    if any(not event.excluded for event in events):
        return events
    if since is not None:
        earlier = [event.end_s for event in feedback_events(asset_ids) if not event.excluded]
        if earlier:
            last = datetime.fromtimestamp(max(earlier), tz=timezone.get_current_timezone())
            raise RetrainError(
                f"no operator feedback on {asset_type.name} assets since {since:%Y-%m-%d %H:%M}: the last "
                f"ends {last:%Y-%m-%d %H:%M}; choose an earlier {field}, or leave it out"
            )
    where = f" since {since:%Y-%m-%d %H:%M}" if since else ""
    # Said to the engineer on the run page: what to do in the product, not which command to run.
    raise RetrainError(
        f"no operator feedback on {asset_type.name} assets{where}: there is nothing to retrain from. "
        "Give verdicts on some of their alerts on the Alerts board (confirmed fault, false alarm, not "
        "actionable), or label periods of fault or normal running in the Console (Plant › Labels), "
        "then retrain"
    )


def holdout_mask(
    classes: np.ndarray, event_of: np.ndarray, events: list[LabelEvent], ends: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Held-out windows: the latest quarter of each class's labelled events (classes with ≥ 2 events) and a
    fifth of the unlabelled windows in blocks of ten consecutive windows."""
    held = np.zeros(len(classes), dtype=bool)
    for positive in (True, False):
        indexes = [i for i, event in enumerate(events) if event.positive == positive]
        indexes = [i for i in indexes if np.any(event_of == i)]
        if len(indexes) < 2:
            continue
        count = max(1, int(round(len(indexes) * HOLDOUT_EVENT_SHARE)))
        held |= np.isin(event_of, sorted(indexes, key=lambda i: events[i].start_s)[-count:])
    unlabelled = classes == WindowLabel.UNLABELLED
    if unlabelled.any():
        step = float(np.min(np.diff(np.unique(ends)))) if len(np.unique(ends)) > 1 else 1.0
        blocks = np.floor(ends / (BLOCK_WINDOWS * step)).astype(np.int64)
        unique = np.unique(blocks[unlabelled])
        rng = np.random.default_rng(seed)
        chosen = rng.choice(unique, size=int(round(len(unique) * HOLDOUT_BLOCK_SHARE)), replace=False)
        held |= unlabelled & np.isin(blocks, chosen)
    return held


# --- thresholds -------------------------------------------------------------------------------------------


def run_strengths(scores: np.ndarray, groups: np.ndarray, m: int) -> np.ndarray:
    """Per window: the lowest score of the m consecutive windows ending at it within its group (-inf where
    fewer than m windows precede it). Windows must be in time order within each group."""
    out = np.full(len(scores), -np.inf)
    for group in np.unique(groups):
        index = np.flatnonzero(groups == group)
        values = scores[index]
        if len(values) < m:
            continue
        view = np.lib.stride_tricks.sliding_window_view(values, m).min(axis=1)
        out[index[m - 1 :]] = view
    return out


def choose_thresholds(
    scores: np.ndarray,
    classes: np.ndarray,
    event_of: np.ndarray,
    groups: np.ndarray,
    m: int,
) -> dict[str, Any]:
    """Open and clear thresholds by the rule in the module docstring, with what it found."""
    normal = (classes == WindowLabel.UNLABELLED) | (classes == WindowLabel.NORMAL)
    normal_runs = run_strengths(np.where(normal, scores, -np.inf), groups, m)
    normal_runs = normal_runs[np.isfinite(normal_runs)]
    if not len(normal_runs):
        raise RetrainError("no run of normal windows long enough to set thresholds; load more normal data")
    t_normal = float(normal_runs.max())
    floor = float(np.quantile(normal_runs, 0.99))
    runs = run_strengths(scores, groups, m)
    strengths = {
        int(e): float(runs[event_of == e].max()) for e in np.unique(event_of[classes == WindowLabel.FAULT])
    }
    learnable = {e: s for e, s in strengths.items() if s > floor}
    not_separable = sorted(e for e in strengths if e not in learnable)
    if not learnable:
        open_t, rule = (
            1.1 * t_normal if t_normal > 0 else t_normal + 1e-3,
            "no labelled fault: above every normal run",
        )
        t_fault = None
    else:
        t_fault = min(learnable.values())
        if t_normal < t_fault:
            open_t = math.sqrt(t_normal * t_fault) if t_normal > 0 else (t_normal + t_fault) / 2
            rule = "separable: geometric midpoint of the strongest normal run and the weakest fault"
        else:
            open_t = t_fault - 1e-6 * max(1.0, abs(t_fault))
            rule = "overlapping: just below the weakest fault, so every labelled fault is still caught"
    clear_t = min(float(np.quantile(scores[normal], 0.99)), 0.9 * open_t if open_t > 0 else open_t)
    return {
        "open": float(open_t),
        "clear": float(min(clear_t, open_t)),
        "rule": rule,
        "t_normal": t_normal,
        "t_fault": t_fault,
        "fault_strengths": strengths,
        "not_separable": not_separable,
    }


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(
    scores: np.ndarray,
    open_t: float,
    classes: np.ndarray,
    event_of: np.ndarray,
    groups: np.ndarray,
    events: list[LabelEvent],
    m: int,
) -> dict[str, Any]:
    """Held-out figures of one model: labelled faults caught (an M-run above open), false-alarm ranges still
    flagged, normal windows above open, and window-level precision / recall."""
    runs = run_strengths(scores, groups, m)
    fault_ids = np.unique(event_of[classes == WindowLabel.FAULT])
    normal_ids = np.unique(event_of[classes == WindowLabel.NORMAL])
    caught = sum(bool(runs[event_of == e].max() > open_t) for e in fault_ids)
    flagged = sum(bool(runs[event_of == e].max() > open_t) for e in normal_ids)
    above = scores > open_t
    fault_w, normal_w = (
        classes == WindowLabel.FAULT,
        (classes == WindowLabel.UNLABELLED) | (classes == WindowLabel.NORMAL),
    )
    tp, fp = int((above & fault_w).sum()), int((above & normal_w).sum())
    return {
        "fault_events": int(len(fault_ids)),
        "fault_events_caught": int(caught),
        "event_recall": caught / len(fault_ids) if len(fault_ids) else None,
        "false_alarm_events": int(len(normal_ids)),
        "false_alarm_events_flagged": int(flagged),
        "normal_windows": int(normal_w.sum()),
        "normal_windows_above_open": fp,
        "normal_window_rate": fp / int(normal_w.sum()) if normal_w.any() else None,
        "window_precision": tp / (tp + fp) if tp + fp else None,
        "window_recall": tp / int(fault_w.sum()) if fault_w.any() else None,
    }


def score_with(version: ModelVersion, X: np.ndarray, names: list[str]) -> np.ndarray | None:
    """The version's scores of feature rows named `names` through its scoring pipeline (detection.pipeline:
    its feature columns, one batch); None when it needs features they lack or standardises its readings per
    operating regime (these rows are windows of raw readings, so its scores of them would mean nothing).
    The rows are already baselined when the version is (``baseline_training_windows``)."""

    try:
        pipeline = Pipeline.from_spec(version.feature_spec, version.output_spec)
        columns = pipeline.columns(names)
    except PipelineError:
        return None
    if pipeline.regime is not None:
        return None
    return pipeline.score(cache.loaded(version), X[:, columns], finite=False)


# --- the retraining ---------------------------------------------------------------------------------------


def retrain_from_feedback(
    asset_type: AssetType,
    kind: str,
    *,
    since: datetime | None = None,
    actor: Any = None,
    progress: Progress | None = None,
    run_id: int | None = None,
    seed: int = 0,
) -> tuple[ModelVersion, dict[str, Any]]:
    """Train a candidate of `kind` for `asset_type` from operator feedback and normal data (see module)."""
    step = progress or (lambda stage: None)
    check_kind(kind)
    step("labels")
    events = operator_feedback(asset_type, since)
    step("windows")
    champion = current_champion(asset_type, kind)
    # A champion fed per-asset baselined windows is replaced by one trained the same way: the windows
    # its false alarms were raised on only mean the same thing to both models after the same subtraction.
    baseline_info = None
    try:
        # The candidate reads the champion's roles, so both are judged on the same assets and features.
        roles = features.roles_read(champion.feature_spec) if champion is not None else None
        data = load_training_windows(asset_type, start=since, roles=roles)
        mode = baseline_mode(champion.output_spec) if champion is not None else None
        if mode is not None:  # the champion's mode: a mean vector or a robust calibration per asset
            baseline_info = baseline_training_windows(data, mode)
    except TrainingDataError as exc:
        raise RetrainError(str(exc)) from None
    complete = np.isfinite(data.X).all(axis=1)
    order = np.lexsort((data.ends[complete], data.asset_ids[complete]))  # per asset, in time order
    X = data.X[complete][order].astype(np.float64)
    ends, groups = data.ends[complete][order], data.asset_ids[complete][order]
    if len(X) < MIN_WINDOWS:
        raise RetrainError(
            f"only {len(X)} complete feature windows for {asset_type.slug!r} (need at least {MIN_WINDOWS}); "
            "load more readings or choose an earlier “since”"
        )
    window_s = float(asset_type.window_s)
    classes, event_of = label_windows(ends, groups, window_s, events, guard_windows=GUARD_WINDOWS)
    used = sorted({int(e) for e in event_of[event_of >= 0]})
    if not used:
        raise RetrainError(
            f"the {len(events)} feedback label(s) do not overlap any complete feature window of "
            f"{asset_type.slug!r}; the readings they refer to are missing"
        )

    step("split")
    held = holdout_mask(classes, event_of, events, ends, seed=seed)
    train = ~held & (classes != WindowLabel.GUARD)
    m = int(settings.VIGIL_ALERT_OPEN_WINDOWS)

    step("fit")
    if kind == ModelKind.ANOMALY:
        trained, fit_info = _fit_anomaly(
            X, classes, train, data.feature_names, seed, champion_detector(champion)
        )
        session = runtime.load_session(trained.onnx_bytes)
        scores = runtime.run_batch(session, X, trained.output_spec)
        step("thresholds")
        train_idx = np.flatnonzero(train)
        picked = choose_thresholds(
            scores[train_idx], classes[train_idx], event_of[train_idx], groups[train_idx], m
        )
        open_t, clear_t = picked["open"], picked["clear"]
        thresholds = {
            "rule": picked["rule"],
            "open": open_t,
            "clear": clear_t,
            "strongest_normal_run": picked["t_normal"],
            "weakest_fault_run": picked["t_fault"],
            "faults_not_separable": [_event_name(events[e]) for e in picked["not_separable"]],
        }
    elif kind == ModelKind.FAILURE_CLASSIFIER:
        y = (classes == WindowLabel.FAULT).astype(np.int64)
        trained = training.train_failure_classifier(
            X[train], y[train], data.feature_names, params={"seed": seed}
        )
        fit_info = {"rows": int(train.sum()), "positives": int(y[train].sum())}
        step("thresholds")
        session = runtime.load_session(trained.onnx_bytes)
        scores = runtime.run_batch(session, X, trained.output_spec)
        open_t, clear_t = trained.open_threshold, trained.clear_threshold
        thresholds = {"rule": "best F1 on a stratified validation split", "open": open_t, "clear": clear_t}
    else:
        # In the champion's unit, cap and limits (its training params), so the candidate's scores and
        # thresholds mean the same thing and the hold-out compares like with like.
        before = champion.provenance if champion is not None else {}
        unit_s = champion.rul_unit_s if champion is not None else RUL_UNIT_S
        kept = {k: v for k, v in (before.get("params") or {}).items() if k in training.RUL_DEFAULTS}
        trained, fit_info, rul = fit_rul(
            X, ends, groups, events, data.feature_names, data_end_s=data.end.timestamp(),
            params={**kept, "seed": seed}, unit_s=unit_s, what=asset_type.slug, rows=train,
        )  # fmt: skip
        step("thresholds")
        open_t, clear_t = trained.open_threshold, trained.clear_threshold
        thresholds = {
            "rule": "fixed remaining-life limits (open_rul, clear_rul)",
            "open": open_t,
            "clear": clear_t,
        }

    step("evaluate")
    if kind == ModelKind.RUL:
        hold_idx = np.flatnonzero(held & (classes != WindowLabel.GUARD) & np.isfinite(rul))
        session = runtime.load_session(trained.onnx_bytes)
        truth = np.minimum(rul[hold_idx], trained.params["rul_cap"])

        def judge(scores: np.ndarray, open_t: float) -> dict[str, Any]:
            return training.rul_metrics(scores, truth)

        scores = np.full(len(X), np.nan)
        scores[hold_idx] = runtime.run_batch(session, X[hold_idx], trained.output_spec)
    else:
        hold_idx = np.flatnonzero(held & (classes != WindowLabel.GUARD))
        args = (classes[hold_idx], event_of[hold_idx], groups[hold_idx], events, m)

        def judge(scores: np.ndarray, open_t: float) -> dict[str, Any]:
            return evaluate(scores, open_t, *args)

    holdout = {"candidate": judge(scores[hold_idx], open_t), "champion": None}
    if champion is not None:
        champion_scores = score_with(champion, X[hold_idx], data.feature_names)
        if champion_scores is not None:
            holdout["champion"] = {
                "version": str(champion),
                **judge(champion_scores, champion.open_threshold),
            }
    report = _report(
        asset_type, kind, since, data, events, used, classes, held, fit_info, thresholds, holdout, champion
    )
    trained = dataclasses.replace(
        trained,
        open_threshold=float(open_t),
        # Hysteresis: a higher-is-worse score clears below where it opens, a remaining life above.
        clear_threshold=float(max(clear_t, open_t) if kind == ModelKind.RUL else min(clear_t, open_t)),
        metrics={**jsonable(holdout["candidate"]), "source": "held-out split of the retrain run"},
    )

    step("register")
    name = champion.name if champion is not None else f"{asset_type.slug}-{kind}"
    extra = {"rul": {k: v for k, v in fit_info.items() if k != "rows"}} if kind == ModelKind.RUL else {}
    provenance = training_provenance(
        asset_type, data, seed=seed, retrain_run=run_id, retrain_report=report, **extra
    )
    version = register_trained(
        trained,
        name=name,
        asset_type=asset_type,
        provenance=provenance,
        actor=actor,
        baseline_info=baseline_info,
    )
    report["candidate"] = {"id": version.pk, "name": str(version)}
    return version, report


def champion_detector(champion: ModelVersion | None) -> str:
    """The detector (detection.detectors) a retrained anomaly candidate uses: the champion's, so that
    retraining a univariate or combined champion does not silently return to the default PCA."""
    params = ((champion.provenance or {}).get("params") or {}) if champion is not None else {}
    return str(params.get("detector") or training.ANOMALY_DEFAULTS["detector"])


def _fit_anomaly(
    X: np.ndarray, classes: np.ndarray, train: np.ndarray, names: list[str], seed: int, detector: str
) -> tuple[Any, dict[str, Any]]:
    base = np.flatnonzero(train & (classes == WindowLabel.UNLABELLED))
    relabelled = np.flatnonzero(train & (classes == WindowLabel.NORMAL))
    repeats = 1
    if len(relabelled):
        repeats = min(
            MAX_FEEDBACK_REPEATS, max(1, math.ceil(FEEDBACK_NORMAL_SHARE * len(base) / len(relabelled)))
        )
    rows = np.concatenate([base, np.repeat(relabelled, repeats)])
    if len(rows) < MIN_WINDOWS:
        raise RetrainError(
            f"only {len(rows)} normal windows to learn from after the hold-out (need {MIN_WINDOWS}); "
            "load more normal readings"
        )
    # Shuffled: train_anomaly holds out its last rows for its default thresholds, which are replaced here.
    rows = np.random.default_rng(seed).permutation(rows)
    trained = training.train_anomaly(
        X[rows], names, params={"holdout_fraction": 0.1, "seed": seed, "detector": detector}
    )
    info = {
        "rows": int(len(rows)),
        "unlabelled_windows": int(len(base)),
        "false_alarm_windows": int(len(relabelled)),
        "false_alarm_repeats": int(repeats),
        "n_components": trained.metrics.get("n_components"),
    }
    return trained, info


def _event_name(event: LabelEvent) -> str:
    start = datetime.fromtimestamp(event.start_s, tz=timezone.get_current_timezone())
    return f"label #{event.label_id} ({event.source}, asset {event.asset_id}, {start:%Y-%m-%d %H:%M})"


def report_words(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored training report (``_report``) as the pages show it: its data range as times and its label
    sources and false-alarm reasons in words, not keys (the stored report keeps the keys)."""
    if not report:
        return report
    labels = report.get("labels") or {}
    data_range = {
        edge: datetime.fromisoformat(value)
        for edge, value in (report.get("data_range") or {}).items()
        if isinstance(value, str)
    }
    return {
        **report,
        "data_range": data_range,
        "sources": [(source_words(key), n) for key, n in (labels.get("by_source") or {}).items()],
        "reasons": [
            (reason_words(key) or "no reason given", n)
            for key, n in (labels.get("false_alarm_reasons") or {}).items()
        ],
    }


def _report(
    asset_type: AssetType,
    kind: str,
    since: datetime | None,
    data: Any,
    events: list[LabelEvent],
    used: list[int],
    classes: np.ndarray,
    held: np.ndarray,
    fit_info: dict[str, Any],
    thresholds: dict[str, Any],
    holdout: dict[str, Any],
    champion: ModelVersion | None,
) -> dict[str, Any]:
    used_events = [events[i] for i in used]
    return jsonable(
        {
            "asset_type": asset_type.slug,
            "kind": kind,
            "since": since.isoformat() if since else None,
            "data_range": {"start": data.start.isoformat(), "end": data.end.isoformat()},
            "labels": {
                "by_source": dict(Counter(event.source for event in used_events)),
                "false_alarm_reasons": dict(
                    Counter(event.reason for event in used_events if not event.positive)
                ),
                "positives": sum(event.positive for event in used_events),
                "normals": sum(not event.positive for event in used_events),
                "without_windows": len(events) - len(used_events),
            },
            "windows": {
                "total": int(len(classes)),
                "fault": int((classes == WindowLabel.FAULT).sum()),
                "normal_by_feedback": int((classes == WindowLabel.NORMAL).sum()),
                "unlabelled": int((classes == WindowLabel.UNLABELLED).sum()),
                "guard_excluded": int((classes == WindowLabel.GUARD).sum()),
                "train": int((~held & (classes != WindowLabel.GUARD)).sum()),
                "held_out": int((held & (classes != WindowLabel.GUARD)).sum()),
            },
            "fit": fit_info,
            "thresholds": thresholds,
            "holdout": holdout,
            "champion": str(champion) if champion else None,
        }
    )
