"""Work orders: created from a confirmed fault (automatically, if the site asks) or by a person, sent to
the site's CMMS through its adapter (handoff.cmms), and closed by the CMMS's outcome, which becomes the
alert's verdict through the one feedback writer (alerts.services.feedback.record_feedback):

* done (with findings) → confirmed fault, repaired — so the alert counts as acted on in the metrics
  (alerts.metrics.queries.ACTIONABLE_ACTIONS) and its label is a fault with the findings;
* no fault found → false alarm: after a confirmed fault this *corrects* the verdict (the superseded
  Feedback stays in the history, the label becomes normal), and the work order records what it corrected;
* cancelled → nothing said about the machine; the verdict stays as it was.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from alerts.choices import FalseAlarmReason, Severity, Verdict
from alerts.models import Alert
from alerts.services.feedback import FeedbackError, current_verdict, record_feedback
from alerts.writeback import alert_words
from handoff.choices import OPEN_WORK_ORDER, WorkOrderOutcome, WorkOrderStatus, WorkOrderTrigger
from handoff.cmms import CmmsError, Outcome, WorkOrderRequest, adapter_for
from handoff.models import CmmsConnection, WorkOrder
from plant.params import ParamError, check_text

MAX_FINDINGS = 2000


class WorkOrderError(ValueError):
    """The work order cannot be created or closed as asked; the message says why (HTTP 4xx)."""


class WorkOrderConflict(WorkOrderError):
    """The work order is already closed with another outcome (HTTP 409)."""


def create_work_order(alert: Alert, *, user: Any = None, trigger: str = WorkOrderTrigger.MANUAL) -> WorkOrder:
    """A work order for ``alert`` on its site's CMMS, sent after commit (``send_work_order_task``).
    WorkOrderError when the site has no enabled CMMS or the alert already has an open work order."""
    connection = CmmsConnection.objects.filter(site_id=alert.asset.site_id, enabled=True).first()
    if connection is None:
        raise WorkOrderError(f"site {alert.asset.site} has no CMMS connection: an engineer sets one up")
    if alert.is_shadow:
        raise WorkOrderError("shadow alerts get no work order")
    existing = WorkOrder.objects.filter(alert=alert, status__in=OPEN_WORK_ORDER).first()
    if existing is not None:
        raise WorkOrderError(f"alert #{alert.pk} already has work order #{existing.pk} open")
    try:
        with transaction.atomic():
            order = WorkOrder.objects.create(
                alert=alert,
                connection=connection,
                trigger=trigger,
                requested_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:  # two clicks at once: the partial unique constraint keeps one
        raise WorkOrderError(f"alert #{alert.pk} already has a work order open") from None
    # An automatic order waits out the verdict's undo window: one undone at once orders nothing (send_work_order).
    _queue_send(
        order.pk, after_s=settings.VIGIL_VERDICT_UNDO_S if trigger == WorkOrderTrigger.AUTOMATIC else 0.0
    )
    return order


# The task module imports this one: its sender is handed in by HandoffConfig.ready().
_SENDERS: list[Any] = []


def provide_sender(send: Any) -> None:
    _SENDERS[:] = [send]


def _queue_send(order_pk: int, *, after_s: float = 0.0) -> None:
    def send_work_order() -> None:  # named: robust on_commit logs it
        for send in _SENDERS:
            send(order_pk, after_s)

    transaction.on_commit(send_work_order, robust=True)


def auto_create_for(alert_id: int) -> WorkOrder | None:
    """After a confirmed-fault verdict: the automatic work order, if the site's CMMS asks for them and
    the alert has had none yet (so an outcome's own verdict never orders another one)."""
    alert = Alert.objects.select_related("asset__site").filter(pk=alert_id).first()
    if alert is None or WorkOrder.objects.filter(alert=alert).exists():
        return None
    if not CmmsConnection.objects.filter(
        site_id=alert.asset.site_id, enabled=True, auto_create=True
    ).exists():
        return None
    verdict = current_verdict(alert)
    if verdict is None or verdict.verdict != Verdict.CONFIRMED_FAULT or verdict.user_id is None:
        return None
    try:
        return create_work_order(alert, trigger=WorkOrderTrigger.AUTOMATIC)
    except WorkOrderError:
        return None


def work_order_request(order: WorkOrder) -> WorkOrderRequest:
    alert = order.alert
    asset = alert.asset
    verdict = current_verdict(alert)
    lines = [
        f"Vigil alert #{alert.pk} on {asset.name} ({asset.tag}), {alert.get_severity_display().lower()}."
    ]
    # The board's words for its top sensor, not the role's key: the work order is read by the technician.
    words = alert_words(alert)
    if words["top_sensor_text"]:
        lines.append(f"Why: {words['top_sensor_text']}.")
    elif alert.dominant_role:
        lines.append(f"Driven by: {words['category_label']}.")
    if verdict is not None:
        lines.append(f"Verdict: {verdict.summary}" + (f" — {verdict.note}" if verdict.note else "") + ".")
    link = settings.VIGIL_PUBLIC_URL + reverse("alerts:detail", args=[alert.pk])
    lines.append(f"Details: {link}")
    return WorkOrderRequest(
        uid=str(order.uid),
        number=order.pk,
        title=f"{asset.name}: {alert.get_category_display().lower()} alert #{alert.pk}"[:120],
        description="\n".join(lines),
        priority=Severity(alert.severity).rank,
        site=asset.site.slug,
        asset_tag=asset.tag,
        asset_name=asset.name,
        alert_id=alert.pk,
        alert_link=link,
        outcome_url=settings.VIGIL_PUBLIC_URL + reverse("api:work_order_outcome", args=[order.pk]),
    )


def send_work_order(order_pk: int) -> bool | None:
    """Send a pending (or failed) work order now: True once the CMMS has it, False on a failure (the
    error recorded, the status ``failed`` after VIGIL_CMMS_MAX_ATTEMPTS), None when there is nothing to do."""
    order = (
        WorkOrder.objects.select_related("alert__asset__site", "connection")
        .filter(pk=order_pk, status__in=(WorkOrderStatus.PENDING, WorkOrderStatus.FAILED))
        .first()
    )
    if order is None:
        return None
    if order.trigger == WorkOrderTrigger.AUTOMATIC:
        with transaction.atomic():
            # The verdicts' lock (record_feedback, undo_verdict): a confirmation given again while this
            # decides is either seen here or finds the order gone (and auto_create_for orders anew), never
            # both missed, which left a confirmed fault with no work order.
            list(Alert.objects.select_for_update().filter(pk=order.alert_id).values_list("pk", flat=True))
            verdict = current_verdict(order.alert)
            if verdict is None or verdict.verdict != Verdict.CONFIRMED_FAULT:
                # The confirmed fault that ordered it was undone (or corrected) before it went: the CMMS
                # never had it, so it goes; a later confirmation orders a new one (auto_create_for).
                WorkOrder.objects.filter(
                    pk=order.pk, status__in=(WorkOrderStatus.PENDING, WorkOrderStatus.FAILED)
                ).delete()
                return None
            # Confirmed again after an undo (or corrected to another confirmation) while it waited: that
            # verdict's own undo window runs on, so it waits that out too (auto_create_for ordered no second
            # one). Timed under the lock, as undo_verdict times the undo: an undo after this sees it too old.
            wait = settings.VIGIL_VERDICT_UNDO_S - (timezone.now() - verdict.created_at).total_seconds()
        if wait > 0:
            _queue_send(order.pk, after_s=wait)
            return None
    attempts = order.attempts + 1
    try:
        external = adapter_for(order.connection).create(work_order_request(order))
    except CmmsError as exc:
        status = (
            WorkOrderStatus.FAILED
            if attempts >= settings.VIGIL_CMMS_MAX_ATTEMPTS
            else WorkOrderStatus.PENDING
        )
        WorkOrder.objects.filter(pk=order.pk).update(
            attempts=attempts, last_error=str(exc)[:500], status=status
        )
        return False
    WorkOrder.objects.filter(pk=order.pk, status__in=OPEN_WORK_ORDER).update(
        attempts=attempts,
        last_error="",
        status=WorkOrderStatus.SENT,
        external_id=external,
        sent_at=timezone.now(),
    )
    return True


def parse_outcome(value: Any) -> WorkOrderOutcome:
    if isinstance(value, str) and value in WorkOrderOutcome.values:
        return WorkOrderOutcome(value)
    raise WorkOrderError(
        f"unknown outcome {str(value)[:40]!r}; use one of: {', '.join(WorkOrderOutcome.values)}"
    )


def apply_outcome(order: WorkOrder, outcome: Outcome, *, source: str) -> WorkOrder:
    """Close the work order with the CMMS's outcome and write it to the alert's feedback (module
    docstring). Idempotent: the same outcome again changes nothing; another one is a WorkOrderConflict."""
    try:
        findings = check_text(
            "findings",
            (outcome.findings or "").strip()[:MAX_FINDINGS],
            max_length=MAX_FINDINGS,
            multiline=True,
        )
    except ParamError as exc:  # a NUL: PostgreSQL stores none
        raise WorkOrderError(str(exc)) from None
    with transaction.atomic():
        order = WorkOrder.objects.select_for_update().select_related("alert__asset").get(pk=order.pk)
        if order.status == WorkOrderStatus.CLOSED:
            if order.outcome == outcome.outcome:
                return order
            raise WorkOrderConflict(
                f"work order #{order.pk} is already closed as {order.get_outcome_display().lower()}"
            )
        previous = current_verdict(order.alert)
        feedback = None
        what = f"Work order #{order.pk}" + (f" (CMMS {order.external_id})" if order.external_id else "")
        # On a "Check the sensor" or "Check the data link" alert, nothing found means what checked is fine:
        # the reason its card's first false-alarm button gives ("Sensor checked, reads true", "Link checked,
        # working"; "unknown" threw that away); on a machine fault, whose first reason says a reading
        # glitched, nobody said so: unknown.
        first = order.alert.false_alarm_reasons[0]
        checked = first in (FalseAlarmReason.SENSOR_READS_TRUE, FalseAlarmReason.LINK_WORKING)
        nothing_found = first if checked else FalseAlarmReason.UNKNOWN
        verdicts = {
            WorkOrderOutcome.DONE: ("confirm:repaired", f"{what} done"),
            WorkOrderOutcome.NO_FAULT_FOUND: (f"false_alarm:{nothing_found}", f"{what}: no fault found"),
        }
        if outcome.outcome in verdicts:
            action, note = verdicts[outcome.outcome]
            note += f": {findings}" if findings else ""
            try:
                feedback = record_feedback(order.alert, None, action, note, authorised=True)
            except FeedbackError as exc:  # e.g. the alert changed concurrently: the CMMS may send it again
                raise WorkOrderConflict(f"work order #{order.pk}: {exc}") from None
        corrected = ""
        if feedback is not None and previous is not None and previous.verdict != feedback.verdict:
            corrected = previous.summary[:120]
        order.status, order.outcome, order.findings = WorkOrderStatus.CLOSED, outcome.outcome, findings
        order.outcome_source, order.corrected, order.feedback = source, corrected, feedback
        order.closed_at = timezone.now()
        order.save(
            update_fields=[
                "status",
                "outcome",
                "findings",
                "outcome_source",
                "corrected",
                "feedback",
                "closed_at",
            ]
        )
    return order


def poll_outcomes() -> int:
    """Read the outcome of every sent work order whose adapter polls (Odoo); the orders closed."""
    closed = 0
    orders = WorkOrder.objects.filter(status=WorkOrderStatus.SENT, connection__enabled=True).select_related(
        "connection"
    )
    for order in orders.exclude(external_id="")[:200]:
        try:
            outcome = adapter_for(order.connection).outcome(order.external_id)
        except CmmsError as exc:
            WorkOrder.objects.filter(pk=order.pk).update(last_error=f"poll: {exc}"[:500])
            continue
        if outcome is not None:
            try:
                apply_outcome(order, outcome, source="poll")
            except WorkOrderError:
                continue
            closed += 1
    return closed


def stale_work_orders(older_than: timedelta) -> list[int]:
    """Work orders never attempted although created more than ``older_than`` ago (their task was lost)."""
    return list(
        WorkOrder.objects.filter(
            status=WorkOrderStatus.PENDING, attempts=0, created_at__lt=timezone.now() - older_than
        ).values_list("pk", flat=True)[:500]
    )
