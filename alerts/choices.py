"""Choices of the alerts domain; each carries a label and a colour used by badges, filters and charts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db import models

from plant.choices import colours


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    SNOOZED = "snoozed", "Snoozed"
    SUPPRESSED = "suppressed", "Suppressed"  # inside maintenance, or held behind a faulty sensor
    RESOLVED = "resolved", "Resolved"
    AUTO_CLOSED = "auto_closed", "Auto-closed"

    colour = colours(
        {
            "open": "#dc2626",
            "acknowledged": "#d97706",
            "snoozed": "#6b7280",
            "suppressed": "#2563eb",
            "resolved": "#16a34a",
            "auto_closed": "#9ca3af",
        }
    )

    @property
    def is_active(self) -> bool:
        return self.value in ACTIVE_STATES


class AlertEventKind(models.TextChoices):
    """What an AlertEvent records, so that no reader has to guess it from the words of its reason: a change
    of state (an opening, a move, or a note that leaves the state: a late verdict, an episode over); a change
    of category (``Alert.recategorize``, the state unchanged); or an opening held because the readings of a
    faulty sensor explain it (alerts.services.lifecycle, resumed when the sensor reads clean again)."""

    STATE = "state", "State change"
    CATEGORY = "category", "Category change"
    HELD = "held", "Held: a faulty sensor explains it"


# The states in which an alert still "holds" its (asset, kind): the partial unique constraints use these.
ACTIVE_STATES = ("open", "acknowledged", "snoozed", "suppressed")
CLOSED_STATES = ("resolved", "auto_closed")


class EpisodeState(models.TextChoices):
    """Where the episode (one condition on one asset) of an alert stands after verdicts, for the rule
    engine (detection.rules: ``ActiveAlert.judged``). A judged or in-work alert is closed for the operator
    (resolved) but still absorbs the ongoing condition's windows; in work shows in the board's lane."""

    LIVE = "live", "No verdict yet"
    JUDGED = "judged", "Judged; the condition persists"
    IN_WORK = "in_work", "In work"
    OVER = "over", "Over"

    colour = colours({"live": "#dc2626", "judged": "#6b7280", "in_work": "#d97706", "over": "#9ca3af"})


# The episode states in which a closed alert still holds its condition (the engine's active alert).
ONGOING_EPISODES = ("judged", "in_work")


class AlertCategory(models.TextChoices):
    """Where the technician should look (the data-quality gate, alerts.services.lifecycle.categorize): the
    machine; the sensor (its values are flagged out of range, spike or stuck); or the data link (readings of
    a driving sensor went missing: a gateway, bridge, network or PLC connection, not the sensor)."""

    MACHINE_FAULT = "machine_fault", "Machine fault"
    SENSOR_FAULT = "sensor_fault", "Check the sensor"
    DATA_LINK = "data_link", "Check the data link"

    colour = colours({"machine_fault": "#dc2626", "sensor_fault": "#7c3aed", "data_link": "#2563eb"})


def category_counts(categories: Iterable[str]) -> list[tuple[AlertCategory, int]]:
    """(category, count) of each category present, in the choices' order: a machine fault, a sensor to check
    and a data link to check are different jobs, counted apart on the pages (noise, alarm load)."""
    counts = Counter(categories)
    return [(category, counts[category]) for category in AlertCategory if counts[category]]


class AlertKind(models.TextChoices):
    """What raised an alert: a model of one of the registry's kinds, or the sensor-fault rules
    (alerts.services.sensor_faults: sustained spikes, stuck or drifting readings of one sensor)."""

    ANOMALY = "anomaly", "Anomaly detector"
    FAILURE_CLASSIFIER = "failure_classifier", "Failure classifier"
    RUL = "rul", "Remaining useful life"
    SENSOR_FAULT = "sensor_fault", "Sensor fault"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"

    colour = colours({"low": "#6b7280", "medium": "#d97706", "high": "#dc2626", "critical": "#7f1d1d"})

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    @classmethod
    def at_rank(cls, rank: object) -> Severity | None:
        """The severity of ``rank`` (0 low .. 3 critical: a work order's priority), None for anything else."""
        levels = list(cls)
        if isinstance(rank, int) and not isinstance(rank, bool) and 0 <= rank < len(levels):
            return levels[rank]
        return None


class ExplanationStatus(models.TextChoices):
    """Where an alert's explanation of its opening window stands. "awaiting": an alert decided at the edge
    whose window's readings have not reached the server yet (the agent sends its events first); it is
    explained when they arrive (lifecycle.complete_explanation, _check_edge_openings), never failed for it.
    "lost": they never will (its agent has sent everything it held up to the decision, or they are older
    than the server accepts: ``alerts.services.edge_readings``); the alert says why (``explanation_note``)."""

    READY = "ready", "Ready"
    PENDING = "pending", "Explanation pending"
    AWAITING = "awaiting", "Awaiting the edge agent's readings"
    LOST = "lost", "The edge agent's readings never reached the server"
    FAILED = "failed", "Explanation failed"

    colour = colours(
        {
            "ready": "#16a34a",
            "pending": "#d97706",
            "awaiting": "#6b7280",
            "lost": "#6b7280",
            "failed": "#dc2626",
        }
    )


class FeedbackKind(models.TextChoices):
    """What a technician did with an alert (or without one, for a missed failure)."""

    ACKNOWLEDGE = "acknowledge", "Acknowledged"
    SNOOZE = "snooze", "Snoozed"
    VERDICT = "verdict", "Verdict"
    MISSED_FAILURE = "missed_failure", "Missed failure reported"


class Verdict(models.TextChoices):
    CONFIRMED_FAULT = "confirmed_fault", "Confirmed fault"
    FALSE_ALARM = "false_alarm", "False alarm"
    NOT_ACTIONABLE = "not_actionable", "Not actionable"
    MISSED_FAILURE = "missed_failure", "Missed failure"

    colour = colours(
        {
            "confirmed_fault": "#dc2626",
            "false_alarm": "#16a34a",
            "not_actionable": "#6b7280",
            "missed_failure": "#7f1d1d",
        }
    )


class MaintenanceAction(models.TextChoices):
    """What was done about a confirmed fault."""

    REPAIRED = "repaired", "Repaired"
    SCHEDULED = "scheduled", "Repair scheduled"
    INSPECTED_NO_ACTION = "inspected_no_action", "Inspected, no action"
    # What was done about a confirmed sensor fault ("check sensor X").
    SENSOR_REPLACED = "sensor_replaced", "Sensor replaced"
    RECALIBRATED = "recalibrated", "Recalibrated"

    colour = colours(
        {
            "repaired": "#16a34a",
            "scheduled": "#d97706",
            "inspected_no_action": "#6b7280",
            "sensor_replaced": "#16a34a",
            "recalibrated": "#16a34a",
        }
    )


# The confirmed-fault actions that say the SENSOR was at fault, not the machine (alerts.services.feedback).
SENSOR_ACTIONS = (MaintenanceAction.SENSOR_REPLACED, MaintenanceAction.RECALIBRATED)


class FalseAlarmReason(models.TextChoices):
    """Why an alert was a false alarm. An alert offers the reasons that fit it (``false_alarm_reasons``)."""

    SENSOR_GLITCH = "sensor_glitch", "Sensor glitch"
    NORMAL_OPERATING_CHANGE = "normal_operating_change", "Normal operating change"
    MAINTENANCE_ACTIVITY = "maintenance_activity", "Maintenance activity"
    UNKNOWN = "unknown", "Unknown"
    # Last, so the metrics CSV's reason columns keep their places.
    SENSOR_READS_TRUE = "sensor_reads_true", "Sensor checked, reads true"
    LINK_WORKING = "link_working", "Link checked, working"

    @property
    def colour(self) -> str:
        return "#16a34a"


def false_alarm_reasons(kind: str, category: str) -> tuple[FalseAlarmReason, ...]:
    """The false-alarm reasons an alert of this kind and category offers (its card's buttons, in order);
    alerts.services.feedback accepts no other. The first says what the card's false alarm means:

    * "Check the sensor" (the sensor rules' own alert, or a model's alert the quality gate filed there): the
      sensor was fine and its readings true (no excluded label), "Sensor checked, reads true"; "Sensor
      glitch" would say the alert was right;
    * "Check the data link" (readings of a driving sensor went missing): the link was working, "Link
      checked, working"; "Sensor glitch" speaks of readings that arrived wrong, and these did not arrive
      (a data-link verdict relabels nothing: there are no readings of the gap);
    * a machine fault: "Sensor glitch", the reading glitched, not the machine (the window labelled normal).
    """
    if kind == AlertKind.SENSOR_FAULT or category == AlertCategory.SENSOR_FAULT:
        first = FalseAlarmReason.SENSOR_READS_TRUE
    elif category == AlertCategory.DATA_LINK:
        first = FalseAlarmReason.LINK_WORKING
    else:
        first = FalseAlarmReason.SENSOR_GLITCH
    return (
        first,
        FalseAlarmReason.NORMAL_OPERATING_CHANGE,
        FalseAlarmReason.MAINTENANCE_ACTIVITY,
        FalseAlarmReason.UNKNOWN,
    )


# A confirmed data-link alert in the words of its buttons (templates/alerts/_feedback.html): the link was
# down and what was done about the link, not a machine repaired.
DATA_LINK_VERDICT = "Data link was down"
DATA_LINK_ACTIONS = {
    MaintenanceAction.REPAIRED: "Link restored",
    MaintenanceAction.SCHEDULED: "Fix scheduled",
    MaintenanceAction.INSPECTED_NO_ACTION: "Checked, no action",
}
# What a false alarm records on a card of each category (alerts.services.feedback): said after a reason the
# card no longer offers, so that an older verdict's words do not contradict what it counts as.
FALSE_ALARM_MEANS = {
    AlertCategory.MACHINE_FAULT: "the machine was fine",
    AlertCategory.SENSOR_FAULT: "the sensor read true",
    AlertCategory.DATA_LINK: "the link was working",
}


def verdict_summary(
    verdict: str,
    action: str | None,
    reason: str | None,
    category: str | None,
    kind: str = "",
    *,
    in_force: bool = True,
) -> str:
    """One line for people: "Confirmed fault — Repaired", "False alarm — Sensor glitch"; a confirmed
    data-link alert (``category``) speaks of the link: "Data link was down — Link restored".

    A false alarm given with a reason its alert's card no longer offers (``false_alarm_reasons``: "Sensor
    glitch" on a "Check the sensor" card before it offered "Sensor checked, reads true", or on a data-link
    card) keeps the technician's words and says what it is recorded as: "False alarm — Sensor glitch (an
    older button; recorded as a false alarm: the sensor read true)". Without a ``category`` (unknown) the
    line is the words alone; without a ``kind`` the category decides, as it does for the sensor rules' own
    alerts, which are always filed "Check the sensor" (the health page's drill-down reads no kind). A verdict
    a later one superseded (``in_force`` False) reads as given: it records nothing now, and the correction
    may have moved the alert to another card since (a machine repair on a "Check the sensor" alert)."""
    detail = MaintenanceAction(action).label if action else FalseAlarmReason(reason).label if reason else ""
    label = Verdict(verdict).label
    if verdict == Verdict.CONFIRMED_FAULT and category == AlertCategory.DATA_LINK:
        label, detail = DATA_LINK_VERDICT, DATA_LINK_ACTIONS.get(action or "", detail)
    if (
        in_force
        and verdict == Verdict.FALSE_ALARM
        and reason
        and category in FALSE_ALARM_MEANS
        and reason not in false_alarm_reasons(kind, category)
    ):
        detail = f"{detail} (an older button; recorded as a false alarm: {FALSE_ALARM_MEANS[category]})"
    return f"{label} — {detail}" if detail else label


# Snooze lengths offered on the board ("snooze:1h").
SNOOZE_HOURS = {"1h": 1, "8h": 8}


class NoiseActionKind(models.TextChoices):
    """What an engineer did about a noisy (asset, model version, dominant sensor)."""

    RAISE_THRESHOLD = "raise_threshold", "Raised the asset's threshold"
    UNDO_THRESHOLD = "undo_threshold", "Restored the model's threshold"
    MARK_CALIBRATION = "mark_calibration", "Marked the sensor for calibration"
    CALIBRATED = "calibrated", "Sensor calibrated (flag cleared)"

    colour = colours(
        {
            "raise_threshold": "#d97706",
            "undo_threshold": "#6b7280",
            "mark_calibration": "#7c3aed",
            "calibrated": "#16a34a",
        }
    )


class GapReason(models.TextChoices):
    BACKLOG_LIMIT = "backlog_limit", "Backlog older than the scoring limit"
    MISSING_ROLE = "missing_role", "No sensor for a role the model reads"
