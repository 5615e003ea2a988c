"""Alert decisions: the scorer's windows through the rule engine, persisted; and explanation completion.

``apply_scores(asset, version, windows)`` is called by the scorer inside the transaction that stored those
windows' Score rows. The rules — open after M = VIGIL_ALERT_OPEN_WINDOWS consecutive windows above the open
threshold, auto-close after N = VIGIL_ALERT_CLEAR_WINDOWS below the clear threshold, hysteresis in between,
updates of peak / last seen / count, resuming after maintenance or an expired snooze — live only in
``detection.rules.step``. This module loads the engine's state (the active Alert row, the last window of
the previous alert, the stored Score rows before the new windows), calls ``step`` and persists the
transitions it returns (Alert and AlertEvent rows, explanations, the ids to broadcast):

* Consecutive counts are read from the stored Score rows of (asset, version), never from counters: the
  stored windows before and between the new ones are fed to the engine as context (they count in the
  runs, but no rule fires on them), and a window already attributed to an earlier alert of the same key
  cannot open another.
* One active visible alert per (asset, kind), one active shadow alert per (asset, shadow version): more
  anomalous windows update its peak, last seen and count. Champion versions raise visible alerts, shadow
  versions would-be alerts (``is_shadow``); candidates and retired versions nothing.
* An alert whose opening window ends inside a maintenance window is created ``suppressed``; it becomes
  open if the condition is still there on an anomalous window after the maintenance. A snoozed alert
  keeps updating silently and returns to open once the snooze has expired while the score is still at or
  above the clear threshold.
* Severity (see ``severity_for``): how far the peak is past the open threshold, in units of the
  hysteresis band (open - clear), shifted by the asset's criticality.
* Data-quality gate (see ``categorize``): the flags in the window of the sensor roles that dominate the
  explanation (top roles by |φ| covering 60 % of the total, at most 3) decide where the technician looks.
  Out of range or stuck: sensor_fault ("Check the sensor"); a lone spike decides nothing (see detection.gate.GATE_FLAGS).
  A gap and no such flag: data_link
  ("Check the data link"): readings went missing, which is the gateway's, bridge's, network's or PLC
  connection's doing, not the sensor's (plant.choices.AVAILABILITY_FLAGS, the rule sensor health uses).
  Without an explanation yet, any flagged role decides provisionally. An alert whose top role's sensor is
  marked for calibration (``plant.Sensor.needs_calibration``) is a sensor fault unless the gate sent it to
  the data link. While the alert is active, a data-link or sensor category follows the evidence: when the
  last M windows are all anomalous and the gate gives each the same other category (the data flows
  again, the sensor reads clean), the alert moves to it, with an event (see ``_follow_evidence``). An
  alert decided at the edge (the agent sends neither flags nor features) gets the same gate
  (``gate_category``) on its window's stored readings when its event arrives, and again, explained, when
  the scorer scores that window (see ``_check_edge_openings``).
* An asset's active ``alerts.ThresholdOverride`` for the version replaces the version's thresholds
  (see ``alerts.services.noise``); overrides only raise them.
* The opening window is explained before the alert row exists (so before any broadcast); when that fails
  the alert opens with explanation "pending" and ``complete_explanation_task`` finishes it after commit.
  The peak window is explained again when the peak moves by more than 10 %.

Scores are compared with the thresholds in the version's direction (``output_spec["direction"]``):
"higher" means bigger is worse; for "lower" every comparison is mirrored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from alerts.broadcast import broadcast_alerts
from alerts.choices import (
    ACTIVE_STATES,
    ONGOING_EPISODES,
    AlertCategory,
    AlertEventKind,
    AlertState,
    EpisodeState,
    ExplanationStatus,
    Severity,
)
from alerts.metrics.facts import verdicts_in_force
from alerts.models import Alert, AlertEvent, MaintenanceWindow, Score
from alerts.services.edge_readings import ReadingsFate, readings_fate
from alerts.services.overrides import calibration_category, effective_thresholds
from detection import gate, rules
from detection.baseline import BaselineError, baseline_mode, is_robust
from detection.explain import dominant_roles, explain, top_role, with_baseline
from detection.features import role_of
from detection.pipeline import Pipeline, PipelineError
from detection.rules import severity_level
from detection.runtime import higher_is_worse
from detection.wording import opening_text
from models_registry.baseline import current_steps, version_vector
from models_registry import cache
from models_registry.choices import ModelStatus
from models_registry.edge_rollout import agent_step
from models_registry.models import ModelVersion
from models_registry.training_data import asset_windows_between
from plant.choices import CRITICALITY_SHIFT
from plant.models import Asset, Reading

logger = logging.getLogger(__name__)

PEAK_REEXPLAIN_CHANGE = 0.10


@dataclass(frozen=True)
class ScoredWindow:
    """One newly scored window of one (asset, version), as the scorer hands it over."""

    end: datetime  # window end (aware)
    score: float
    x: np.ndarray | None  # the window's float32 feature vector (for explanations), None if unavailable
    flagged: dict[str, int]  # role -> OR of Reading.quality bits in the window
    # The asset's baseline subtracted from x for a baselined version (models_registry.baseline), else None.
    baseline: np.ndarray | None = None


class ExplanationUnavailable(Exception):
    """The features of an alert's window cannot be rebuilt from the readings; the message says why."""


class WindowMissing(ExplanationUnavailable):
    """No complete window ends there: its readings are not (all) stored."""


# --- pure rules -------------------------------------------------------------------------------------------


def severity_for(
    peak: float, open_threshold: float, clear_threshold: float, criticality: str, *, higher: bool = True
) -> Severity:
    """Severity from how far the peak is past the open threshold, shifted by the asset's criticality
    (the rule is ``detection.rules.severity_level``): low lowers it one level, high raises it one."""
    levels = list(Severity)
    level = severity_level(
        peak,
        open_threshold,
        clear_threshold,
        shift=CRITICALITY_SHIFT.get(criticality, 0),
        higher=higher,
        levels=len(levels),
    )
    return levels[level]


def categorize(explanation: Mapping[str, Any] | None, flagged: Mapping[str, int]) -> AlertCategory:
    """The gate on the dominant roles' flags (detection.gate.categorize, the edge agent's rule too)."""
    return AlertCategory(gate.categorize(explanation, flagged))


def gate_category(
    asset_id: int, explanation: Mapping[str, Any] | None, flagged: Mapping[str, int]
) -> AlertCategory:
    """The category an alert of the asset gets from a window's flags: ``categorize``, then a machine fault
    driven by a sensor marked for calibration is a sensor fault (``calibration_category``). One rule for
    the scorer's alerts, their explanation and the alerts decided at the edge."""
    return calibration_category(asset_id, top_role(explanation), categorize(explanation, flagged))


# --- explanations -----------------------------------------------------------------------------------------


def explain_window(
    version: ModelVersion,
    x: np.ndarray,
    *,
    end: datetime,
    score: float | None,
    sensors: Mapping[str, str] | None,
    baseline: np.ndarray | None = None,
) -> dict[str, Any]:
    """The SHAP explanation of one window by the version's exact artifact, with the window it is about.

    ``score`` is the stored score of the window; None (its Score row is not there) takes the explanation's
    own ``output``, the artifact's score of this very input (a NaN would make the JSON invalid: SQLite's
    check and PostgreSQL's jsonb refuse it).

    ``x`` is the model's input. For a baselined version that is the features minus ``baseline``: the SHAP
    values (and their additivity) are of that input, and each feature also carries ``raw`` (value +
    baseline, what the sensor showed) and ``baseline`` for the pages.
    Raises whatever loading or explaining raises (ModelRuntimeError, ExplanationError, ...).
    """
    model = cache.loaded(version)
    result = explain(
        model.onnx_bytes, x, model.background, model.feature_names, model.output_spec, sensors=sensors
    )
    with_baseline(result, baseline)
    return {
        **result,
        "window_end": end.isoformat(),
        "score": float(result["output"] if score is None else score),
    }


def _try_explain(
    version: ModelVersion, window: ScoredWindow, sensors: Mapping[str, str] | None
) -> dict[str, Any] | None:
    if window.x is None:
        return None
    try:
        return explain_window(
            version, window.x, end=window.end, score=window.score, sensors=sensors, baseline=window.baseline
        )
    except Exception:  # any failure of the model or the explainer must not stop scoring
        logger.warning("explaining %s at %s failed", version, window.end.isoformat(), exc_info=True)
        return None


def _try_explain_opening(
    alert: Alert, flagged: Mapping[str, int]
) -> tuple[dict[str, Any] | None, Mapping[str, int]]:
    """``explain_opening`` inside the scorer's transaction: (None, ``flagged``) when it fails."""
    try:
        with transaction.atomic():  # a failed query must not break the scorer's transaction
            return explain_opening(alert)
    except Exception:  # any failure of the model or the explainer must not stop scoring
        logger.warning(
            "explaining alert #%s by its own %s failed", alert.pk, alert.model_version, exc_info=True
        )
        return None, flagged


def _input_baseline(alert: Alert) -> np.ndarray | None:
    """The step a baselined version's input of the alert is taken with (None for other versions): for an
    alert decided at the edge, the calibration shipped in the bundle its agent ran
    (``models_registry.edge_rollout.agent_step``: the asset may have been recalibrated since), else, or
    when no assignment records that bundle, the asset's current one; ExplanationUnavailable without one."""
    if alert.raised_at_edge:
        shipped = agent_step(alert.asset, alert.model_version, alert.opened_at)
        if shipped is not None:
            return shipped
    try:
        return version_vector(alert.model_version, alert.asset)
    except BaselineError as exc:
        raise ExplanationUnavailable(str(exc)) from None


@dataclass(frozen=True)
class _StoredWindow:
    """One window of an asset rebuilt from the stored readings by a version's scoring pipeline."""

    pipeline: Pipeline
    windows: Any  # detection.features.Windows over [start, end]
    row: np.ndarray  # the index of the window ending at ``end``, as a one-element array
    start: datetime
    end: datetime

    @property
    def flagged(self) -> dict[str, int]:
        """Role -> the OR of the quality bits of its stored readings in the window, for the roles whose
        features the version reads and that have any (what the scorer stores as ``Score.flagged``)."""
        features_roles = {role_of(name) for name in self.pipeline.feature_names}
        return {
            role: int(bits)
            for role, bits in zip(self.windows.roles, self.windows.flagged[int(self.row[0])], strict=True)
            if bits and role in features_roles
        }


def _stored_window(asset: Asset, version: ModelVersion, end: datetime) -> _StoredWindow:
    """The window of ``asset`` ending at ``end`` as the scorer builds it from the stored readings (the
    version's pipeline: its regime step and windows); ExplanationUnavailable when no complete window ends
    there (its readings have not all arrived, or too few are usable) or the version's spec is unusable."""
    asset_type = asset.asset_type
    try:
        pipeline = Pipeline.from_spec(version.feature_spec, version.output_spec)
    except PipelineError as exc:
        raise ExplanationUnavailable(f"{version}: {exc}") from None
    start = end - timedelta(seconds=float(asset_type.window_s) + float(asset_type.step_s))
    windows = asset_windows_between(asset, pipeline.roles, start, end, pipeline)
    match = np.flatnonzero(np.abs(np.asarray(windows.ends) - end.timestamp()) < 1e-6)
    if not len(match):
        raise WindowMissing(f"no complete window of {asset} ends at {end.isoformat()}")
    return _StoredWindow(pipeline, windows, match[:1], start, end)


def window_flags(asset: Asset, version: ModelVersion, end: datetime) -> dict[str, int] | None:
    """The quality flags (role -> bits) of the stored readings of the window ending at ``end``, as the
    scorer would store them; None while no window ends there that the pipeline keeps (too few of its
    readings are stored). A window kept with some readings still to come has the flags of those stored:
    the scorer waits for all of them, and an edge alert's gate runs again then (``_check_edge_openings``).
    Any other failure to rebuild the window is logged and answered alike: the caller records its event
    whatever the readings hold."""
    try:
        with transaction.atomic():  # a failed query must not break the caller's transaction
            return _stored_window(asset, version, end).flagged
    except ExplanationUnavailable:
        return None
    except Exception:
        logger.warning("rebuilding the window of %s at %s failed", asset, end.isoformat(), exc_info=True)
        return None


def window_features(alert: Alert, end: datetime | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Rebuild the model input and quality flags of the alert's window ending at ``end`` (default: the
    opening window) from the readings, through the version's scoring pipeline (detection.pipeline: its
    regime step, windows, columns and baseline), so the input explained is the one the scorer scored."""
    version = alert.model_version
    stored = _stored_window(alert.asset, version, end or alert.opened_at)
    pipeline, windows, row = stored.pipeline, stored.windows, stored.row
    try:
        columns = pipeline.columns(windows.names)
    except PipelineError as exc:
        raise ExplanationUnavailable(f"{version} needs features the readings do not give: {exc}") from None
    if pipeline.peers:
        x = _peer_input(alert, pipeline, windows, row, columns, stored.start, stored.end)
    else:
        x = pipeline.inputs(windows, row, columns, _input_baseline(alert))[0].astype(np.float32)
    return x, stored.flagged


def _peer_input(
    alert: Alert,
    pipeline: Pipeline,
    windows: Any,
    row: np.ndarray,
    columns: np.ndarray,
    start: datetime,
    end: datetime,
) -> np.ndarray:
    """A peer-relative version's input of the alert's window, as the scorer computed it: against the
    assets of its type on its site (detection.baseline.peer_relative) with their current calibrations."""
    asset, version = alert.asset, alert.model_version
    peers = Asset.objects.filter(asset_type=asset.asset_type, site=asset.site, is_active=True).exclude(
        pk=asset.pk
    )
    steps = current_steps(version, [asset.pk, *peers.values_list("pk", flat=True)])
    if asset.pk not in steps:
        raise ExplanationUnavailable(f"{asset} has no baseline for {version} yet (it is still calibrating)")
    built = {asset.pk: windows}
    for peer in peers:
        if peer.pk in steps:
            built[peer.pk] = asset_windows_between(peer, pipeline.roles, start, end, pipeline)
    rows = {pk: Pipeline.rows(w, columns) for pk, w in built.items()}
    rows[asset.pk] = row
    adjusted = pipeline.peer_inputs(built, rows, columns, steps)
    if not len(adjusted[asset.pk][0]):
        raise ExplanationUnavailable(f"too few peers of {asset} have a window ending at {end.isoformat()}")
    return adjusted[asset.pk][1][0].astype(np.float32)


def explain_opening(alert: Alert) -> tuple[dict[str, Any], dict[str, int]]:
    """The explanation of the alert's opening window by the alert's OWN version (its artifact, rebuilt from
    the stored readings by that version's pipeline, ``window_features``), with the window's quality flags
    (its stored Score row's, else the rebuilt ones). The version need not be the one the server scores
    with now: a registry keeps every version's artifact and spec, so an edge alert decided by a version its
    agent still runs is explained by that very version, never by its successor.
    Raises when the window cannot be rebuilt or explained.
    """
    x, rebuilt_flags = window_features(alert)
    sensors = dict(alert.asset.sensors.values_list("role__key", "key"))
    score_row = Score.objects.filter(
        asset=alert.asset, model_version=alert.model_version, window_end=alert.opened_at
    ).first()
    # The scorer's transaction may not be visible yet (the task can run first): then the artifact's own score.
    score = score_row.score if score_row else None
    flagged = score_row.flagged if score_row else rebuilt_flags
    explanation = explain_window(
        alert.model_version,
        x,
        end=alert.opened_at,
        score=score,
        sensors=sensors,
        baseline=_input_baseline(alert),
    )
    return explanation, flagged


# Explanations still to compute: pending, or awaiting the readings of an edge alert's window.
UNEXPLAINED = (ExplanationStatus.PENDING, ExplanationStatus.AWAITING)


def readings_arrived() -> Exists:
    """Alert filter: some reading of the alert's asset is stored at or after its opening window's end, so
    the readings the window was decided on have reached the server (an agent forwards them in order)."""
    return Exists(Reading.objects.filter(sensor__asset=OuterRef("asset"), ts__gte=OuterRef("opened_at")))


def complete_explanation(alert_id: int) -> str | None:
    """Explain a pending alert's opening window from its readings, attach it and re-run the quality gate.

    An alert decided at the edge whose window cannot be rebuilt because its readings have not reached the
    server yet (no reading of the asset at or after the window's end; or later ones, while its agent has not
    reported sending everything it held up to the decision) waits for them: it is marked "awaiting" (its
    card says so) and explained when they arrive (by the scorer, ``_check_edge_openings``, else the sweep's
    next run of this), instead of failing after the task's few retries. When they never will
    (``edge_readings.readings_fate``) it is marked "lost", with the reason its card gives.

    Returns the new explanation status, or None when there is nothing to do (alert gone or explained).
    Raises when the window cannot be rebuilt or explained otherwise, so the calling task retries.
    """
    alert = (
        Alert.objects.select_related("asset__asset_type", "asset__site", "model_version")
        .filter(pk=alert_id)
        .first()
    )
    if alert is None or alert.explanation_status not in UNEXPLAINED:
        return None
    try:
        explanation, flagged = explain_opening(alert)
    except ExplanationUnavailable as exc:
        if not alert.raised_at_edge:
            raise
        now = timezone.now()
        missing = isinstance(exc, WindowMissing)
        fate = readings_fate(alert, now) if missing else ReadingsFate()
        unexplained = Alert.objects.filter(pk=alert_id, explanation_status__in=UNEXPLAINED)
        if fate.lost:
            if not unexplained.update(
                explanation_status=ExplanationStatus.LOST, explanation_note=fate.lost[:300], updated_at=now
            ):
                return None
            logger.info("alert #%s: the readings its edge agent decided on are lost: %s", alert_id, fate.lost)
            if not alert.is_shadow:
                broadcast_alerts([alert.pk])
            return ExplanationStatus.LOST
        # Later readings are there but not the window's: while the agent still holds what it had up to the
        # decision (a backlog, or a report of dropped readings still to come), that is a wait, not a failure.
        waiting = unexplained if fate.unsent else unexplained.exclude(readings_arrived())
        if waiting.update(explanation_status=ExplanationStatus.AWAITING, updated_at=now) == 0:
            raise  # its readings are there: the window is incomplete or unusable, a failure to retry
        if alert.explanation_status != ExplanationStatus.AWAITING and not alert.is_shadow:
            broadcast_alerts([alert.pk])
        return ExplanationStatus.AWAITING
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None or alert.explanation_status not in UNEXPLAINED:
            return None
        _gate(alert, flagged, "the explanation showed which sensors drove the score", explanation=explanation)
        if not alert.is_shadow:
            broadcast_alerts([alert.pk])
    return ExplanationStatus.READY


def _gate(
    alert: Alert,
    flagged: Mapping[str, int],
    why: str,
    *,
    explanation: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Run the quality gate on the alert's opening window with its ``flagged`` bits, attaching the window's
    ``explanation`` if given (ready, in the same update); a new category is an event saying ``why``. True
    when the category moved."""
    ready = (
        {}
        if explanation is None
        else {
            "explanation": explanation,
            "explanation_status": ExplanationStatus.READY,
            "dominant_role": top_role(explanation),
        }
    )
    category = gate_category(alert.asset_id, explanation or alert.explanation, flagged)
    if category != alert.category:
        alert.recategorize(category, why, at=now, **ready)
        return True
    if ready:
        Alert.objects.filter(pk=alert.pk).update(**ready, updated_at=now or timezone.now())
        for name, value in ready.items():
            setattr(alert, name, value)
    return False


def explain_peak(alert: Alert) -> dict[str, Any]:
    """The peak window's own explanation: the stored one, else computed from the readings and stored.

    The scorer explains a new peak only when it moved more than 10 % from the last explained score, so a
    peak close to the opening window has none until someone asks (the detail page's "explain the peak").
    Raises ExplanationUnavailable (or what explaining raises) when the window cannot be rebuilt.
    """
    if alert.peak_explanation:
        return alert.peak_explanation
    if alert.peak_window_end is None:
        raise ExplanationUnavailable(f"alert #{alert.pk} has no peak window")
    x, _ = window_features(alert, alert.peak_window_end)
    score_row = Score.objects.filter(
        asset=alert.asset, model_version=alert.model_version, window_end=alert.peak_window_end
    ).first()
    explanation = explain_window(
        alert.model_version,
        x,
        end=alert.peak_window_end,
        score=score_row.score if score_row else alert.peak_score,
        sensors=dict(alert.asset.sensors.values_list("role__key", "key")),
        baseline=_input_baseline(alert),
    )
    # A peak explained meanwhile (the scorer moved it) wins: only an empty slot is filled.
    Alert.objects.filter(pk=alert.pk, peak_explanation__isnull=True).update(peak_explanation=explanation)
    alert.refresh_from_db(fields=["peak_explanation"])
    return alert.peak_explanation or explanation


def mark_explanation_failed(alert_id: int, error: str) -> bool:
    """Give up on a pending (or awaiting) explanation after the last retry; True if it was unexplained."""
    changed = Alert.objects.filter(pk=alert_id, explanation_status__in=UNEXPLAINED).update(
        explanation_status=ExplanationStatus.FAILED, updated_at=timezone.now()
    )
    if changed:
        logger.error("alert #%s: explanation failed for good: %s", alert_id, error)
    return bool(changed)


# The explanation task lives in alerts.tasks, which imports this module: AlertsConfig.ready() hands its
# sender in, so the lifecycle never imports the tasks (no import cycle, not even a hidden one).
_send_explanation: Callable[[int], None] | None = None


def provide_explanation_sender(send: Callable[[int], None]) -> None:
    """Register how a pending explanation is sent to a worker (once, from an AppConfig)."""
    global _send_explanation
    _send_explanation = send


def _enqueue_explanation(alert_id: int) -> None:
    if _send_explanation is None:
        raise ImproperlyConfigured(
            "no explanation sender registered (alerts.services.lifecycle.provide_explanation_sender)"
        )
    send_task = _send_explanation

    def send() -> None:
        try:
            send_task(alert_id)
        except Exception:  # the broker is down: the alert stays "pending", scoring goes on
            logger.exception("could not enqueue the explanation of alert #%s", alert_id)

    transaction.on_commit(send, robust=True)


# --- persisting the rule engine's transitions ------------------------------------------------------------------------------------


@dataclass
class _Context:
    asset: Asset
    version: ModelVersion
    is_shadow: bool
    sensors: Mapping[str, str] | None
    maintenance: list[MaintenanceWindow]
    now: datetime
    # The version's thresholds, or the asset's alerts.ThresholdOverride (which only ever raises them), and
    # the window counts: what the rule engine (detection.rules.step) decides with.
    params: rules.RuleParams
    # Window end -> {role: its sensor-fault alert id or None}: the faulty sensors that explain a champion
    # window (alerts.services.sensor_faults.held_roles); such windows are held like maintenance.
    held: Mapping[datetime, Mapping[str, int | None]] = field(default_factory=dict)

    def in_maintenance(self, moment: datetime) -> MaintenanceWindow | None:
        return next((mw for mw in self.maintenance if mw.covers(moment)), None)


def rules_needed(
    version: ModelVersion,
    asset: Asset,
    scores: Sequence[float],
    *,
    with_active: Collection[int],
    thresholds: Mapping[int, tuple[float, float]] | None = None,
) -> bool:
    """False when ``apply_scores(asset, version, windows, with_active=..., thresholds=...)`` of windows with
    these scores returns at once, without a query (its common case: an asset of the chunk without an active
    alert whose windows all stay at or below the open threshold). The scorer asks first, so a healthy
    asset costs it no ScoredWindow object and no call."""
    if not len(scores) or version.status not in (ModelStatus.CHAMPION, ModelStatus.SHADOW):
        return False
    return not _quiet(_first_params(version, asset, thresholds), asset, scores, with_active)


def _first_params(
    version: ModelVersion, asset: Asset, thresholds: Mapping[int, tuple[float, float]] | None
) -> rules.RuleParams:
    """The rule parameters apply_scores' early returns decide with (the chunk's override if any)."""
    if thresholds is not None and asset.pk in thresholds:
        return _rule_params(version, *thresholds[asset.pk], asset)
    if thresholds is None and is_robust(baseline_mode(version.output_spec)):
        # A robust version's asset thresholds may be below the version's: look them up before the
        # early returns (overrides alone only ever raise them).
        return _rule_params(version, *effective_thresholds(version, asset.pk), asset)
    return _rule_params(version, version.open_threshold, version.clear_threshold, asset)


def _quiet(
    params: rules.RuleParams, asset: Asset, scores: Iterable[float], with_active: Collection[int]
) -> bool:
    return asset.pk not in with_active and not any(params.above_open(score) for score in scores)


def _rule_params(
    version: ModelVersion, open_threshold: float, clear_threshold: float, asset: Asset
) -> rules.RuleParams:
    return rules.RuleParams(
        open_threshold,
        clear_threshold,
        settings.VIGIL_ALERT_OPEN_WINDOWS,
        settings.VIGIL_ALERT_CLEAR_WINDOWS,
        higher=higher_is_worse(version.output_spec or {}),
        escalation_factor=settings.VIGIL_ALERT_ESCALATION_FACTOR,
        severity_shift=CRITICALITY_SHIFT.get(asset.criticality, 0),
        severity_levels=len(Severity),
        # The windows scored are the asset type's (the version's); the scorer loads it with the asset.
        window_overlap=rules.overlap(asset.asset_type.window_s, asset.asset_type.step_s),
    )


def apply_scores(
    asset: Asset,
    version: ModelVersion,
    windows: Sequence[ScoredWindow],
    *,
    sensors: dict[str, str] | None = None,
    with_active: Collection[int] | None = None,
    thresholds: Mapping[int, tuple[float, float]] | None = None,
    held: Mapping[datetime, Mapping[str, int | None]] | None = None,
) -> list[int]:
    """Run the alert rule engine over newly stored windows (ascending `end`) of one (asset, version) and
    persist the transitions it returns.

    Called by the scorer INSIDE the same transaction that stored those windows' Score rows, so it runs
    once per window. Returns ids of alerts opened/changed/closed; the caller passes them to
    ``alerts.broadcast.broadcast_alerts`` (which skips shadow alerts). ``sensors`` maps role -> sensor key
    for the explanation's display. ``with_active``: the ids, from ``assets_with_active_alert`` in the same
    transaction, of the assets that have an active alert of the version's key; a healthy asset outside it
    (no window above the open threshold) then costs no query at all. ``thresholds``: asset id -> (open,
    clear) of the chunk's active threshold overrides (``alerts.services.overrides.threshold_overrides``);
    without it the asset's override is looked up once the asset turns out to need the state machine.
    ``held``: window end -> the faulty sensors' roles that explain it (``sensor_faults.held_roles``, with
    their sensor-fault alert ids): the engine holds such a window like one inside maintenance, and an
    alert driven by one of those sensors (its explanation's dominant roles) opens suppressed.
    The rules themselves (which window opens, updates, closes or resumes an alert) are
    ``detection.rules.step``'s; this function loads its state and writes down what it decided.
    """
    if not windows or version.status not in (ModelStatus.CHAMPION, ModelStatus.SHADOW):
        return []
    params = _first_params(version, asset, thresholds)
    if with_active is not None and _quiet(params, asset, [w.score for w in windows], with_active):
        return []  # the common case, decided for the whole chunk by one query
    windows = sorted(windows, key=lambda w: w.end)
    ctx = _Context(
        asset=asset,
        version=version,
        is_shadow=version.status == ModelStatus.SHADOW,
        sensors=sensors,
        maintenance=[],
        now=timezone.now(),
        params=params,
        held=held or {},
    )
    with transaction.atomic():
        alert = _active_alert(ctx)
        if alert is None and not any(params.above_open(w.score) for w in windows):
            return []  # the common case, a healthy asset: one query
        # Overrides only raise the thresholds, and a robust version's asset thresholds were applied above,
        # so the early returns were safe.
        ctx.params = params = _rule_params(
            version, *effective_thresholds(version, asset.pk, thresholds), asset
        )
        if alert is None and not any(params.above_open(w.score) for w in windows):
            return []
        ctx.maintenance = list(
            MaintenanceWindow.objects.filter(asset=asset, start__lte=windows[-1].end, end__gte=windows[0].end)
        )
        history = _history(asset, version, windows, params.depth)
        new = {w.end: w for w in windows}
        changed_here = _check_edge_openings(ctx, alert, new)
        # The stored windows are the truth for the runs of consecutive windows: those before the first new
        # one are the engine's recent state, those between new ones count without firing rules.
        split = next(i for i, (end, _) in enumerate(history) if end >= windows[0].end)
        feed = [
            rules.Window(
                end,
                score,
                in_maintenance=ctx.in_maintenance(end) is not None or end in ctx.held,
                context=end not in new,
            )
            for end, score in history[split:]
        ]
        state = rules.RuleState(
            recent=tuple(history[:split]),
            active=_rule_alert(ctx, alert),
            boundary=None if alert else _last_closed_seen(ctx),
        )
        alert, changed, peak_windows = persist_transitions(
            ctx,
            alert,
            state,
            feed,
            new,
            lambda window, opened, previous, note: _open(
                ctx, window, opened, reopened_from=previous, note=note
            ),
        )
        changed = changed_here + changed
        if alert is not None and alert.pk in peak_windows:
            _explain_peak(ctx, alert, peak_windows[alert.pk])
        if (
            alert is not None
            and alert.state in ACTIVE_STATES
            and _follow_evidence(ctx, alert, windows[-1].end)
        ):
            changed.append(alert.pk)
    return list(dict.fromkeys(changed))


def _check_edge_openings(
    ctx: _Context, alert: Alert | None, new: Mapping[datetime, ScoredWindow]
) -> list[int]:
    """Run the quality gate on the alerts decided at the edge whose opening window is among ``new``; the
    ids of those it changed (their category, or the explanation they lacked).

    The agent decides on readings the server holds no flags for yet: it sends an alert event before the
    readings of its window (events go first), and while it is offline it sends them all when it is back.
    The event opens the alert at once with the flags of the window's stored readings
    (``alerts.services.edge_events``), and with none while they are missing: a machine fault for now. The
    scorer scores each window once, when all its readings are stored, with their flags: this is when the
    gate gets to see them, on the same window and by the same rule as for the scorer's own alerts (with
    the window's explanation, computed here if the alert has none yet: from the scorer's input, or for an
    alert of an earlier version of the kind, by that version from the stored readings, ``explain_opening``;
    its explanation task marks it "awaiting" while no reading of the window has arrived: an agent offline
    for hours sends its events first). An
    alert the agent has cleared meanwhile is categorised all the same (a later verdict, the noise page and
    the alarm-load figures count it); one a technician has judged keeps the category the verdict was given
    on (its label was written by it). The opening window of an alert is scored once, so this runs once
    per alert; if the server never scores it (older than ``VIGIL_SCORING_MAX_BACKLOG_S`` when it
    arrives, or, with no active alert left, below the open threshold on the server) the category stays.
    """
    ends = sorted(new)
    if ctx.is_shadow or (alert is not None and (not alert.raised_at_edge or alert.opened_at < ends[0])):
        # An edge alert is never a shadow; and none opened among windows the key's alert already held (an
        # event then merges into it), so the scorer's common cases cost no query here.
        return []
    rows = (
        Alert.objects.select_for_update()
        .filter(
            asset=ctx.asset,
            is_shadow=False,
            kind=ctx.version.kind,
            raised_at_edge=True,
            episode=EpisodeState.LIVE,
            opened_at__gte=ends[0],
            opened_at__lte=ends[-1],
        )
        .order_by("opened_at")
    )
    changed = []
    for row in rows:
        window = new.get(row.opened_at)
        if window is None:
            continue
        row = alert if alert is not None and alert.pk == row.pk else row
        # Its explanation waited for these readings ("awaiting", or failed): the scorer's window
        # is the opening window, explained here as the scorer's own alerts are when they open. An alert of
        # an earlier version of the kind (its agent not updated yet) is explained by its own artifact, on
        # the window that version's pipeline builds from the now stored readings, with that window's flags.
        explanation, flagged = None, window.flagged
        if row.explanation_status != ExplanationStatus.READY:
            # The scorer's input is taken with the asset's current calibration; a baselined version's edge
            # alert is explained with its agent's (``_input_baseline``), from the stored readings.
            if row.model_version_id == ctx.version.pk and window.baseline is None:
                explanation = _try_explain(ctx.version, window, ctx.sensors)
            else:
                explanation, flagged = _try_explain_opening(row, window.flagged)
        moved = _gate(
            row,
            flagged,
            "the readings the edge agent decided on reached the server with their quality flags",
            explanation=explanation,
            now=ctx.now,
        )
        if moved or explanation is not None:
            changed.append(row.pk)
    return changed


# Categories the gate chose from a flag; the evidence of later windows can take an open alert out of them.
GATE_CATEGORIES = (AlertCategory.DATA_LINK, AlertCategory.SENSOR_FAULT)


def _follow_evidence(ctx: _Context, alert: Alert, last: datetime) -> bool:
    """Move an open data-link or sensor alert to the category its latest windows give; True if it moved.

    The gate decides the category on the opening window (or provisionally, before the explanation), so a
    short data-link drop in the opening window of a real fault left it "Check the data link" for good. The
    category moves when the last M = VIGIL_ALERT_OPEN_WINDOWS stored windows up to ``last`` are all above the
    open threshold, none held, and the gate (on the latest explanation's dominant roles) gives each of them
    the same other category: the evidence that would open an alert, so clean windows between gaps change
    nothing. A machine fault is never moved: it was seen on
    clean readings, and a sensor or link failing during it must not hide the fault (a faulty sensor gets an
    alert of its own, alerts.services.sensor_faults).
    """
    if alert.category not in GATE_CATEGORIES:
        return False
    run = ctx.params.open_windows
    recent = list(
        Score.objects.filter(
            asset=ctx.asset,
            model_version=ctx.version,
            window_end__gte=alert.opened_at,
            window_end__lte=last,
        )
        .order_by("-window_end")
        .values_list("window_end", "score", "flagged")[:run]
    )
    if len(recent) < run or any(
        not ctx.params.above_open(score) or end in ctx.held for end, score, _ in recent
    ):
        return False
    explanation = alert.peak_explanation or alert.explanation
    found = {categorize(explanation, flagged) for _, _, flagged in recent}
    if len(found) != 1:
        return False
    category = calibration_category(ctx.asset.pk, top_role(explanation), found.pop())
    if category == alert.category:
        return False
    pointed = "the data link" if alert.category == AlertCategory.DATA_LINK else "the sensor"
    alert.recategorize(
        category,
        f"the condition persists over the last {run} windows and their readings no longer point at {pointed}",
        at=ctx.now,
    )
    return True


# What the persisted events say when the engine closes or resumes an alert: "<cleared> for N windows",
# "snooze expired; <persists>" (the model's and the sensor-fault path's wording differ).
MODEL_WORDING = ("condition cleared", "the condition persists")

Opener = Callable[[ScoredWindow, rules.ActiveAlert, "Alert | None", str], tuple[Alert, bool]]


def persist_transitions(
    ctx: _Context,
    alert: Alert | None,
    state: rules.RuleState,
    feed: list[rules.Window],
    new: Mapping[datetime, ScoredWindow],
    opener: Opener,
    wording: tuple[str, str] = MODEL_WORDING,
) -> tuple[Alert | None, list[int], dict[int, ScoredWindow]]:
    """Run ``detection.rules.step`` over ``feed`` from ``state`` and persist what it decides about the key's
    alert (``alert``: its Alert row, active or a judged episode still going on): open (through ``opener``,
    which returns the row and False when another worker had opened the key's alert first, or the row holds
    it back differently from the engine: the run then carries on from that row), update, auto-close or end
    the judged episode, re-open an escalated one with ``reopen_sentence``, resume a held one. One loop for
    every kind of alert (the model's, ``alerts.services.sensor_faults``'). Returns the key's alert after the
    run, the ids changed and the new peak windows to explain."""
    params = ctx.params
    cleared, persists = wording
    seen = list(state.recent)
    changed: list[int] = []
    progress = _progress(alert)
    peak_windows: dict[int, ScoredWindow] = {}
    position = {item.key: i for i, item in enumerate(feed)}
    start = 0
    while start < len(feed):
        state, transitions = rules.step(state, feed[start:], params)
        start = len(feed)
        for transition in transitions:
            window = new[transition.key]
            if isinstance(transition, (rules.Opened, rules.Reopened)):
                previous, note = None, ""
                if isinstance(transition, rules.Reopened):  # the judged episode ends, a new alert opens
                    _save_progress(alert, progress)
                    previous, note = alert, reopen_sentence(alert)
                    _end_episode(alert, f"escalated: {note}", ctx.now)
                    changed.append(alert.pk)
                alert, created = opener(window, transition.alert, previous, note)
                progress = _progress(alert)
                changed.append(alert.pk)
                if not created:
                    start = position[window.end] + 1
                    state = _carry_on(ctx, alert, _seen(seen, feed, start), params.depth)
                    break
            elif isinstance(transition, rules.Seen):
                visible = alert.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED)
                alert.window_count = transition.alert.count
                alert.last_seen_at = transition.alert.last_seen
                if transition.new_peak:
                    alert.peak_score, alert.peak_window_end = window.score, window.end
                    alert.severity = severity_for(
                        window.score,
                        params.open_threshold,
                        params.clear_threshold,
                        ctx.asset.criticality,
                        higher=params.higher,
                    )
                    if window.x is not None:
                        peak_windows[alert.pk] = window
                if visible:
                    changed.append(alert.pk)
            elif isinstance(transition, rules.Cleared):
                _save_progress(alert, progress)
                reason = f"{cleared} for {params.clear_run} windows"
                if alert.state in ACTIVE_STATES:
                    alert.transition(AlertState.AUTO_CLOSED, reason=reason, at=ctx.now)
                else:  # a judged episode: closed for the operator already, now over for the rules
                    _end_episode(alert, f"{reason}; the episode is over", ctx.now)
                changed.append(alert.pk)
                alert = None
            elif isinstance(transition, rules.Resumed):
                if transition.hold == rules.Hold.SNOOZE_EXPIRED:
                    reason = f"snooze expired; {persists}"
                elif alert.events.filter(kind=AlertEventKind.HELD).exists():
                    reason = f"the faulty sensor reads clean again; {persists}"
                else:
                    reason = f"maintenance window over; {persists}"
                alert.transition(AlertState.OPEN, reason=reason, at=ctx.now)
                changed.append(alert.pk)
    if alert is not None:
        _save_progress(alert, progress)
    return alert, changed, peak_windows


def _seen(recent: list[tuple[Any, float]], feed: list[rules.Window], start: int) -> list[tuple[Any, float]]:
    """The (key, score) windows the engine has seen once ``feed[:start]`` went through it."""
    return recent + [(window.key, window.score) for window in feed[:start]]


def reopen_sentence(judged: Alert) -> str:
    """What a re-opened alert says about the judged episode it escalated from."""
    verdict = verdicts_in_force().filter(alert=judged).select_related("user").first()
    when = timezone.localtime(
        verdict.created_at if verdict else judged.closed_at or judged.opened_at, judged.asset.site.zone
    )
    who = (verdict.user.get_username() if verdict and verdict.user else None) or "a technician"
    return f"re-opened: worse than when judged on {when:%Y-%m-%d %H:%M} by {who}"[:200]


def _end_episode(alert: Alert, reason: str, now: datetime) -> None:
    """A judged episode is over (its condition cleared, or it escalated): recorded as an event."""
    Alert.objects.filter(pk=alert.pk).update(episode=EpisodeState.OVER, updated_at=now)
    alert.episode = EpisodeState.OVER
    AlertEvent.objects.create(
        alert=alert, at=now, from_state=alert.state, to_state=alert.state, reason=reason[:300]
    )


def _holding(alerts: Any) -> Any:
    """Alerts that hold their key for the rule engine: active ones and judged episodes still going on."""
    return alerts.filter(Q(state__in=ACTIVE_STATES) | Q(episode__in=ONGOING_EPISODES))


def assets_with_active_alert(version: ModelVersion, asset_ids: Collection[int]) -> set[int]:
    """Ids of the assets holding an active alert of the version's key (visible alerts of its kind for a
    champion, its own would-be alerts for a shadow) or a judged episode still going on, locked FOR UPDATE
    like ``apply_scores`` locks them: one query for a whole chunk, passed to ``apply_scores(...,
    with_active=...)``."""
    alerts = _holding(Alert.objects.select_for_update().filter(asset_id__any=asset_ids))
    if version.status == ModelStatus.SHADOW:
        alerts = alerts.filter(is_shadow=True, model_version=version)
    else:
        alerts = alerts.filter(is_shadow=False, kind=version.kind)
    return set(alerts.values_list("asset_id", flat=True))


def _history(
    asset: Asset, version: ModelVersion, windows: Sequence[ScoredWindow], depth: int
) -> list[tuple[datetime, float]]:
    """(end, score) ascending: the `depth - 1` stored windows before the first new one, then every stored
    window up to the last new one, with the new windows' own scores (in case one was not stored)."""
    rows = Score.objects.filter(asset=asset, model_version=version)
    before = list(
        rows.filter(window_end__lt=windows[0].end)
        .order_by("-window_end")
        .values_list("window_end", "score")[: max(depth - 1, 0)]
    )
    span = dict(
        rows.filter(window_end__gte=windows[0].end, window_end__lte=windows[-1].end).values_list(
            "window_end", "score"
        )
    )
    span.update({w.end: float(w.score) for w in windows})
    return sorted(before) + sorted(span.items())


def _active_alert(ctx: _Context) -> Alert | None:
    """The engine's active alert of the key: the active Alert row, or a judged episode still going on."""
    alerts = _holding(Alert.objects.select_for_update().filter(asset=ctx.asset)).order_by("-opened_at")
    if ctx.is_shadow:
        alerts = alerts.filter(is_shadow=True, model_version=ctx.version)
    else:
        alerts = alerts.filter(is_shadow=False, kind=ctx.version.kind)
    return alerts.first()


def _last_closed_seen(ctx: _Context) -> datetime | None:
    """Last window attributed to the previous alert of this key: those windows cannot open another."""
    alerts = Alert.objects.filter(asset=ctx.asset).exclude(state__in=ACTIVE_STATES)
    if ctx.is_shadow:
        alerts = alerts.filter(is_shadow=True, model_version=ctx.version)
    else:
        alerts = alerts.filter(is_shadow=False, kind=ctx.version.kind)
    return alerts.order_by("-last_seen_at").values_list("last_seen_at", flat=True).first()


def _carry_on(ctx: _Context, alert: Alert, seen: Sequence[Any], depth: int) -> rules.RuleState:
    """The rule state after losing an opening race: the other worker's alert, with the windows seen so far."""
    return rules.RuleState(recent=tuple(seen[max(0, len(seen) - depth) :]), active=_rule_alert(ctx, alert))


def _rule_alert(ctx: _Context, alert: Alert | None) -> rules.ActiveAlert | None:
    """The rule engine's view of an Alert row (snooze and maintenance holds included)."""
    if alert is None:
        return None
    if alert.state == AlertState.SUPPRESSED:
        hold = rules.Hold.SUPPRESSED
    elif (
        alert.state == AlertState.SNOOZED
        and alert.snoozed_until is not None
        and alert.snoozed_until <= ctx.now
    ):
        hold = rules.Hold.SNOOZE_EXPIRED
    else:
        hold = rules.Hold.NONE
    return rules.ActiveAlert(
        first=alert.first_window_start + timedelta(seconds=ctx.asset.asset_type.window_s),
        opened=alert.opened_at,
        last_seen=alert.last_seen_at,
        peak=alert.peak_window_end,
        peak_score=alert.peak_score,
        count=alert.window_count,
        hold=hold,
        judged=(
            rules.Judgement(
                alert.episode == EpisodeState.IN_WORK,
                alert.judged_peak_score,
                Severity(alert.judged_severity or alert.severity).rank,
            )
            if alert.episode in ONGOING_EPISODES and alert.judged_peak_score is not None
            else None
        ),
    )


def _open(
    ctx: _Context,
    window: ScoredWindow,
    opened: rules.ActiveAlert,
    *,
    reopened_from: Alert | None = None,
    note: str = "",
) -> tuple[Alert, bool]:
    """Create the Alert row (and its first event) the engine opened at ``window``; False when another
    worker had opened the alert of this key first, which is returned instead. ``reopened_from`` and
    ``note``: the judged episode this one escalated from, and the sentence saying so."""
    version, asset, params = ctx.version, ctx.asset, ctx.params
    explanation = _try_explain(version, window, ctx.sensors)
    maintenance = ctx.in_maintenance(window.end)
    # Held by a faulty sensor only when that sensor drives the score (without an explanation yet, as the
    # quality gate does, any of them decides); a machine fault seen through clean sensors opens visibly.
    held = dict(ctx.held.get(window.end, {}))
    if held and explanation is not None:
        held = {role: pk for role, pk in held.items() if role in dominant_roles(explanation)}
    state = AlertState.OPEN
    if opened.hold == rules.Hold.SUPPRESSED and (maintenance or held):
        state = AlertState.SUPPRESSED
    alert = Alert(
        asset=asset,
        model_version=version,
        kind=version.kind,
        is_shadow=ctx.is_shadow,
        state=state,
        category=(
            AlertCategory.SENSOR_FAULT
            if state == AlertState.SUPPRESSED and held and not maintenance
            else gate_category(asset.pk, explanation, window.flagged)
        ),
        severity=severity_for(
            opened.peak_score,
            params.open_threshold,
            params.clear_threshold,
            asset.criticality,
            higher=params.higher,
        ),
        opened_at=window.end,
        first_window_start=opened.first - timedelta(seconds=asset.asset_type.window_s),
        last_seen_at=window.end,
        peak_score=opened.peak_score,
        peak_window_end=opened.peak,
        window_count=opened.count,
        explanation=explanation,
        explanation_status=ExplanationStatus.READY if explanation else ExplanationStatus.PENDING,
        dominant_role=top_role(explanation),
        reopened_from=reopened_from,
        reopen_note=note,
    )
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        existing = _active_alert(ctx)
        if existing is None:
            raise
        return existing, False
    reason = opening_text(opened.count, higher=params.higher)
    if reopened_from is not None:
        reason = f"{note} (alert #{reopened_from.pk})"
    kind = AlertEventKind.STATE
    if maintenance:
        reason += f"; inside maintenance ({maintenance.reason or 'planned work'})"
    elif state == AlertState.SUPPRESSED:
        reason, kind = f"{HELD_REASON} ({', '.join(sorted(held))}): {reason}", AlertEventKind.HELD
        _note_held(ctx, alert, held)
    AlertEvent.objects.create(
        alert=alert, at=ctx.now, from_state="", to_state=state, kind=kind, reason=reason[:300]
    )
    if explanation is None:
        _enqueue_explanation(alert.pk)
    # The engine held the window; a row opened visibly instead (or the other way) restarts it from the row.
    return alert, (state == AlertState.SUPPRESSED) == (opened.hold == rules.Hold.SUPPRESSED)


HELD_REASON = "held: the readings of a faulty sensor explain it"


def _note_held(ctx: _Context, alert: Alert, held: Mapping[str, int | None]) -> None:
    """Tell each sensor-fault alert behind a held model alert that it is the one the technician sees."""
    for pk, state in Alert.objects.filter(pk__in=[pk for pk in held.values() if pk]).values_list(
        "pk", "state"
    ):
        AlertEvent.objects.create(
            alert_id=pk,
            at=ctx.now,
            from_state=state,
            to_state=state,
            reason=f"the anomaly model's alert #{alert.pk} on the same windows is held: this sensor explains it",
        )


_PROGRESS_FIELDS = ["peak_score", "peak_window_end", "last_seen_at", "window_count", "severity"]


def _progress(alert: Alert | None) -> tuple | None:
    return None if alert is None else tuple(getattr(alert, name) for name in _PROGRESS_FIELDS)


def _save_progress(alert: Alert, before: tuple | None) -> None:
    if _progress(alert) != before:
        alert.save(update_fields=[*_PROGRESS_FIELDS, "updated_at"])


def _explain_peak(ctx: _Context, alert: Alert, window: ScoredWindow) -> None:
    """Explain the new peak window when it moved by more than 10 % from the last explained score."""
    if alert.explanation_status != ExplanationStatus.READY:
        return
    reference = (alert.peak_explanation or alert.explanation or {}).get("score")
    if reference is not None and abs(window.score - reference) <= PEAK_REEXPLAIN_CHANGE * max(
        abs(reference), 1e-12
    ):
        return
    explanation = _try_explain(ctx.version, window, ctx.sensors)
    if explanation is not None:
        alert.peak_explanation = explanation
        alert.save(update_fields=["peak_explanation", "updated_at"])
