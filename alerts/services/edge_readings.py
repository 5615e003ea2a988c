"""What became of the readings an alert decided at the edge was decided on, from the facts the server has.

The agent sends its alert events first, then the readings it queued, then a report of what it still holds
(``edge.forward``). The server keeps the event (``EdgeEvent``: which gateway sent it, when it arrived), the
agent's latest report (``plant.EdgeAgent``: last contact, oldest item still unsent) and the readings it
dropped from its full buffer (``plant.EdgeDrop``). While the readings of an edge alert's opening window have
not arrived, its explanation is "awaiting" them (``lifecycle.complete_explanation``); they are lost for
good (status "lost", with the reason) when:

- its agent has reported, after the event arrived, that it holds nothing timed up to the decision, and
  either it reported dropping readings of the window from its full buffer (the reason names the drop) or
  none of the window's readings is stored (the agent was wiped, or the server refused them); a window
  with some of its readings stored and none dropped is incomplete, and its explanation fails as any other
  does; or
- they are older than the server accepts readings (``plant.edge_agents.oldest_accepted``).

The agent's buffer is bounded in bytes, not in time, so no earlier moment is certain for an agent that never
comes back: its alerts keep waiting, and their cards say since when it has been out of contact
(``EdgeAgent.is_silent``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min, Sum

from alerts.choices import ExplanationStatus
from alerts.models import Alert, EdgeEvent, when_text
from plant.edge_agents import oldest_accepted
from plant.models import EdgeAgent, EdgeDrop, Reading


@dataclass(frozen=True)
class ReadingsFate:
    """``lost``: why the readings will never reach the server ("" while they still may); ``unsent``: the
    deciding agent has not reported yet that it sent everything it held up to the decision."""

    lost: str = ""
    unsent: bool = False


def deciding_events(alert_ids: Iterable[int]) -> dict[int, EdgeEvent]:
    """Alert id -> the first "opened" event the server received for it, with its gateway and the gateway's
    agent loaded (one query)."""
    events: dict[int, EdgeEvent] = {}
    rows = (
        EdgeEvent.objects.filter(alert_id__in=list(alert_ids), kind="opened")
        .select_related("gateway__edge_agent")
        .order_by("received_at", "pk")
    )
    for event in rows:
        events.setdefault(event.alert_id, event)
    return events


def agent_of(event: EdgeEvent | None) -> EdgeAgent | None:
    """The agent that sent ``event`` as it last reported, or None (no event, or no report ever)."""
    return None if event is None else getattr(event.gateway, "edge_agent", None)


def readings_fate(alert: Alert, now: datetime) -> ReadingsFate:
    """Whether the readings of an edge ``alert``'s opening window can still reach the server (see the
    module docstring); times in the reason are in the site's zone, with their date."""
    zone = alert.asset.site.zone
    if alert.opened_at < oldest_accepted(now):
        days = settings.VIGIL_INGEST_MAX_AGE_DAYS
        return ReadingsFate(lost=f"they are older than the {days} days the server accepts readings for")
    event = deciding_events([alert.pk]).get(alert.pk)
    agent = agent_of(event)
    if event is None or agent is None:
        return ReadingsFate()
    if not agent.has_sent_up_to(alert.opened_at, reported_after=event.received_at):
        return ReadingsFate(unsent=True)
    who = f"the agent (gateway {event.gateway.name})"
    start = alert.opened_at - timedelta(seconds=float(alert.asset.asset_type.window_s))
    dropped = EdgeDrop.objects.filter(
        gateway_id=event.gateway_id, first_ts__lte=alert.opened_at, last_ts__gte=start
    ).aggregate(count=Sum("count"), first=Min("first_ts"), last=Max("last_ts"))
    if dropped["count"]:
        first, last = (when_text(dropped[end], zone, dated=True) for end in ("first", "last"))
        return ReadingsFate(
            lost=f"{who} dropped {dropped['count']} readings timed {first} to {last} from its full buffer"
        )
    if Reading.objects.filter(sensor__asset=alert.asset_id, ts__gte=start, ts__lte=alert.opened_at).exists():
        return ReadingsFate()  # some reached the server: an incomplete window, a failure to explain
    reported = when_text(agent.last_contact_at, zone, dated=True)
    return ReadingsFate(
        lost=(
            f"{who} reported at {reported} that it had nothing left to send from before the decision, so they "
            "were lost on the gateway or refused by the server"
        )
    )


def mark_silent_agents(alerts: Iterable[Alert], now: datetime) -> None:
    """Set ``agent_silent_since`` on each awaiting alert whose deciding agent is silent now (one query)."""
    waiting = {a.pk: a for a in alerts if a.explanation_status == ExplanationStatus.AWAITING}
    if not waiting:
        return
    for alert_id, event in deciding_events(waiting).items():
        agent = agent_of(event)
        if agent is not None and agent.is_silent(now):
            waiting[alert_id].agent_silent_since = agent.last_contact_at
