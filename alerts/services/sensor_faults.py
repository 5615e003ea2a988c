"""Sensor faults as alerts: a sensor whose readings are persistently flagged opens "check sensor X".

Called by the scorer (``alerts.scoring``) for the champion version, in the transaction that stored the
champion's new windows, with those windows' ends (each end is one evaluation of every sensor of the asset)
and the readings the scorer already read for the windows: one read of the readings per chunk, reaching back
as far as ``readings_from`` says this step needs.

1. Drift (``plant.quality.drift_scores``; the statistic, its window and parameters are documented there):
   once per drift bin (``plant.quality.DRIFT_BIN_S``) the window ends complete (``drift_evaluations``):
   at each multiple of it over the run's last VIGIL_SENSOR_FAULT_SPAN_S, each sensor's relation to the
   asset's other sensors over the last VIGIL_SENSOR_DRIFT_HISTORY_S is checked and the readings of that one
   bin of a drifting sensor get ``QualityFlag.DRIFT`` (one UPDATE, an OR of the bit, so a re-run changes
   nothing). Each evaluation vouches for its own bin only, so a persistent share needs consecutive
   findings — a run with many new windows (an asset's first scoring, a backlog) evaluated once would let one
   stray finding flag minutes of readings and open "check sensor X" on a healthy pump (1 in 20 e2e world
   starts did). An asset whose readings do not reach back the drift rule's minimum (its recent and reference
   bins) costs nothing. It runs here and not at ingest because it needs every sensor of the asset on one
   time grid and an hour of history, which an ingest batch (often one sensor, a few seconds) does not have.
2. Sustained (``fault_scores``; defaults and their reasons in config/settings.py): at each end e, the
   share of the sensor's readings in (e - VIGIL_SENSOR_FAULT_SPAN_S, e] flagged spike, against
   VIGIL_SENSOR_FAULT_OPEN_SHARE, and flagged stuck or drift, against VIGIL_SENSOR_FAULT_PERSISTENT_SHARE;
   the larger ratio is the window's score. A sensor with no such flag in the readings read and no alert
   costs no computation. Scores go through the same rule engine and the same persistence as model scores
   (``detection.rules.step`` by ``alerts.services.lifecycle.persist_transitions``): open at 1.0 on one
   window (the span already makes it sustained), close after VIGIL_ALERT_CLEAR_WINDOWS windows below
   VIGIL_SENSOR_FAULT_CLEAR_RATIO, maintenance and snooze holds, and the verdicts' episodes: a judged
   sensor fault ("sensor replaced", "recalibrated", "false alarm") absorbs the ongoing condition silently
   and a new alert opens only after the readings were clean for N windows, or when the condition escalates
   ("re-opened: worse than when judged on … by …"). The shares of the windows before the new ones are
   recomputed from the readings (the engine's context), so no counter is stored.
3. One sensor-fault episode per sensor (``kind`` sensor_fault, ``sensor`` set, category "check the
   sensor"); verdicts and their labels are ``alerts.services.feedback``'s.
4. One cause, one alert (``held_roles``): a champion window in which a sensor's readings are flagged stuck
   (stuck readings enter the features as they are), or flagged at all once that sensor has a sensor-fault
   alert (spikes and out-of-range readings are left out of the features, and a machine's wear reads as
   drift at first, so these alone say little before), is held for the model's alerts like a window inside
   maintenance. A model alert that opens on such a window and is driven by that sensor (its explanation's
   dominant roles; ``alerts.services.lifecycle``) opens suppressed, out of the board and of the alarm
   metrics, and the sensor-fault alert says so in its history; it becomes visible if the condition
   persists on a window the sensor no longer explains. A machine fault seen through the other sensors
   opens as usual. Limit: while the sensor stays faulty, a machine fault driven by that same sensor stays
   held too (the sensor-fault alert is then the technician's lead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from datetime import timezone as dt_timezone

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alerts.choices import (
    ACTIVE_STATES,
    AlertCategory,
    AlertEventKind,
    AlertKind,
    AlertState,
    ExplanationStatus,
    Severity,
)
from alerts.models import Alert, AlertEvent, MaintenanceWindow
from alerts.services.lifecycle import (
    CRITICALITY_SHIFT,
    ScoredWindow,
    _Context,
    _holding,
    _rule_alert,
    persist_transitions,
    severity_for,
)
from detection import rules
from models_registry.models import ModelVersion
from plant import rollups
from plant.choices import QualityFlag
from plant.models import Asset, Reading
from plant.quality import (
    DRIFT_BIN_S,
    DRIFT_MIN_SPAN_S,
    DRIFT_RECENT_BINS,
    bin_medians,
    find_drift,
)

INTERMITTENT_FLAGS = int(QualityFlag.SPIKE)
PERSISTENT_FLAGS = int(QualityFlag.STUCK | QualityFlag.DRIFT)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


def flagged_shares(
    ts: np.ndarray, quality: np.ndarray, ends: np.ndarray, span_s: float, flags: int
) -> np.ndarray:
    """Per end e, the share of readings in (e - span_s, e] with any of ``flags`` (0 when none)."""
    bad = np.cumsum(np.r_[0, (quality.astype(np.int64) & flags) != 0])
    hi = np.searchsorted(ts, ends, side="right")
    lo = np.searchsorted(ts, ends - span_s, side="right")
    count = hi - lo
    return np.where(count > 0, (bad[hi] - bad[lo]) / np.maximum(count, 1), 0.0)


def fault_scores(ts: np.ndarray, quality: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per end, how sustained the sensor's fault is, in units of its opening level: the larger of the
    spike share / VIGIL_SENSOR_FAULT_OPEN_SHARE and the stuck-or-drift share /
    VIGIL_SENSOR_FAULT_PERSISTENT_SHARE over the last VIGIL_SENSOR_FAULT_SPAN_S (1.0 opens an alert)."""
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    spikes = flagged_shares(ts, quality, ends, span, INTERMITTENT_FLAGS)
    persistent = flagged_shares(ts, quality, ends, span, PERSISTENT_FLAGS)
    return np.maximum(
        spikes / settings.VIGIL_SENSOR_FAULT_OPEN_SHARE,
        persistent / settings.VIGIL_SENSOR_FAULT_PERSISTENT_SHARE,
    )


FAULT_FLAGS = INTERMITTENT_FLAGS | PERSISTENT_FLAGS
# A window's flags by which a sensor explains the model's score (module docstring, 4): stuck readings enter
# the features as they are; spikes and out-of-range readings are left out of them (detection.features) and
# wear reads as drift at first, so those count only once the sensor has a sensor-fault alert.
STUCK_FLAGS = int(QualityFlag.STUCK)
ALERTED_FLAGS = int(QualityFlag.OUT_OF_RANGE | QualityFlag.SPIKE | QualityFlag.STUCK | QualityFlag.DRIFT)
SENSOR_WORDING = ("readings clean again", "the sensor is still faulty")

Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # (ts epoch s, values, quality bits), time-ordered
_EMPTY: Series = (np.zeros(0), np.zeros(0), np.zeros(0, np.uint16))


@dataclass
class SensorFaults:
    """What one run of the step found: the alert ids changed (for ``broadcast_alerts``) and, per asset, the
    roles whose sensor holds a sensor-fault alert after it (role -> alert id), for ``held_roles``."""

    changed: list[int] = field(default_factory=list)
    alerted: dict[int, dict[str, int]] = field(default_factory=dict)


def readings_from(first_new_s: float, end_s: float, step_s: float) -> float:
    """The earliest reading time (exclusive) this step needs for an asset whose new window ends lie after
    ``first_new_s`` and up to ``end_s``: the span of the rule engine's context windows, and the drift
    history before the earliest drift evaluation (``drift_evaluations``). The scorer reads the readings once, from here on."""
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    depth = max(1, int(settings.VIGIL_ALERT_CLEAR_WINDOWS))
    start = first_new_s - (depth + 1) * step_s - span
    evaluations = drift_evaluations(first_new_s - step_s, end_s, span)
    if evaluations:  # the earliest evaluation looks back over the drift rule's history
        start = min(start, evaluations[0][0] - float(settings.VIGIL_SENSOR_DRIFT_HISTORY_S) - DRIFT_BIN_S)
    return start


def held_roles(faults: SensorFaults, asset_id: int, flagged: Mapping[str, int]) -> dict[str, int | None]:
    """The roles whose faulty sensor may explain a champion window of the asset with the quality bits
    ``flagged`` (role -> OR of the window's readings' bits), each with its sensor-fault alert id (None: no
    alert yet): stuck readings in the window, or any flagged reading of a sensor that has a sensor-fault
    alert (see the module docstring, 4). Empty for the common case."""
    if not flagged:
        return {}
    alerted = faults.alerted.get(asset_id, {})
    return {
        role: alerted.get(role)
        for role, bits in flagged.items()
        if int(bits) & (ALERTED_FLAGS if role in alerted else STUCK_FLAGS)
    }


def mark_drift(sensors: Sequence[int], series: dict[int, Series], end_s: float, since_s: float) -> list[int]:
    """Flag DRIFT on the readings in (since_s, end_s] of the sensors whose relation to the others drifts at
    ``end_s`` (``plant.quality.drift_scores``; at most its recent bins back); replaces their entries of
    ``series`` by copies with the bit set and returns their ids. Nothing to do (and no cost) when no
    sensor's readings reach back ``plant.quality.DRIFT_MIN_SPAN_S``."""
    if not any(len(series[s][0]) and series[s][0][0] <= end_s - DRIFT_MIN_SPAN_S for s in sensors):
        return []
    history = float(settings.VIGIL_SENSOR_DRIFT_HISTORY_S)
    start = end_s - np.floor(history / DRIFT_BIN_S) * DRIFT_BIN_S
    medians, flagged, spread = bin_medians([series[s] for s in sensors], start, end_s, DRIFT_BIN_S)
    found = [sensors[i] for i in np.flatnonzero(find_drift(medians, reference_mask=~flagged, spread=spread))]
    since = max(since_s, end_s - DRIFT_RECENT_BINS * DRIFT_BIN_S)
    for sensor_id in found:
        Reading.objects.filter(sensor_id=sensor_id, ts__gt=_utc(since), ts__lte=_utc(end_s)).update(
            quality=F("quality").bitor(int(QualityFlag.DRIFT))
        )
        # Changed in place, so the rollups' watermark (new ids) would not see it. After commit, and robust: a
        # lock conflict with the roll-up task must not fail the scoring.
        transaction.on_commit(
            partial(rollups.refresh_rollups, [sensor_id], _utc(since), _utc(end_s)), robust=True
        )
        ts, values, quality = series[sensor_id]
        quality = quality.astype(np.uint16)  # a copy: the scorer's arrays stay as read
        quality[(ts > since) & (ts <= end_s)] |= int(QualityFlag.DRIFT)
        series[sensor_id] = (ts, values, quality)
    return found


def sensor_params(asset: Asset) -> rules.RuleParams:
    """The rule engine's parameters for the asset's sensor-fault scores (1.0 opens, on one window)."""
    return rules.RuleParams(
        1.0,
        settings.VIGIL_SENSOR_FAULT_CLEAR_RATIO,
        1,
        settings.VIGIL_ALERT_CLEAR_WINDOWS,
        escalation_factor=settings.VIGIL_ALERT_ESCALATION_FACTOR,
        severity_shift=CRITICALITY_SHIFT.get(asset.criticality, 0),
        severity_levels=len(Severity),
    )


def drift_evaluations(previous_end_s: float, last_end_s: float, span_s: float) -> list[tuple[float, float]]:
    """(end, since) of the drift evaluations of a run whose new window ends lie in (previous_end_s,
    last_end_s]: one at each multiple of DRIFT_BIN_S they complete over the run's last ``span_s``, each
    flagging the readings of its own bin, (end - DRIFT_BIN_S, end]. The scorer's usual run (one new window)
    makes one every DRIFT_BIN_S; a backlog at most span_s / DRIFT_BIN_S + 1, and older windows get none of
    their own (a drift that lasts is found at the run's end)."""
    first = int(np.floor(previous_end_s / DRIFT_BIN_S + 1e-9)) + 1
    last = int(np.floor(last_end_s / DRIFT_BIN_S + 1e-9))
    first = max(first, last - int(span_s // DRIFT_BIN_S))
    return [(b * DRIFT_BIN_S, (b - 1) * DRIFT_BIN_S) for b in range(first, last + 1)]


def apply_sensor_faults(
    version: ModelVersion,
    chunk: Sequence[tuple[Asset, Sequence[datetime], Mapping[int, str], Mapping[str, Series]]],
) -> SensorFaults:
    """Evaluate every sensor of each asset of ``chunk`` ((asset, new window ends ascending, sensor id ->
    role, role -> its readings from ``readings_from`` on, as the scorer read them)) at its new window ends
    and persist the sensor-fault alerts the rule engine opens, updates, closes, resumes or re-opens. Run
    inside the scorer's transaction; a chunk of healthy assets costs one query whatever its size (the
    sensors' alerts holding their key)."""
    result = SensorFaults()
    chunk = [item for item in chunk if item[1] and item[2]]
    if not chunk:
        return result
    holding = _holding(
        Alert.objects.select_for_update().filter(
            asset_id__any=[asset.pk for asset, *_ in chunk], kind=AlertKind.SENSOR_FAULT, is_shadow=False
        )
    )
    active = {alert.sensor_id: alert for alert in holding.order_by("opened_at")}
    now = timezone.now()
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    params_by: dict[str, rules.RuleParams] = {}
    for asset, ends, sensors, series in chunk:
        step = float(asset.asset_type.step_s)
        if asset.criticality not in params_by:
            params_by[asset.criticality] = sensor_params(asset)
        params = params_by[asset.criticality]
        own = {sensor_id: series.get(role, _EMPTY) for sensor_id, role in sensors.items()}
        mine = sorted(sensors)
        new_s = np.array([end.timestamp() for end in ends])
        for end_s, since_s in drift_evaluations(float(new_s[0]) - step, float(new_s[-1]), span):
            mark_drift(mine, own, end_s, since_s)
        context_s = new_s[0] - step * np.arange(params.depth, 0, -1)
        ctx = None
        for sensor_id in mine:
            ts_s, _, bits = own[sensor_id]
            alert = active.get(sensor_id)
            if alert is None and not (bits & FAULT_FLAGS).any():
                continue  # the common case: a clean sensor, no alert, no computation
            scores = fault_scores(ts_s, bits, np.r_[context_s, new_s])
            role = sensors[sensor_id]
            if alert is None and not (scores[params.depth :] > params.open_threshold).any():
                continue
            if ctx is None:
                maintenance = MaintenanceWindow.objects.filter(
                    asset=asset, start__lte=ends[-1], end__gte=ends[0]
                )
                ctx = _Context(asset, version, False, None, list(maintenance), now, params)
            alert, changed = _run(ctx, sensor_id, role, alert, context_s, new_s, scores)
            result.changed += changed
            if alert is not None:
                result.alerted.setdefault(asset.pk, {})[role] = alert.pk
    result.changed = list(dict.fromkeys(result.changed))
    return result


def _run(
    ctx: _Context,
    sensor_id: int,
    role: str,
    alert: Alert | None,
    context_s: np.ndarray,
    new_s: np.ndarray,
    scores: np.ndarray,
) -> tuple[Alert | None, list[int]]:
    """One sensor's new scores through the rule engine and the lifecycle's persistence (the same loop as
    the model's alerts, verdicts' episodes included); returns the sensor's alert after them and the ids
    changed."""
    depth = len(context_s)
    boundary = None
    if alert is None:
        boundary = (
            Alert.objects.filter(sensor_id=sensor_id, kind=AlertKind.SENSOR_FAULT, is_shadow=False)
            .exclude(state__in=ACTIVE_STATES)
            .order_by("-last_seen_at")
            .values_list("last_seen_at", flat=True)
            .first()
        )
    state = rules.RuleState(
        recent=tuple((_utc(t), float(v)) for t, v in zip(context_s, scores[:depth], strict=True)),
        active=_rule_alert(ctx, alert),
        boundary=boundary,
    )
    feed = [
        rules.Window(_utc(t), float(v), in_maintenance=ctx.in_maintenance(_utc(t)) is not None)
        for t, v in zip(new_s, scores[depth:], strict=True)
    ]
    new = {window.key: ScoredWindow(window.key, window.score, None, {}) for window in feed}

    def opener(window: ScoredWindow, opened: rules.ActiveAlert, previous: Alert | None, note: str):
        return _open(ctx, sensor_id, role, window.end, opened, reopened_from=previous, note=note)

    alert, changed, _ = persist_transitions(ctx, alert, state, feed, new, opener, SENSOR_WORDING)
    return alert, changed


def _open(
    ctx: _Context,
    sensor_id: int,
    role: str,
    end: datetime,
    opened: rules.ActiveAlert,
    *,
    reopened_from: Alert | None = None,
    note: str = "",
) -> tuple[Alert, bool]:
    """Create the sensor-fault Alert row and its first event; False when another worker had opened the
    sensor's alert first, which is returned instead."""
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    state = AlertState.SUPPRESSED if opened.hold == rules.Hold.SUPPRESSED else AlertState.OPEN
    params = ctx.params
    alert = Alert(
        asset=ctx.asset,
        model_version=ctx.version,
        kind=AlertKind.SENSOR_FAULT,
        sensor_id=sensor_id,
        state=state,
        category=AlertCategory.SENSOR_FAULT,
        severity=severity_for(
            opened.peak_score, params.open_threshold, params.clear_threshold, ctx.asset.criticality
        ),
        opened_at=end,
        first_window_start=end - timedelta(seconds=span),
        last_seen_at=end,
        peak_score=opened.peak_score,
        peak_window_end=opened.peak,
        window_count=opened.count,
        explanation=None,
        explanation_status=ExplanationStatus.READY,  # the flags are the explanation; no SHAP to wait for
        dominant_role=role,
        reopened_from=reopened_from,
        reopen_note=note,
    )
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        existing = (
            _holding(
                Alert.objects.select_for_update().filter(
                    sensor_id=sensor_id, kind=AlertKind.SENSOR_FAULT, is_shadow=False
                )
            )
            .order_by("-opened_at")
            .first()
        )
        if existing is None:
            raise
        return existing, False
    reason = f"the {role} sensor's readings flagged spike, stuck or drift over the last {span:g} s"
    if reopened_from is not None:
        reason = f"{note} (alert #{reopened_from.pk})"
    # The model's alerts this sensor explains, held before this alert existed (see the docstring, 4).
    held = (
        Alert.objects.filter(asset=ctx.asset, state=AlertState.SUPPRESSED, is_shadow=False)
        .exclude(kind=AlertKind.SENSOR_FAULT)
        .filter(events__kind=AlertEventKind.HELD, events__reason__contains=role)
        .values_list("pk", flat=True)
        .distinct()
    )
    if held:
        ids = ", ".join(f"#{pk}" for pk in sorted(held))
        reason += f"; it explains the anomaly model's alert {ids}, held"
    AlertEvent.objects.create(alert=alert, at=ctx.now, from_state="", to_state=state, reason=reason[:300])
    return alert, True
