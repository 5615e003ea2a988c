"""Alerts decided at the edge: an agent's local "opened" / "cleared" events recorded on the server.

``POST /api/v1/edge/events`` (alerts.api) hands each event here. Exactly once per (gateway, key): the
``EdgeEvent`` row is the record, so a resent event (the agent resends what it has not seen acknowledged)
changes nothing and answers ``duplicate``. The key is the agent's and is never parsed here (any non-empty
string of at most 200 characters): agents key each episode's events their own way (``edge.decide``; older
agents, without the episode number in the key, work alike). What an event does goes through the
lifecycle's own persistence (``alerts.services.lifecycle``: the same alert key, ``_active_alert``,
``_open``), so the board, metrics, verdicts and explanations treat an edge alert like any other:

- ``opened``: if the asset already has the alert of this key (the server scored the forwarded readings
  first, or a judged episode is still going on), the event is merged into it (marked raised at the edge);
  otherwise the alert opens with the agent's times (first window, deciding window, peak) and is marked
  raised at the edge. Its explanation is computed from the readings once they are forwarded (while none
  has reached the server its task marks it "awaiting" them, which the card and page say, and the scorer
  explains the window when it scores it; the sweep re-runs the task once they are there, and marks them
  "lost", saying why, once the agent reports it holds nothing from before the decision: ``edge_readings``),
  always by the alert's own version, even one the server no longer scores with
  (``lifecycle.explain_opening``), and for a baselined version with the calibration shipped in the bundle
  the agent ran (``models_registry.edge_rollout.agent_step``; the event names only the ONNX file, so a
  bundle installed by hand, with no assignment recorded, is explained with the asset's current one). The agent sends no quality flags: its category is the
  server's quality gate (``lifecycle.gate_category``, as for the scorer's alerts) on the flags of the
  deciding window's stored readings; while they have not all arrived (the agent sends events before
  readings, and was perhaps offline) it opens a machine fault at once, never waiting for them, and the
  gate runs again when the scorer scores that window (``lifecycle._check_edge_openings``).
- ``cleared``: the active alert of the key, if it is still live and opened no later than the event,
  auto-closes ("cleared at the edge"); a judged episode or an alert already closed is left to the rules.

Each event is validated on its own; one wrong event is rejected with the reason and the others are kept.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.broadcast import broadcast_alerts
from alerts.choices import ACTIVE_STATES, AlertState, EpisodeState
from alerts.models import Alert, AlertEvent, AlertStateError, EdgeEvent, MaintenanceWindow
from alerts.services.lifecycle import (
    ScoredWindow,
    _active_alert,
    _Context,
    _open,
    _rule_params,
    window_flags,
)
from alerts.services.overrides import effective_thresholds
from detection import rules
from detection.wording import opening_text
from models_registry.models import ModelVersion
from plant.edge_agents import EdgeReportError, check_storable, edge_time
from plant.models import Asset, Gateway

KINDS = ("opened", "cleared")
MAX_EVENTS = 1_000
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TooManyEvents(EdgeReportError):
    """More events in one request than MAX_EVENTS (HTTP 413)."""


def _text(event: Mapping[str, Any], name: str, limit: int) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise EdgeReportError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def _number(event: Mapping[str, Any], name: str) -> float:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EdgeReportError(f"{name} must be a finite number")
    return float(value)


def record_edge_events(gateway: Gateway, events: list[Any]) -> list[dict[str, Any]]:
    """Record each event; one result per event: {key, outcome, alert?, error?}. Outcomes: opened,
    merged, closed, noted (nothing to change), duplicate, rejected."""
    if len(events) > MAX_EVENTS:
        raise TooManyEvents(f"too many events in one request: {len(events)}, the limit is {MAX_EVENTS}")
    results = []
    changed: list[int] = []
    for i, event in enumerate(events):
        key = event.get("key") if isinstance(event, Mapping) else None
        try:
            if not isinstance(event, Mapping):
                raise EdgeReportError("each event must be a JSON object")
            result = _record(gateway, event)
        except EdgeReportError as exc:
            results.append(
                {
                    "index": i,
                    "key": key if isinstance(key, str) else None,
                    "outcome": "rejected",
                    "error": str(exc),
                }
            )
            continue
        results.append({"index": i, **result})
        if result.get("alert") and result["outcome"] in ("opened", "merged", "closed"):
            changed.append(result["alert"])
    broadcast_alerts(changed)
    return results


def _record(gateway: Gateway, event: Mapping[str, Any]) -> dict[str, Any]:
    check_storable(event, "event")  # its key, asset tag and whole body are stored
    key = _text(event, "key", 200)
    kind = event.get("kind")
    if kind not in KINDS:
        raise EdgeReportError(f"kind must be one of {', '.join(KINDS)}")
    tag = _text(event, "asset", 100)
    asset = Asset.objects.select_related("asset_type", "site").filter(site=gateway.site, tag=tag).first()
    if asset is None:
        raise EdgeReportError(f"asset {tag!r} is not an asset of site {gateway.site.slug}")
    sha = _text(event, "model_sha256", 64)
    if not SHA256.match(sha):
        raise EdgeReportError("model_sha256 must be 64 lowercase hex digits")
    version = ModelVersion.objects.filter(sha256=sha, asset_type=asset.asset_type).first()
    if version is None:
        raise EdgeReportError(
            f"no model version of asset type {asset.asset_type.slug} has sha256 {sha[:12]}…"
        )
    now = timezone.now()
    at = edge_time(event.get("at"), "at", now)
    first = edge_time(event.get("first"), "first", now)
    peak_at = edge_time(event.get("peak_at"), "peak_at", now)
    if not first <= peak_at <= at:
        raise EdgeReportError("times must satisfy first <= peak_at <= at")
    peak_score = _number(event, "peak_score")

    with transaction.atomic():
        try:
            with transaction.atomic():
                record = EdgeEvent.objects.create(
                    gateway=gateway, key=key, kind=kind, at=at, outcome="received", body=dict(event)
                )
        except IntegrityError:
            previous = EdgeEvent.objects.get(gateway=gateway, key=key)
            return {"key": key, "outcome": "duplicate", "alert": previous.alert_id}
        params = _rule_params(version, *effective_thresholds(version, asset.pk), asset)
        ctx = _Context(
            asset=asset,
            version=version,
            is_shadow=False,  # an alert the agent raised reached the plant floor: it is never a shadow
            sensors=dict(asset.sensors.values_list("role__key", "key")),
            maintenance=list(MaintenanceWindow.objects.filter(asset=asset, start__lte=at, end__gte=at)),
            now=now,
            params=params,
        )
        alert = _active_alert(ctx)
        if kind == "opened":
            outcome, alert = _opened(ctx, gateway, alert, first, at, peak_at, peak_score)
        else:
            outcome = _cleared(ctx, gateway, alert, at)
        EdgeEvent.objects.filter(pk=record.pk).update(outcome=outcome, alert=alert)
    return {"key": key, "outcome": outcome, "alert": None if alert is None else alert.pk}


def _opened(ctx: _Context, gateway: Gateway, alert: Alert | None, first, at, peak_at, peak_score: float):
    if alert is not None:
        if not alert.raised_at_edge:
            Alert.objects.filter(pk=alert.pk).update(raised_at_edge=True, updated_at=ctx.now)
        return "merged", alert
    opened = rules.ActiveAlert(
        first=first,
        opened=at,
        last_seen=at,
        peak=peak_at,
        peak_score=peak_score,
        count=ctx.params.open_windows,
        hold=rules.Hold.SUPPRESSED if ctx.in_maintenance(at) else rules.Hold.NONE,
    )
    # No feature vector here: the explanation is rebuilt from the readings once they are forwarded. The
    # agent flags nothing; the quality gate reads the flags of the window's stored readings, if they are
    # all there, and is run again when the scorer scores the window (lifecycle._check_edge_openings).
    flagged = window_flags(ctx.asset, ctx.version, at)
    window = ScoredWindow(end=at, score=peak_score, x=None, flagged=flagged or {})
    alert, created = _open(ctx, window, opened)
    Alert.objects.filter(pk=alert.pk).update(raised_at_edge=True)
    alert.raised_at_edge = True
    if created:
        AlertEvent.objects.filter(alert=alert, from_state="").update(
            reason=(
                f"decided at the edge by {gateway.name}: "
                f"{opening_text(ctx.params.open_windows, higher=ctx.params.higher)}"
            )[:300]
        )
    return ("opened" if created else "merged"), alert


def _cleared(ctx: _Context, gateway: Gateway, alert: Alert | None, at) -> str:
    """Auto-close the alert the agent cleared at window ``at``. The windows before the clear run (the last
    ``clear_run`` windows, below the clear threshold) were the agent's episode: the alert's ``last_seen_at``
    moves up to the last of them, so that when their readings arrive later (an agent back from offline
    sends its events first) the scorer attributes them to this alert (``lifecycle._last_closed_seen``)
    instead of raising the same episode a second time."""
    if alert is None or alert.state not in ACTIVE_STATES or alert.episode != EpisodeState.LIVE:
        return "noted"
    if alert.opened_at > at:
        return "noted"  # a later episode than the one the agent cleared
    step = timedelta(seconds=float(ctx.asset.asset_type.step_s))
    last_seen = max(alert.last_seen_at, at - step * ctx.params.clear_run)
    try:
        alert.transition(
            AlertState.AUTO_CLOSED,
            reason=f"condition cleared at the edge ({gateway.name})",
            at=timezone.now(),
            last_seen_at=last_seen,
        )
    except AlertStateError:
        return "noted"
    return "closed"
