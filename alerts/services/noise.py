"""Feedback-driven noise control: find what technicians keep dismissing and suggest how to stop it.

A *noise group* is an (asset, model version, dominant sensor role) whose alerts got at least
``VIGIL_NOISE_DISMISSALS`` current false-alarm verdicts within the last ``VIGIL_NOISE_PERIOD_DAYS`` days.
For each group engineers are offered:

* **raise the asset's threshold** — the smallest open threshold (clear threshold keeping the version's
  band ratio) under which none of the dismissed alerts would have opened while every confirmed fault still
  would, found by replaying the stored Score rows through ``alert_episodes`` (the lifecycle's own rules);
  when no threshold does both, the one removing the most dismissals without losing a fault is offered and
  the page says so. When the model catches no confirmed fault now, nothing can check what a raise would
  miss: the page says so, and no threshold beyond one hysteresis band above the model's is offered
  (``raise_ceiling``); a plan with nothing left to offer is refused, and applying it is a 400. Projected:
  alerts, dismissed alerts still raised and recall, before → after;
* **mark the sensor for calibration** — alerts that sensor drives are then categorised as sensor issues
  ("Check the sensor"); projected: how many of the period's alerts would have been held that way;
* **retrain** — a link to the model registry.

Matching is by time: a projected episode "is" a real alert (or catches a missed failure) when its span
(opening window to last anomalous window) overlaps the alert's (``opened_at`` to ``last_seen_at``) or the
failure label's range. Recall = caught confirmed-fault alerts and missed failures / all of them, the
confirmed faults being those of machine-fault alerts as in the health page's recall (alerts.metrics.facts).

Applying writes an ``alerts.ThresholdOverride`` or sets ``plant.Sensor.needs_calibration`` and records an
``alerts.NoiseAction``; applying twice changes nothing the second time, and both can be undone. A group's
history (``history``) finds the actions taken on its dismissed alerts by their ids, not by the role they
were filed under, which a later reading of the explanations can change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Model, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.broadcast import broadcast_alerts
from alerts.choices import (
    ACTIVE_STATES,
    AlertCategory,
    FeedbackKind,
    NoiseActionKind,
    Verdict,
    category_counts,
)
from alerts.metrics.facts import MODEL_JUDGED_CATEGORIES, verdicts_in_force
from alerts.models import Alert, Feedback, NoiseAction, Score, ThresholdOverride
from detection.rules import alert_episodes, overlap
from detection.runtime import higher_is_worse
from models_registry.models import ModelVersion
from plant.models import Asset, Sensor
from plant.params import ParamError, check_text, parse_id

M = TypeVar("M", bound=Model)

Span = tuple[float, float]  # (start, end) in epoch seconds


class NoiseError(ValueError):
    """The suggestion cannot be applied as asked; the message says why (HTTP 400)."""


class NoiseNotFound(LookupError):
    """No such noise group among the user's sites (HTTP 404)."""


# --- pure projections -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the alert rules give over a score series at one pair of thresholds."""

    open_threshold: float
    clear_threshold: float
    alerts: int  # projected alerts (episodes)
    dismissed_raised: int  # dismissed alerts of the group that would still be raised
    faults_caught: int  # confirmed-fault alerts and missed failures overlapped by an episode
    faults_total: int

    @property
    def recall(self) -> float | None:
        return self.faults_caught / self.faults_total if self.faults_total else None


def _overlaps(spans: Sequence[Span], target: Span) -> bool:
    return any(start <= target[1] and target[0] <= end for start, end in spans)


def outcome(
    ends: np.ndarray,
    scores: np.ndarray,
    open_threshold: float,
    clear_threshold: float,
    *,
    open_windows: int,
    clear_windows: int,
    higher: bool,
    dismissed: Sequence[Span],
    faults: Sequence[Span],
    window_overlap: int = 1,
) -> Outcome:
    """Replay ``scores`` (window ends ``ends``, epoch seconds) at the given thresholds and match the
    projected alerts against the dismissed alerts and the known faults by time overlap."""
    episodes = alert_episodes(
        scores,
        open_threshold,
        clear_threshold,
        open_windows,
        clear_windows,
        higher=higher,
        window_overlap=window_overlap,
    )
    spans = [(float(ends[e.opened]), float(ends[e.last_seen])) for e in episodes]
    return Outcome(
        open_threshold=float(open_threshold),
        clear_threshold=float(clear_threshold),
        alerts=len(episodes),
        dismissed_raised=sum(_overlaps(spans, span) for span in dismissed),
        faults_caught=sum(_overlaps(spans, span) for span in faults),
        faults_total=len(faults),
    )


def banded_clear(open_threshold: float, version_open: float, version_clear: float) -> float:
    """The clear threshold that keeps the version's band for a new open threshold: the same clear/open
    ratio when both thresholds are positive, else the same band width (a ratio means nothing around 0)."""
    if version_open > 0 and version_clear > 0:
        return open_threshold * (version_clear / version_open)
    return open_threshold - (version_open - version_clear)


def _kill_threshold(ends: np.ndarray, rolling: np.ndarray, span: Span, m: int) -> float | None:
    """The lowest open threshold (in the bad direction) under which no run of M windows ending inside
    ``span`` is entirely above it: the largest rolling minimum there. None: no scores cover the span."""
    inside = np.flatnonzero((ends >= span[0]) & (ends <= span[1]))
    inside = inside[inside >= m - 1]
    if not len(inside):
        return None
    return float(rolling[inside - (m - 1)].max())


@dataclass(frozen=True)
class ThresholdPlan:
    """The proposed per-asset thresholds with the projections before (the version's) and after. A refused
    plan proposes nothing (``after`` is ``before``) and cannot be applied; ``note`` says why."""

    before: Outcome
    after: Outcome
    feasible: bool  # removes every dismissed alert and loses no caught fault
    note: str
    # False: the model catches no confirmed fault now, so nothing shows what a raise would miss.
    checked: bool = True
    refused: bool = False


def raise_ceiling(version_open: float, version_clear: float, *, higher: bool) -> float:
    """How far an open threshold may be raised when no caught fault can check it: one hysteresis band
    (open - clear) above the version's. Scores grazing the threshold (noise) wander within the band the model
    itself allows for uncertainty; an alert that went further was not grazing it, and a threshold that hides
    it would hide a fault of the same size, which only a confirmed fault could rule out."""
    band = abs(version_open - version_clear)
    return version_open + band if higher else version_open - band


def plan_threshold(
    ends: np.ndarray,
    scores: np.ndarray,
    version_open: float,
    version_clear: float,
    *,
    open_windows: int,
    clear_windows: int,
    higher: bool,
    dismissed: Sequence[Span],
    faults: Sequence[Span],
    window_overlap: int = 1,
) -> ThresholdPlan | None:
    """The smallest raised open threshold that would have removed the dismissed alerts and kept the caught
    faults, or the best trade-off when none does. None when the stored scores do not cover the dismissed
    alerts (nothing to replay).

    Only the thresholds at which one of the dismissed alerts stops opening can matter (the largest rolling
    minimum of M windows inside it), so those few candidates are replayed exactly, smallest first. A candidate
    that would miss a confirmed fault the model catches now is never offered; when the model catches none
    (nothing to check a raise against) no candidate above ``raise_ceiling`` is. With no candidate left the
    plan is refused.
    """
    sign = 1.0 if higher else -1.0
    common = dict(
        open_windows=open_windows,
        clear_windows=clear_windows,
        higher=higher,
        dismissed=dismissed,
        faults=faults,
        window_overlap=window_overlap,
    )
    before = outcome(ends, scores, version_open, version_clear, **common)
    m = max(1, int(open_windows))
    if len(scores) < m:
        return None
    signed = sign * np.asarray(scores, dtype=np.float64)
    rolling = np.lib.stride_tricks.sliding_window_view(signed, m).min(axis=1)
    kills = [_kill_threshold(ends, rolling, span, m) for span in dismissed]
    raising = [k for k in kills if k is not None and k > sign * version_open]
    if not raising:
        return None
    checked = before.faults_caught > 0
    ceiling = raise_ceiling(version_open, version_clear, higher=higher)
    beyond = [] if checked else [k for k in raising if k > sign * ceiling]
    unchecked = "" if checked else "no confirmed fault to check this against"
    too_high = (
        f"{len(beyond)} dismissed alert{'s' if len(beyond) != 1 else ''} scored {'up' if higher else 'down'} to "
        f"{sign * max(beyond):.4g}, beyond {ceiling:.4g} (one hysteresis band {'above' if higher else 'below'} "
        f"the open threshold {version_open:.4g}): with no "
        f"confirmed fault to check against, a threshold that high could hide a real fault of that size, so "
        f"none is offered for {'them' if len(beyond) != 1 else 'it'}: check the sensor or retrain"
        if beyond
        else ""
    )
    tried: list[Outcome] = []
    for candidate in sorted(set(raising) - set(beyond)):
        open_t = sign * candidate
        result = outcome(ends, scores, open_t, banded_clear(open_t, version_open, version_clear), **common)
        if result.faults_caught < before.faults_caught:
            continue  # never above what would have missed a confirmed fault
        tried.append(result)
        if result.dismissed_raised == 0:
            note = "removes every dismissed alert " + (
                "and keeps every caught fault" if checked else f"but there is {unchecked}"
            )
            return ThresholdPlan(before, result, True, note, checked)
    if not tried:
        note = too_high or (
            "every threshold that would remove a dismissed alert would also miss a confirmed fault the "
            "model catches now: none is offered"
        )
        return ThresholdPlan(before, before, False, note, checked, refused=True)
    best = max(tried, key=lambda o: (-o.dismissed_raised, -sign * o.open_threshold))
    removed = before.dismissed_raised - best.dismissed_raised
    note = (
        f"removes {removed} of {before.dismissed_raised} dismissed alerts; "
        + (too_high or "no threshold removes them all while keeping every caught fault")
        + (f"; {unchecked}" if unchecked and not too_high else "")
    )
    return ThresholdPlan(before, best, False, note, checked)


# --- the groups and their suggestions ---------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseKey:
    """Identifies a noise group in URLs: ``<asset id>-<version id>-<role>``."""

    asset_id: int
    version_id: int
    role: str

    @property
    def slug(self) -> str:
        return f"{self.asset_id}-{self.version_id}-{self.role}"

    @classmethod
    def parse(cls, raw: str) -> NoiseKey | None:
        asset, _, rest = (raw or "").partition("-")
        version, _, role = rest.partition("-")
        try:  # plant.params' rules: ASCII ids that fit a bigint, a role without control characters
            key = cls(parse_id("key", asset), parse_id("key", version), check_text("key", role))
        except ParamError:
            return None
        return key if key.role else None


def _period() -> timedelta:
    return timedelta(days=int(settings.VIGIL_NOISE_PERIOD_DAYS))


def _dismissals(site_ids: Sequence[int] | None, since: datetime):
    """Current false-alarm verdicts on visible alerts with a dominant role, given since ``since``; not on
    data-link alerts: readings that did not arrive say nothing about the threshold or the sensor."""
    rows = (
        verdicts_in_force()
        .filter(
            verdict=Verdict.FALSE_ALARM,
            created_at__gte=since,
            alert__isnull=False,
            alert__is_shadow=False,
        )
        .exclude(alert__dominant_role="")
        .exclude(alert__category=AlertCategory.DATA_LINK)
    )
    if site_ids is not None:
        rows = rows.filter(asset__site_id__in=list(site_ids))
    return rows


def noise_keys(site_ids: Sequence[int] | None, *, now: datetime | None = None) -> list[NoiseKey]:
    """The noise groups of these sites (None: all), most dismissed first: one aggregate query."""
    since = (now or timezone.now()) - _period()
    rows = (
        _dismissals(site_ids, since)
        .values("alert__asset_id", "alert__model_version_id", "alert__dominant_role")
        .annotate(n=Count("alert", distinct=True))
        .filter(n__gte=int(settings.VIGIL_NOISE_DISMISSALS))
        .order_by("-n", "alert__asset_id", "alert__model_version_id", "alert__dominant_role")
    )
    return [
        NoiseKey(row["alert__asset_id"], row["alert__model_version_id"], row["alert__dominant_role"])
        for row in rows
    ]


@dataclass
class Evidence:
    """One dismissed alert of a group with the verdict that dismissed it."""

    alert: Alert
    feedback: Feedback


@dataclass
class CalibrationPlan:
    """Marking the dominant sensor for calibration: which sensors, and what it would have held."""

    sensors: list[Sensor]
    held: int  # the period's alerts driven by this role that would have been sensor issues
    held_confirmed: int  # of which confirmed faults
    already: bool


@dataclass
class Suggestion:
    """Everything the noise page shows for one group."""

    key: NoiseKey
    asset: Asset
    version: ModelVersion
    role_label: str
    since: datetime
    evidence: list[Evidence]
    threshold: ThresholdPlan | None
    calibration: CalibrationPlan
    override: ThresholdOverride | None
    alerts_in_period: int
    retrain_url: str
    history: list[NoiseAction] = field(default_factory=list)
    # (category, alerts) of the period's alerts: machine faults, sensors and data links to check, apart.
    by_category: list[tuple[AlertCategory, int]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.key.slug


def retrain_url() -> str:
    """The registry's page at its retrain form (the retrain view itself takes only the form's POST)."""
    try:
        return reverse("models_registry:index") + "#retrain-form"
    except NoReverseMatch:
        return "/models/"


def build_suggestion(
    key: NoiseKey, site_ids: Sequence[int] | None, *, now: datetime | None = None
) -> Suggestion:
    """The suggestion of one group, or NoiseNotFound when it is not (or no longer) a noise group of these
    sites. Reads the group's evidence, the period's alerts and verdicts of the (asset, version), and their
    stored scores once."""
    now = now or timezone.now()
    since = now - _period()
    assets = Asset.objects.select_related("site", "asset_type")
    if site_ids is not None:
        assets = assets.filter(site_id__in=list(site_ids))
    asset = assets.filter(pk=key.asset_id).first()
    version = ModelVersion.objects.filter(pk=key.version_id).first()
    if asset is None or version is None:
        raise NoiseNotFound("No such noise suggestion.")
    dismissals = list(
        _dismissals([asset.site_id], since)
        .filter(alert__asset=asset, alert__model_version=version, alert__dominant_role=key.role)
        .select_related("alert", "user")
        .order_by("-created_at", "-pk")
    )
    if len({f.alert_id for f in dismissals}) < int(settings.VIGIL_NOISE_DISMISSALS):
        raise NoiseNotFound("No such noise suggestion.")
    evidence = [Evidence(alert=f.alert, feedback=f) for f in dismissals]

    alerts = list(
        Alert.objects.filter(asset=asset, model_version=version, is_shadow=False, last_seen_at__gte=since)
        | Alert.objects.filter(pk__in=[e.alert.pk for e in evidence])
    )
    # Oldest first, so that the latest verdict in force is the one the dict keeps.
    verdicts = dict(verdicts_in_force().filter(alert__in=alerts).reverse().values_list("alert_id", "verdict"))
    missed = list(
        Feedback.objects.filter(asset=asset, kind=FeedbackKind.MISSED_FAILURE, label__end__gte=since)
        .select_related("label")
        .exclude(label__isnull=True)
    )
    start = min([since, *(a.first_window_start for a in alerts)])
    ends_scores = list(
        Score.objects.filter(asset=asset, model_version=version, window_end__gte=start)
        .order_by("window_end")
        .values_list("window_end", "score")
    )
    ends = np.array([e.timestamp() for e, _ in ends_scores], dtype=np.float64)
    scores = np.array([s for _, s in ends_scores], dtype=np.float64)

    def span(alert: Alert) -> Span:
        return (alert.opened_at.timestamp(), max(alert.last_seen_at, alert.opened_at).timestamp())

    dismissed_spans = [span(e.alert) for e in evidence]
    # The faults a threshold must keep catching are the model's confirmed machine faults, as in recall: a
    # confirmed sensor or data-link alert was the gate's call (alerts.metrics.facts).
    confirmed = [
        a
        for a in alerts
        if verdicts.get(a.pk) == Verdict.CONFIRMED_FAULT and a.category in MODEL_JUDGED_CATEGORIES
    ]
    fault_spans = [span(a) for a in confirmed] + [
        (f.label.start.timestamp(), f.label.end.timestamp()) for f in missed
    ]
    plan = plan_threshold(
        ends,
        scores,
        version.open_threshold,
        version.clear_threshold,
        open_windows=int(settings.VIGIL_ALERT_OPEN_WINDOWS),
        clear_windows=int(settings.VIGIL_ALERT_CLEAR_WINDOWS),
        higher=higher_is_worse(version.output_spec or {}),
        dismissed=dismissed_spans,
        faults=fault_spans,
        window_overlap=overlap(version.asset_type.window_s, version.asset_type.step_s),
    )
    sensors = list(asset.sensors.filter(role__key=key.role).select_related("role"))
    driven = [a for a in alerts if a.dominant_role == key.role and a.category == AlertCategory.MACHINE_FAULT]
    calibration = CalibrationPlan(
        sensors=sensors,
        held=len(driven),
        held_confirmed=sum(verdicts.get(a.pk) == Verdict.CONFIRMED_FAULT for a in driven),
        already=bool(sensors) and all(s.needs_calibration for s in sensors),
    )
    role_label = sensors[0].role.label if sensors else key.role
    return Suggestion(
        key=key,
        asset=asset,
        version=version,
        role_label=role_label,
        since=since,
        evidence=evidence,
        threshold=plan,
        calibration=calibration,
        override=ThresholdOverride.objects.filter(asset=asset, model_version=version, active=True)
        .select_related("created_by")
        .first(),
        alerts_in_period=len(alerts),
        by_category=category_counts(a.category for a in alerts),
        retrain_url=retrain_url(),
        history=history(asset, version, key.role, {e.alert.pk for e in evidence}),
    )


HISTORY_LIMIT = 10
THRESHOLD_ACTIONS = (NoiseActionKind.RAISE_THRESHOLD, NoiseActionKind.UNDO_THRESHOLD)
CALIBRATION_ACTIONS = (NoiseActionKind.MARK_CALIBRATION, NoiseActionKind.CALIBRATED)


def history(asset: Asset, version: ModelVersion, role: str, alert_ids: set[int]) -> list[NoiseAction]:
    """What was done before about a group, newest first (at most HISTORY_LIMIT): the threshold actions of
    its (asset, version), whose override applies to all their alerts whatever sensor drove them; the
    calibration actions on its role's sensor; and any action taken on one of its dismissed alerts (the
    action's evidence: alert ids, which never change), whatever sensor those alerts were said to be driven
    by then. An alert's dominant role is a reading of its explanation that can change after the action
    (alerts migration 0017 recomputed stored roles by a new rule): the group keyed by the new role must
    still show what was done about its alerts, while each NoiseAction keeps the role it was taken for (a
    marked sensor is the sensor that was marked). One recorded for another role says which
    (``filed_under``: that role's label)."""
    labels = dict(asset.asset_type.roles.values_list("key", "label"))
    found: list[NoiseAction] = []
    actions = NoiseAction.objects.filter(asset=asset).select_related("user").order_by("-at", "-pk")
    for action in actions.iterator(chunk_size=100):  # read until HISTORY_LIMIT are found
        evidence = action.evidence if isinstance(action.evidence, list) else []
        if (
            (action.kind in THRESHOLD_ACTIONS and action.model_version_id == version.pk)
            or (action.kind in CALIBRATION_ACTIONS and action.dominant_role == role)
            or not alert_ids.isdisjoint(evidence)
        ):
            other = action.dominant_role not in ("", role)
            action.filed_under = labels.get(action.dominant_role, action.dominant_role) if other else ""
            found.append(action)
            if len(found) == HISTORY_LIMIT:
                break
    return found


def suggestions(site_ids: Sequence[int] | None, *, now: datetime | None = None) -> list[Suggestion]:
    """Every noise group of these sites with its suggestion."""
    now = now or timezone.now()
    return [build_suggestion(key, site_ids, now=now) for key in noise_keys(site_ids, now=now)]


# --- applying and undoing ---------------------------------------------------------------------------------


def _projection(suggestion: Suggestion) -> dict[str, Any]:
    plan = suggestion.threshold
    if plan is None:
        return {"held": suggestion.calibration.held, "held_confirmed": suggestion.calibration.held_confirmed}
    return {
        "before": asdict(plan.before) | {"recall": plan.before.recall},
        "after": asdict(plan.after) | {"recall": plan.after.recall},
        "feasible": plan.feasible,
        "checked": plan.checked,
        "note": plan.note,
        "held": suggestion.calibration.held,
        "held_confirmed": suggestion.calibration.held_confirmed,
    }


def apply_threshold(suggestion: Suggestion, user: Any) -> tuple[ThresholdOverride, bool]:
    """Give the asset the proposed thresholds for this version. Returns (override, created); when an
    override is already active nothing changes (created False): a double click applies once."""
    plan = suggestion.threshold
    if plan is None:
        raise NoiseError(
            "the stored scores do not cover the dismissed alerts, so no threshold can be proposed"
        )
    if plan.refused:
        raise NoiseError(f"no threshold is offered for this group: {plan.note}")
    version = suggestion.version
    sign = 1.0 if higher_is_worse(version.output_spec or {}) else -1.0
    open_t, clear_t = plan.after.open_threshold, plan.after.clear_threshold
    if not (np.isfinite(open_t) and np.isfinite(clear_t)) or sign * open_t <= sign * version.open_threshold:
        raise NoiseError("a threshold override can only raise the model's open threshold")
    existing = ThresholdOverride.objects.filter(
        asset=suggestion.asset, model_version=version, active=True
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            override = ThresholdOverride.objects.create(
                asset=suggestion.asset,
                model_version=version,
                open_threshold=open_t,
                clear_threshold=clear_t,
                created_by=user,
                reason=(
                    f"{len(suggestion.evidence)} false alarms driven by {suggestion.role_label} since "
                    f"{suggestion.since:%Y-%m-%d}"
                )[:300],
            )
            NoiseAction.objects.create(
                kind=NoiseActionKind.RAISE_THRESHOLD,
                asset=suggestion.asset,
                model_version=version,
                dominant_role=suggestion.key.role,
                override=override,
                user=user,
                evidence=[e.alert.pk for e in suggestion.evidence],
                projection=_projection(suggestion),
                note=f"open {version.open_threshold:.6g} → {open_t:.6g}, clear {version.clear_threshold:.6g} → "
                f"{clear_t:.6g}",
            )
    except IntegrityError:
        # A concurrent click won the partial unique constraint: that one is the application.
        existing = ThresholdOverride.objects.filter(
            asset=suggestion.asset, model_version=version, active=True
        ).first()
        if existing is None:
            raise
        return existing, False
    return override, True


def _get_in_sites(rows: QuerySet[M], pk: int, site_ids: Sequence[int] | None, missing: str) -> M:
    """Row `pk` of `rows` (whose asset lies on one of these sites; None: any), or NoiseNotFound(missing)."""
    if site_ids is not None:
        rows = rows.filter(asset__site_id__in=list(site_ids))
    row = rows.filter(pk=pk).first()
    if row is None:
        raise NoiseNotFound(missing)
    return row


def undo_threshold(override_id: int, user: Any, site_ids: Sequence[int] | None) -> ThresholdOverride:
    """Deactivate an override (the version's thresholds apply again) and record it; undoing an override
    that is already inactive changes nothing. NoiseNotFound outside the user's sites."""
    override = _get_in_sites(
        ThresholdOverride.objects.select_related("asset", "model_version"),
        override_id,
        site_ids,
        "No such threshold override.",
    )
    now = timezone.now()
    with transaction.atomic():
        changed = ThresholdOverride.objects.filter(pk=override.pk, active=True).update(
            active=False, deactivated_at=now, deactivated_by=user
        )
        if changed:
            NoiseAction.objects.create(
                kind=NoiseActionKind.UNDO_THRESHOLD,
                asset=override.asset,
                model_version=override.model_version,
                override=override,
                user=user,
                at=now,
                note=f"open {override.open_threshold:.6g} → {override.model_version.open_threshold:.6g}",
            )
    override.refresh_from_db()
    return override


def mark_calibration(suggestion: Suggestion, user: Any) -> int:
    """Mark the dominant sensor(s) for calibration and hold the asset's active alerts they drive as sensor
    issues. Returns how many sensors changed (0: already marked, nothing recorded)."""

    if not suggestion.calibration.sensors:
        raise NoiseError(f"{suggestion.asset} has no {suggestion.role_label} sensor to calibrate")
    with transaction.atomic():
        changed = Sensor.objects.filter(
            pk__in=[s.pk for s in suggestion.calibration.sensors], needs_calibration=False
        ).update(needs_calibration=True)
        if not changed:
            return 0
        NoiseAction.objects.create(
            kind=NoiseActionKind.MARK_CALIBRATION,
            asset=suggestion.asset,
            model_version=suggestion.version,
            dominant_role=suggestion.key.role,
            user=user,
            evidence=[e.alert.pk for e in suggestion.evidence],
            projection=_projection(suggestion),
            note=", ".join(s.key for s in suggestion.calibration.sensors)[:300],
        )
        held = hold_for_calibration(suggestion.asset, suggestion.key.role)
        broadcast_alerts(held)
    return changed


def hold_for_calibration(asset: Asset, role: str) -> list[int]:
    """Recategorise the asset's active machine-fault alerts driven by ``role`` as sensor issues, with an
    event each; returns their ids."""
    alerts = list(
        Alert.objects.select_for_update().filter(
            asset=asset, dominant_role=role, state__in=ACTIVE_STATES, category=AlertCategory.MACHINE_FAULT
        )
    )
    for alert in alerts:
        alert.recategorize(AlertCategory.SENSOR_FAULT, f"the {role} sensor is marked for calibration")
    return [a.pk for a in alerts]


def clear_calibration(sensor_id: int, user: Any, site_ids: Sequence[int] | None) -> Sensor:
    """The sensor was calibrated: clear its flag and record it (nothing happens if it was not marked)."""
    sensor = _get_in_sites(
        Sensor.objects.select_related("asset", "role"), sensor_id, site_ids, "No such sensor."
    )
    with transaction.atomic():
        if Sensor.objects.filter(pk=sensor.pk, needs_calibration=True).update(needs_calibration=False):
            NoiseAction.objects.create(
                kind=NoiseActionKind.CALIBRATED,
                asset=sensor.asset,
                dominant_role=sensor.role.key,
                user=user,
                note=sensor.key[:300],
            )
    sensor.refresh_from_db()
    return sensor


def under_calibration_roles(alerts: Sequence[Alert]) -> set[tuple[int, str]]:
    """(asset id, role) pairs among these alerts' dominant roles whose sensor is marked for calibration:
    one query for a whole board."""
    pairs = {(a.asset_id, a.dominant_role) for a in alerts if a.dominant_role}
    if not pairs:
        return set()
    rows = Sensor.objects.filter(
        asset_id__in={asset_id for asset_id, _ in pairs},
        role__key__in={role for _, role in pairs},
        needs_calibration=True,
    ).values_list("asset_id", "role__key")
    return set(rows) & pairs
