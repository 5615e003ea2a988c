"""Technicians' feedback: acknowledge, snooze, verdicts (and their corrections) and missed failures.

Every action is one transaction that writes an AlertEvent (through ``Alert.transition`` when the state
changes), a Feedback row and, for verdicts, the alert window's ``plant.Label`` — the ground truth the next
training run reads:

* confirmed fault  → Label fault, ``fault_type`` "<kind>:<dominant role>" (or "sensor:<role>" when the
  alert said "check the sensor"), the action taken in the note;
* false alarm      → Label normal with the reason;
* not actionable   → Label fault with the note "not actionable".

A sensor-fault alert (kind sensor_fault, "check sensor X") takes the sensor's verdicts and writes no label
about the machine (a faulty sensor says nothing about it, faulty or normal):

* confirmed ("sensor replaced", "recalibrated") or not actionable → Label ``excluded`` over the alert's
  window, ``fault_type`` "sensor:<role>": the readings were the sensor's fault, so training and retraining
  leave those windows out (models_registry.training_data.label_windows: GUARD);
* false alarm → no Label: the sensor read true, its windows stay ordinary training data (a correction to
  false alarm removes the ``excluded`` label, a correction from it writes one). Its card says so ("Sensor
  checked, reads true" in place of "Sensor glitch", which is refused there: ``_check_reason``).

A model's alert the quality gate filed "Check the sensor" (category sensor_fault) offers both: "Sensor
replaced" / "Recalibrated" take the sensor's rule above (Label ``excluded``; the alert stays "Check the
sensor", out of the model's precision and recall), while a machine repair confirms that the gate's guess was
wrong and moves the alert to "Machine fault" (``_file_by_verdict``: a category change on its timeline) before
its window is labelled that fault, so precision and recall count it. The same rule files a model's alert
confirmed with a sensor action "Check the sensor", and a correction moves it back and forth.

A data-link alert (category data_link, "Check the data link": readings of a driving sensor went missing)
writes no Label whatever the verdict: a confirmed link fault is neither the machine's fault nor its normal
behaviour, and there are no readings of the gap to relabel. The verdict still counts in the metrics. Its
false alarm says the link was working ("Link checked, working" in place of "Sensor glitch", refused there:
no reading of the gap arrived to glitch).

A verdict resolves an active alert. On a closed alert it corrects the current verdict: allowed to the
technician who gave it and to engineers (PermissionError otherwise), and to anyone on an alert in work
(recording the repair); the new Feedback ``supersedes`` the old one and the same Label row is rewritten,
so the label stays one per alert while the history stays in Feedback and AlertEvent. After commit the
board of every member of the site is told (``broadcast_alerts``).

Verdicts apply to the episode (``detection.rules``, "Verdicts"): a verdict on an episode still going on
judges it at its current peak and severity — "repair scheduled" puts it **in work** (the board's in-work
lane, latched until "repaired" is recorded and the condition clears), any other verdict leaves it
**judged**; either way the ongoing condition raises no new alert unless it clears and returns or escalates.

``undo_verdict`` takes a verdict back within ``VIGIL_VERDICT_UNDO_S`` seconds (the board's confirmation):
the alert returns to the state (and the card: "Check the sensor" or "Machine fault") the verdict moved it
from, the Label is removed (or restored to the verdict it corrected), the Feedback row is deleted so no
metric ever counts it, and an AlertEvent with ``undoes`` records it. Undoing it again is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.broadcast import broadcast_alerts
from alerts.choices import (
    ACTIVE_STATES,
    ONGOING_EPISODES,
    SENSOR_ACTIONS,
    SNOOZE_HOURS,
    AlertCategory,
    AlertEventKind,
    AlertKind,
    EpisodeState,
    FalseAlarmReason,
    FeedbackKind,
    MaintenanceAction,
    Verdict,
)
from alerts.metrics.facts import verdicts_in_force
from alerts.models import Alert, AlertEvent, AlertStateError, Feedback
from plant.access import is_engineer
from plant.choices import LabelKind, LabelSource
from plant.models import Asset, Label
from plant.params import ParamError, check_text

MAX_NOTE = 2000
MAX_MISSED_SPAN = timedelta(days=90)


class FeedbackError(ValueError):
    """The action is unknown or not allowed in the alert's state; the message says why (HTTP 400)."""


class FeedbackForbidden(PermissionError):
    """The user may see the alert but not change its verdict (HTTP 403)."""


@dataclass(frozen=True)
class ParsedAction:
    """A board button's value ("confirm:repaired", "snooze:8h", ...) taken apart."""

    kind: FeedbackKind
    verdict: Verdict | None = None
    action: str = ""
    reason: str = ""
    snooze_hours: int | None = None


def parse_action(value: str) -> ParsedAction:
    """Read a button value; raises FeedbackError naming the valid values for anything else."""
    value = (value or "").strip()
    head, _, tail = value.partition(":")
    if value == "acknowledge":
        return ParsedAction(FeedbackKind.ACKNOWLEDGE)
    if value == "not_actionable":
        return ParsedAction(FeedbackKind.VERDICT, Verdict.NOT_ACTIONABLE)
    if head == "confirm" and tail in MaintenanceAction.values:
        return ParsedAction(FeedbackKind.VERDICT, Verdict.CONFIRMED_FAULT, action=tail)
    if head == "false_alarm" and tail in FalseAlarmReason.values:
        return ParsedAction(FeedbackKind.VERDICT, Verdict.FALSE_ALARM, reason=tail)
    if head == "snooze" and tail in SNOOZE_HOURS:
        return ParsedAction(FeedbackKind.SNOOZE, snooze_hours=SNOOZE_HOURS[tail])
    raise FeedbackError(
        f"unknown action {value[:40]!r}; use one of: {', '.join(valid_actions())}"
        if value
        else "no action given; use one of: " + ", ".join(valid_actions())
    )


def valid_actions() -> list[str]:
    return [
        "acknowledge",
        *(f"confirm:{a}" for a in MaintenanceAction.values),
        *(f"false_alarm:{r}" for r in FalseAlarmReason.values),
        "not_actionable",
        *(f"snooze:{h}" for h in SNOOZE_HOURS),
    ]


def current_verdict(alert: Alert) -> Feedback | None:
    """The verdict in force: the latest verdict Feedback that no later one supersedes."""
    return verdicts_in_force().filter(alert=alert).select_related("alert", "user", "label").first()


def can_give_verdict(alert: Alert, user: Any, current: Feedback | None) -> bool:
    """Active alerts: anyone who sees them. Closed: the author of the verdict in force or an engineer
    (recording the repair of an alert in work is open to anyone who sees it: see ``_verdict``)."""
    if alert.state in ACTIVE_STATES or current is None:
        return True
    return current.user_id == user.pk or is_engineer(user)


def _checked_note(note: str | None) -> str:
    """The note cut to MAX_NOTE; FeedbackError for a control character (PostgreSQL stores no NUL)."""
    try:
        return check_text("note", (note or "").strip()[:MAX_NOTE], max_length=MAX_NOTE, multiline=True)
    except ParamError as exc:
        raise FeedbackError(str(exc)) from None


def record_feedback(
    alert: Alert,
    user: Any,
    action: str,
    note: str = "",
    *,
    now: datetime | None = None,
    authorised: bool = False,
) -> Feedback:
    """Apply one board action to the alert for the user (who must already be allowed to see it).

    Raises FeedbackError for an unknown action or one the alert's state does not allow, and
    FeedbackForbidden when someone else's verdict would be corrected by a non-engineer. ``authorised``:
    the caller vouches for the verdict without a user (``user`` None: a work order's outcome from the
    site's CMMS, handoff.work_orders), so it may correct anyone's verdict.
    """
    parsed = parse_action(action)
    note = _checked_note(note)
    now = now or timezone.now()
    with transaction.atomic():
        # Locked and re-read: two technicians tapping at once get one verdict and one clear error.
        alert = Alert.objects.select_for_update().select_related("asset").get(pk=alert.pk)
        if alert.is_shadow:
            raise FeedbackError("shadow alerts take no feedback")
        try:
            if parsed.kind == FeedbackKind.ACKNOWLEDGE:
                feedback = _acknowledge(alert, user, note, now)
            elif parsed.kind == FeedbackKind.SNOOZE:
                feedback = _snooze(alert, user, note, now, parsed.snooze_hours or 1)
            else:
                feedback = _verdict(alert, user, parsed, note, now, authorised=authorised)
        except AlertStateError as exc:
            raise FeedbackError(str(exc)) from exc
        broadcast_alerts([alert.pk])
    return feedback


def _acknowledge(alert: Alert, user: Any, note: str, now: datetime) -> Feedback:
    event = alert.transition("acknowledged", actor=user, reason=note[:300] or "acknowledged", at=now)
    return _record(alert, user, FeedbackKind.ACKNOWLEDGE, note, event, now)


def _record(
    alert: Alert, user: Any, kind: str, note: str, event: AlertEvent, now: datetime, **fields: Any
) -> Feedback:
    """The Feedback row of one board action on the alert (kind-specific columns in `fields`)."""
    return Feedback.objects.create(
        alert=alert, asset=alert.asset, user=user, kind=kind, note=note, event=event, created_at=now, **fields
    )


def _snooze(alert: Alert, user: Any, note: str, now: datetime, hours: int) -> Feedback:
    if alert.state not in ("open", "acknowledged"):
        raise FeedbackError(f"alert #{alert.pk} is {alert.get_state_display().lower()}; it cannot be snoozed")
    until = now + timedelta(hours=hours)
    local = timezone.localtime(until, alert.asset.site.zone)  # the history is read on the site's clock
    event = alert.transition(
        "snoozed",
        actor=user,
        reason=f"snoozed until {local:%Y-%m-%d %H:%M}: {note or f'for {hours} h from the board'}",
        at=now,
        snoozed_until=until,
        snooze_reason=(note or f"snoozed for {hours} h")[:300],
    )
    return _record(alert, user, FeedbackKind.SNOOZE, note, event, now, snoozed_until=until)


def _verdict(
    alert: Alert, user: Any, parsed: ParsedAction, note: str, now: datetime, *, authorised: bool = False
) -> Feedback:
    current = current_verdict(alert)
    repairing = (
        alert.episode == EpisodeState.IN_WORK
        and parsed.verdict == Verdict.CONFIRMED_FAULT
        and parsed.action == MaintenanceAction.REPAIRED
    )
    if not (repairing or authorised) and not can_give_verdict(alert, user, current):
        raise FeedbackForbidden(
            f"{current.user or 'someone else'} already gave the verdict “{current.summary}” on alert "
            f"#{alert.pk}; only they or an engineer can correct it"
        )
    _check_reason(alert, parsed)
    draft = Feedback(alert=alert, verdict=parsed.verdict, action=parsed.action, reason=parsed.reason)
    if alert.state in ACTIVE_STATES:
        event = alert.transition("resolved", actor=user, reason=_event_reason(draft.summary, note), at=now)
    else:
        # Closed already: a correction (or a late verdict on an auto-closed alert) changes no state.
        what = f"verdict corrected: {current.summary} → {draft.summary}" if current else draft.summary
        event = AlertEvent.objects.create(
            alert=alert,
            at=now,
            actor=user,
            from_state=alert.state,
            to_state=alert.state,
            reason=_event_reason(what, note),
        )
    _file_by_verdict(alert, parsed, user, now)
    label = _relabel(alert, user, parsed, note, current.label if current else None)
    _judge(alert, parsed, was_active=event.from_state in ACTIVE_STATES)
    return _record(
        alert,
        user,
        FeedbackKind.VERDICT,
        note,
        event,
        now,
        verdict=parsed.verdict,
        action=parsed.action,
        reason=parsed.reason,
        label=label,
        supersedes=current,
    )


def _check_reason(alert: Alert, parsed: ParsedAction) -> None:
    """FeedbackError for a false-alarm reason the alert does not offer (``Alert.false_alarm_reasons``: a
    page from before its buttons changed, or from before the alert moved category), naming the ones it does.
    "Sensor glitch" on a "Check the sensor" or "Check the data link" alert is refused rather than recorded:
    on a sensor alert the false alarm would keep the readings as true while the words say the sensor was at
    fault; on a data-link alert the readings did not arrive, so none glitched; which was meant is unknown."""
    offered = alert.false_alarm_reasons
    if parsed.verdict != Verdict.FALSE_ALARM or parsed.reason in offered:
        return
    given = FalseAlarmReason(parsed.reason).label
    fits = f"“{offered[0].label}”"
    if parsed.reason == FalseAlarmReason.SENSOR_GLITCH and alert.category == AlertCategory.DATA_LINK:
        raise FeedbackError(
            f"alert #{alert.pk} asks to check the data link: readings of the sensor went missing, and "
            f"“{given}” speaks of readings that arrived wrong. If readings were lost, whatever stopped them, "
            f"confirm it (Data link was down); if the link was working, choose {fits}"
        )
    if parsed.reason == FalseAlarmReason.SENSOR_GLITCH:
        raise FeedbackError(
            f"alert #{alert.pk} asks to check the sensor, and a false alarm there means the sensor read true: "
            f"“{given}” says the opposite. If the sensor was faulty, confirm it (Sensor replaced or "
            f"Recalibrated); if it was fine, choose {fits}"
        )
    raise FeedbackError(
        f"“{given}” is not a false-alarm reason for alert #{alert.pk} "
        f"({alert.get_category_display().lower()}); choose one of: {', '.join(r.label for r in offered)}"
    )


def episode_after(verdict: str, action: str) -> EpisodeState:
    """The episode's state after a verdict: in work for a scheduled repair, judged for any other."""
    if verdict == Verdict.CONFIRMED_FAULT and action == MaintenanceAction.SCHEDULED:
        return EpisodeState.IN_WORK
    return EpisodeState.JUDGED


def _judge(alert: Alert, parsed: ParsedAction, *, was_active: bool) -> None:
    """Apply the verdict to the episode (``detection.rules.judge``: judged at the current peak and
    severity), when the episode is still going on: the alert was active or is a judged episode."""
    if not was_active and alert.episode not in ONGOING_EPISODES:
        return  # a correction after the condition cleared (or escalated): the episode is over
    alert.episode = episode_after(parsed.verdict or "", parsed.action)
    alert.judged_peak_score, alert.judged_severity = alert.peak_score, alert.severity
    alert.save(update_fields=["episode", "judged_peak_score", "judged_severity", "updated_at"])


def undo_verdict(alert: Alert, user: Any, feedback_id: int, *, now: datetime | None = None) -> str:
    """Take back the verdict Feedback ``feedback_id`` on ``alert`` given by ``user`` (or an engineer) at
    most ``VIGIL_VERDICT_UNDO_S`` seconds ago; returns what happened, for the board's message.

    Idempotent: undoing a verdict already undone returns the same message. Raises FeedbackError when the
    verdict is too old, not a verdict of this alert, or is not the one in force (a later one superseded it).
    """
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("asset").get(pk=alert.pk)
        # Timed once the alert is locked: an automatic work order's task, which times the window under the
        # same lock (handoff.work_orders.send_work_order), never sends an order whose verdict is undone after.
        now = now or timezone.now()
        if alert.events.filter(undoes=feedback_id).exists():
            return f"The verdict on alert #{alert.pk} was undone."
        feedback = (
            Feedback.objects.filter(pk=feedback_id, alert=alert, kind=FeedbackKind.VERDICT)
            .select_related("event", "supersedes", "label")
            .first()
        )
        if feedback is None:
            raise FeedbackError(f"alert #{alert.pk} has no verdict #{feedback_id} to undo")
        if feedback.user_id != user.pk and not is_engineer(user):
            raise FeedbackForbidden("only the technician who gave a verdict, or an engineer, can undo it")
        limit = settings.VIGIL_VERDICT_UNDO_S
        if (now - feedback.created_at).total_seconds() > limit:
            raise FeedbackError(
                f"the verdict “{feedback.summary}” was given more than {limit:g} s ago and can no longer be "
                "undone; correct it with another verdict instead"
            )
        if hasattr(feedback, "superseded_by"):
            raise FeedbackError(
                f"the verdict “{feedback.summary}” was already corrected; it cannot be undone"
            )
        event, previous = feedback.event, feedback.supersedes
        restore = event.from_state if event and event.from_state != event.to_state else ""
        fields: dict[str, Any] = {"updated_at": now}
        if restore and alert.state == event.to_state:
            fields.update(state=restore, closed_at=None)
        if previous is None:
            fields.update(episode=EpisodeState.LIVE, judged_peak_score=None, judged_severity="")
        elif alert.episode in ONGOING_EPISODES:
            fields["episode"] = episode_after(previous.verdict or "", previous.action)
        try:
            with transaction.atomic():
                Alert.objects.filter(pk=alert.pk).update(**fields)
        except IntegrityError:  # an escalation opened a new alert of the key meanwhile
            raise FeedbackError(
                f"alert #{alert.pk} cannot be reopened: a newer alert of {alert.asset} is open"
            ) from None
        label = feedback.label
        summary = feedback.summary
        # Did the verdict move the alert between "Check the sensor" and "Machine fault" (_file_by_verdict)?
        moved = (
            event is not None and alert.events.filter(kind=AlertEventKind.CATEGORY, pk__gt=event.pk).exists()
        )
        feedback.delete()
        # Back where the undone verdict found it, also when a verdict it corrected is in force again: a false
        # alarm, which files nothing (_file_by_verdict), stayed on the card the correction moved it to.
        if moved:
            back = (
                AlertCategory.SENSOR_FAULT
                if alert.category == AlertCategory.MACHINE_FAULT
                else AlertCategory.MACHINE_FAULT
            )
            alert.recategorize(back, f"verdict undone: {summary}", at=now)
        if previous is not None:
            parsed = ParsedAction(FeedbackKind.VERDICT, previous.verdict, previous.action, previous.reason)
            _file_by_verdict(alert, parsed, user, now)
            restored = _relabel(alert, previous.user, parsed, previous.note, label)
            if restored is not None and previous.label_id != restored.pk:
                Feedback.objects.filter(pk=previous.pk).update(label=restored)
        elif label is not None:
            label.delete()
        AlertEvent.objects.create(
            alert=alert,
            at=now,
            actor=user,
            from_state=alert.state,
            to_state=fields.get("state", alert.state),
            reason=f"verdict undone: {summary}"[:300],
            undoes=feedback_id,
        )
        broadcast_alerts([alert.pk])
    return f"The verdict on alert #{alert.pk} was undone."


def _event_reason(what: str, note: str) -> str:
    return f"{what}: {note}"[:300] if note else what[:300]


def fault_type_of(alert: Alert) -> str:
    """What the label calls the fault: the alert's kind and the sensor role that drove it."""
    role = alert.dominant_role or "unknown"
    prefix = "sensor" if alert.category == AlertCategory.SENSOR_FAULT else alert.kind
    return f"{prefix}:{role}"[:60]


def _file_by_verdict(alert: Alert, parsed: ParsedAction, user: Any, now: datetime) -> None:
    """A confirmed fault on a model's alert says what was at fault (module docstring): a sensor action
    files it "Check the sensor", a machine action on a "Check the sensor" alert files it "Machine fault".
    Data-link alerts and the sensor-fault rules' own alerts keep their category, and so does an alert whose
    verdict comes without a person (``user`` None: a work order's outcome from the CMMS, whose "done" says
    the job filed under the alert's category was done, not what was at fault)."""
    if parsed.verdict != Verdict.CONFIRMED_FAULT or alert.kind == AlertKind.SENSOR_FAULT or user is None:
        return
    if alert.category == AlertCategory.DATA_LINK:
        return
    sensor = parsed.action in SENSOR_ACTIONS
    if sensor == (alert.category == AlertCategory.SENSOR_FAULT):
        return
    category = AlertCategory.SENSOR_FAULT if sensor else AlertCategory.MACHINE_FAULT
    what = MaintenanceAction(parsed.action).label.lower()
    alert.recategorize(category, f"{user or 'the system'} confirmed it: {what}", at=now)
    alert.category = category


def _relabel(alert: Alert, user: Any, parsed: ParsedAction, note: str, label: Label | None) -> Label | None:
    """Write the alert window's label for this verdict, reusing the label of the verdict it corrects; None
    (and that label removed) for a false alarm on a sensor-fault alert, whose readings were true, and for
    any verdict on a data-link alert, whose readings are missing."""
    # The sensor's rule for the sensor rules' alerts, and for a model's alert still filed "Check the sensor"
    # after its verdict (_file_by_verdict) unless it is a false alarm (the readings were true and normal).
    sensor = alert.kind == AlertKind.SENSOR_FAULT or (
        alert.category == AlertCategory.SENSOR_FAULT and parsed.verdict != Verdict.FALSE_ALARM
    )
    if alert.category == AlertCategory.DATA_LINK or (sensor and parsed.verdict == Verdict.FALSE_ALARM):
        if label is not None:
            label.delete()
        return None
    if sensor:
        kind, fault_type, reason = LabelKind.EXCLUDED, f"sensor:{alert.dominant_role or 'unknown'}"[:60], ""
        what = (
            "not actionable"
            if parsed.verdict == Verdict.NOT_ACTIONABLE
            else MaintenanceAction(parsed.action).label.lower()
        )
        text = (
            f"faulty sensor, left out of training ({what}): {note}"
            if note
            else f"faulty sensor, left out of training ({what})"
        )
    elif parsed.verdict == Verdict.FALSE_ALARM:
        kind, fault_type, reason, text = LabelKind.NORMAL, "", parsed.reason, note
    elif parsed.verdict == Verdict.NOT_ACTIONABLE:
        kind, fault_type, reason = LabelKind.FAULT, fault_type_of(alert), ""
        text = f"not actionable: {note}" if note else "not actionable"
    else:
        kind, fault_type, reason = LabelKind.FAULT, fault_type_of(alert), ""
        action = MaintenanceAction(parsed.action).label.lower()
        text = f"{action}: {note}" if note else action
    fields = {
        "asset": alert.asset,
        "start": alert.first_window_start,
        "end": max(alert.last_seen_at, alert.first_window_start),
        "kind": kind,
        "fault_type": fault_type,
        "reason": reason,
        "source": LabelSource.FEEDBACK,
        "verdict": parsed.verdict,
        "author": user,
        "note": f"alert #{alert.pk}: {text}",
    }
    if label is None:
        return Label.objects.create(**fields)
    for name, value in fields.items():
        setattr(label, name, value)
    label.save()
    return label


def record_missed_failure(
    asset: Asset, user: Any, *, start: datetime, end: datetime, fault_type: str, note: str = ""
) -> Feedback:
    """A failure no alert caught: a fault Label on the range and a ``missed_failure`` Feedback with no
    alert, which recall counts. Raises FeedbackError for an empty, inverted, future or too long range."""
    fault_type = (fault_type or "").strip()[:60]
    note = (note or "").strip()[:MAX_NOTE]
    if end <= start:
        raise FeedbackError("the end of the failure must be after its start")
    if end - start > MAX_MISSED_SPAN:
        raise FeedbackError(f"a failure can span at most {MAX_MISSED_SPAN.days} days")
    if start > timezone.now():
        raise FeedbackError("the failure cannot start in the future")
    if not fault_type:
        raise FeedbackError("say what failed (fault type)")
    with transaction.atomic():
        label = Label.objects.create(
            asset=asset,
            start=start,
            end=end,
            kind=LabelKind.FAULT,
            fault_type=fault_type,
            source=LabelSource.FEEDBACK,
            verdict=Verdict.MISSED_FAILURE,
            author=user,
            note=f"missed failure: {note}" if note else "missed failure",
        )
        return Feedback.objects.create(
            asset=asset,
            user=user,
            kind=FeedbackKind.MISSED_FAILURE,
            verdict=Verdict.MISSED_FAILURE,
            note=note,
            label=label,
        )
