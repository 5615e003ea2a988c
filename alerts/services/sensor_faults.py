"""Sensor faults as alerts: a sensor whose readings are persistently flagged opens "check sensor X".

Called by the scorer (``alerts.scoring``) for the champion version, in the transaction that stored the
champion's new windows, with those windows' ends: each end is one evaluation of every sensor of the asset.

1. Drift (``plant.quality.drift_scores``; the statistic, its window and parameters are documented there):
   at the new ends (one evaluation per DRIFT_BIN_S of them, ``drift_evaluations``), each sensor's
   relation to the asset's other sensors over the last VIGIL_SENSOR_DRIFT_HISTORY_S is checked; the readings of the recent bins of a drifting sensor get
   ``QualityFlag.DRIFT`` (one UPDATE, an OR of the bit, so a re-run changes nothing). It runs here and not
   at ingest because it needs every sensor of the asset on one time grid and an hour of history, which an
   ingest batch (often one sensor, a few seconds) does not have; ingest's cost is unchanged. Each
   evaluation flags the readings since the previous one, at most DRIFT_BIN_S of them.
2. Sustained (``fault_scores``; defaults and their reasons in config/settings.py): at each end e, the
   share of the sensor's readings in (e - VIGIL_SENSOR_FAULT_SPAN_S, e] flagged spike, against
   VIGIL_SENSOR_FAULT_OPEN_SHARE, and flagged stuck or drift, against VIGIL_SENSOR_FAULT_PERSISTENT_SHARE;
   the larger ratio is the window's score. Scores go through the same rule engine as model scores
   (``detection.rules.step``): open at 1.0 on one window (the span already makes it sustained), close after
   VIGIL_ALERT_CLEAR_WINDOWS windows below VIGIL_SENSOR_FAULT_CLEAR_RATIO, maintenance and snooze holds as
   for every alert. The shares of the windows before the new ones are
   recomputed from the readings (the engine's context), so no counter is stored.
3. One active sensor-fault alert per sensor (``kind`` sensor_fault, ``sensor`` set, category
   "check the sensor"); verdicts and their labels are ``alerts.services.feedback``'s, like any alert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alerts.choices import ACTIVE_STATES, AlertCategory, AlertKind, AlertState, ExplanationStatus
from alerts.models import Alert, AlertEvent, MaintenanceWindow
from alerts.services.lifecycle import _Context, _progress, _rule_alert, _save_progress, severity_for
from detection import rules
from models_registry.models import ModelVersion
from plant.choices import QualityFlag
from plant.models import Asset, Reading
from plant.quality import DRIFT_BIN_S, DRIFT_RECENT_BINS, bin_medians, find_drift
from plant.series import read_readings

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


def mark_drift(
    sensors: Sequence[int],
    series: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    end_s: float,
    since_s: float,
) -> list[int]:
    """Flag DRIFT on the readings in (since_s, end_s] of the sensors whose relation to the others drifts at
    ``end_s`` (``plant.quality.drift_scores``; at most its recent bins back); updates ``series``' quality
    arrays in place and returns their ids."""
    history = float(settings.VIGIL_SENSOR_DRIFT_HISTORY_S)
    start = end_s - np.floor(history / DRIFT_BIN_S) * DRIFT_BIN_S
    medians, flagged, spread = bin_medians([series[s] for s in sensors], start, end_s, DRIFT_BIN_S)
    found = [sensors[i] for i in np.flatnonzero(find_drift(medians, reference_mask=~flagged, spread=spread))]
    since = max(since_s, end_s - DRIFT_RECENT_BINS * DRIFT_BIN_S)
    for sensor_id in found:
        Reading.objects.filter(sensor_id=sensor_id, ts__gt=_utc(since), ts__lte=_utc(end_s)).update(
            quality=F("quality").bitor(int(QualityFlag.DRIFT))
        )
        ts, _, quality = series[sensor_id]
        quality[(ts > since) & (ts <= end_s)] |= int(QualityFlag.DRIFT)
    return found


def sensor_fault_params() -> rules.RuleParams:
    """The rule engine's parameters for sensor faults: a score is the flagged share in units of its opening
    level, so an alert opens at 1.0 on one window (the span already makes it sustained) and clears after
    VIGIL_ALERT_CLEAR_WINDOWS windows below VIGIL_SENSOR_FAULT_CLEAR_RATIO. Pages measure the alert by it."""
    return rules.RuleParams(
        1.0, settings.VIGIL_SENSOR_FAULT_CLEAR_RATIO, 1, settings.VIGIL_ALERT_CLEAR_WINDOWS
    )


def drift_evaluations(new_s: np.ndarray, step_s: float, span_s: float) -> list[tuple[float, float]]:
    """(end, since) of the drift evaluations of one run's new window ends (ascending epoch seconds): one
    per DRIFT_BIN_S of them over the last ``span_s``, each flagging the readings since the previous one
    and at most max(DRIFT_BIN_S, step_s) of them.

    Each evaluation vouches for its own stretch only, so a persistent share needs consecutive findings. A
    run with many new windows (the first scoring of an asset's history, a backlog chunk, a gateway's
    minutes-long batch) evaluated once would let a single finding flag DRIFT_RECENT_BINS bins of readings,
    which alone passes VIGIL_SENSOR_FAULT_PERSISTENT_SHARE: a healthy pump's one-in-hundreds false finding
    (plant/quality.py) opened "check sensor X" on about one world start in twenty. Windows older than the
    run's last ``span_s`` get no evaluation of their own, so a backlog costs at most
    span_s / DRIFT_BIN_S + 1 evaluations per asset and run; a drift that lasts is found at its end."""
    last = float(new_s[-1])
    ends = [last]
    for end in new_s[-2::-1].tolist():
        if end <= last - span_s:
            break
        if ends[-1] - end >= DRIFT_BIN_S - 1e-6:
            ends.append(end)
    evaluations, since = [], float(new_s[0]) - step_s
    for end in reversed(ends):
        evaluations.append((end, max(since, end - max(DRIFT_BIN_S, step_s))))
        since = end
    return evaluations


def apply_sensor_faults(
    version: ModelVersion, chunk: Sequence[tuple[Asset, Sequence[datetime], Mapping[int, str]]]
) -> list[int]:
    """Evaluate every sensor of each asset of ``chunk`` ((asset, new window ends ascending, sensor id ->
    role)) at its new window ends and persist the sensor-fault alerts the rule engine opens, updates,
    closes or resumes. Returns the ids of the alerts changed (for ``broadcast_alerts``). Run inside the
    scorer's transaction; a chunk of healthy assets costs two queries whatever its size (one read of the
    readings, one of the active sensor-fault alerts)."""
    chunk = [(asset, ends, sensors) for asset, ends, sensors in chunk if ends and sensors]
    if not chunk:
        return []
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    history = float(settings.VIGIL_SENSOR_DRIFT_HISTORY_S)
    params = sensor_fault_params()
    firsts, lasts = [], []
    for asset, ends, _ in chunk:
        firsts.append(
            min(
                ends[0].timestamp() - params.depth * float(asset.asset_type.step_s) - span,
                ends[-1].timestamp() - history,
            )
        )
        lasts.append(ends[-1].timestamp())
    ids = sorted(sensor_id for _, _, sensors in chunk for sensor_id in sensors)
    sid, ts, values, quality = read_readings(ids, _utc(min(firsts)), _utc(max(lasts)), include_start=False)
    series = {}
    for sensor_id in ids:
        lo, hi = np.searchsorted(sid, [sensor_id, sensor_id + 1])
        series[sensor_id] = (ts[lo:hi], values[lo:hi], quality[lo:hi].astype(np.uint16))
    active = {
        alert.sensor_id: alert
        for alert in Alert.objects.select_for_update().filter(
            sensor_id__in=ids, kind=AlertKind.SENSOR_FAULT, is_shadow=False, state__in=ACTIVE_STATES
        )
    }
    now = timezone.now()
    changed: list[int] = []
    for (asset, ends, sensors), first_s in zip(chunk, firsts, strict=True):
        mine = sorted(sensors)
        own = {}
        for sensor_id in mine:  # the asset's own look-back, whatever the chunk's widest
            t, v, q = series[sensor_id]
            keep = t > first_s
            own[sensor_id] = (t[keep], v[keep], q[keep])
        new_s = np.array([end.timestamp() for end in ends])
        step = float(asset.asset_type.step_s)
        for end_s, since_s in drift_evaluations(new_s, step, span):
            mark_drift(mine, own, end_s, since_s)
        context_s = new_s[0] - step * np.arange(params.depth, 0, -1)
        ctx = None
        for sensor_id in mine:
            ts_s, _, bits = own[sensor_id]
            shares = fault_scores(ts_s, bits, np.r_[context_s, new_s])
            alert = active.get(sensor_id)
            if alert is None and not (shares[params.depth :] > params.open_threshold).any():
                continue  # the common case: a clean sensor, no alert, no query
            if ctx is None:
                maintenance = MaintenanceWindow.objects.filter(
                    asset=asset, start__lte=ends[-1], end__gte=ends[0]
                )
                ctx = _Context(asset, version, False, None, list(maintenance), now, params)
            changed += _run(ctx, sensor_id, sensors[sensor_id], alert, context_s, new_s, shares)
    return changed


def _run(
    ctx: _Context,
    sensor_id: int,
    role: str,
    alert: Alert | None,
    context_s: np.ndarray,
    new_s: np.ndarray,
    shares: np.ndarray,
) -> list[int]:
    params, depth = ctx.params, len(context_s)
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
        recent=tuple((_utc(t), float(v)) for t, v in zip(context_s, shares[:depth], strict=True)),
        active=_rule_alert(ctx, alert),
        boundary=boundary,
    )
    feed = [
        rules.Window(_utc(t), float(v), in_maintenance=ctx.in_maintenance(_utc(t)) is not None)
        for t, v in zip(new_s, shares[depth:], strict=True)
    ]
    state, transitions = rules.step(state, feed, params)
    changed: list[int] = []
    progress = _progress(alert)
    for transition in transitions:
        end = transition.key
        if isinstance(transition, rules.Opened):
            alert = _open(ctx, sensor_id, role, end, transition.alert)
            if alert is None:
                return changed  # another worker opened it first; its run carries on from there
            progress = _progress(alert)
        elif isinstance(transition, rules.Seen) and alert is not None:
            alert.window_count, alert.last_seen_at = transition.alert.count, transition.alert.last_seen
            if transition.new_peak:
                alert.peak_score, alert.peak_window_end = transition.alert.peak_score, transition.alert.peak
                alert.severity = _severity(ctx, alert.peak_score)
        elif isinstance(transition, rules.Cleared) and alert is not None:
            _save_progress(alert, progress)
            alert.transition(
                AlertState.AUTO_CLOSED,
                reason=f"readings clean again for {params.clear_windows} windows",
                at=ctx.now,
            )
        elif isinstance(transition, rules.Resumed) and alert is not None:
            reason = (
                "snooze expired; the sensor is still faulty"
                if transition.hold == rules.Hold.SNOOZE_EXPIRED
                else "maintenance window over; the sensor is still faulty"
            )
            alert.transition(AlertState.OPEN, reason=reason, at=ctx.now)
        if alert is not None:
            changed.append(alert.pk)
        if isinstance(transition, rules.Cleared):
            alert = None
    if alert is not None:
        _save_progress(alert, progress)
    return list(dict.fromkeys(changed))


def _severity(ctx: _Context, share: float):
    return severity_for(share, ctx.params.open_threshold, ctx.params.clear_threshold, ctx.asset.criticality)


def _open(ctx: _Context, sensor_id: int, role: str, end: datetime, opened: rules.ActiveAlert) -> Alert | None:
    """Create the sensor-fault Alert row and its first event (None when another worker was first)."""
    span = float(settings.VIGIL_SENSOR_FAULT_SPAN_S)
    state = AlertState.SUPPRESSED if opened.hold == rules.Hold.SUPPRESSED else AlertState.OPEN
    alert = Alert(
        asset=ctx.asset,
        model_version=ctx.version,
        kind=AlertKind.SENSOR_FAULT,
        sensor_id=sensor_id,
        state=state,
        category=AlertCategory.SENSOR_FAULT,
        severity=_severity(ctx, opened.peak_score),
        opened_at=end,
        first_window_start=end - timedelta(seconds=span),
        last_seen_at=end,
        peak_score=opened.peak_score,
        peak_window_end=opened.peak,
        window_count=opened.count,
        explanation=None,
        explanation_status=ExplanationStatus.READY,  # the flags are the explanation; no SHAP to wait for
        dominant_role=role,
    )
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        return None
    AlertEvent.objects.create(
        alert=alert,
        at=ctx.now,
        from_state="",
        to_state=state,
        reason=f"the {role} sensor's readings flagged spike, stuck or drift over the last {span:g} s"[:300],
    )
    return alert
