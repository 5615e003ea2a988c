"""The read side of the technicians' pages: the alerts of the user's sites (plant.access's site rule), the
board's cards and the words that explain them.

Cost of one board, whatever the number of cards: the alerts (with their asset and, per card, the id of
the last closed similar alert as a correlated subquery on the (asset, kind, dominant_role, closed_at)
index), their model versions (for the normal ranges), the sensor roles (labels, units) and, when any card
has a similar alert, those alerts with their current verdicts — five queries; a sixth when a card is a
data-link alert (the gaps that ended in its windows, for "No data from … from 10:02 to 10:09"), and one
more when a card awaits the readings of an edge agent (its agent's last report, for "out of contact since").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from datetime import datetime
from typing import Any

from cachetools import LRUCache, cached
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from alerts.choices import CLOSED_STATES, AlertCategory, AlertKind, AlertState, EpisodeState
from alerts.metrics.facts import verdicts_in_force
from alerts.models import Alert, ThresholdOverride
from alerts.services.edge_readings import mark_silent_agents
from alerts.services.sensor_faults import sensor_params
from detection.explain import typical_ranges
from detection.gate import category_what, check_the_link, went_missing
from detection.runtime import higher_is_worse
from detection.wording import Finding, SensorReason, duration_text, findings, reasons, unusual_text
from models_registry.models import ModelVersion
from plant.access import scope_to_sites
from plant.models import SensorRole
from plant.series import MissingSpan, missing_spans

BOARD_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.SNOOZED)
# The board's cards: alerts waiting for people, and (in their own lane) judged alerts in work.
ON_BOARD = Q(state__in=BOARD_STATES) | Q(state__in=CLOSED_STATES, episode=EpisodeState.IN_WORK)
WHY_LINES = 3  # sensors named on a card


def alerts_for_user(user: Any) -> QuerySet[Alert]:
    """Every visible (non-shadow) alert of the user's sites, in any state."""
    return scope_to_sites(Alert.objects.filter(is_shadow=False), user, "asset__site")


def board_alerts(user: Any, *, ids: Iterable[int] | None = None, asset_id: int | None = None) -> list[Alert]:
    """The board's cards: open, acknowledged and snoozed alerts of the user's sites and those in work
    (``alert.in_work``: the in-work lane), critical first and then oldest first (``Alert.board_order``),
    each with ``why`` (plain-language lines) and ``similar`` (the last closed similar alert of the asset
    with its ``verdict``, or None) attached."""
    alerts = alerts_for_user(user).filter(ON_BOARD)
    if ids is not None:
        alerts = alerts.filter(pk__in=list(ids))
    if asset_id is not None:
        alerts = alerts.filter(asset_id=asset_id)
    similar = similar_before(
        OuterRef("asset"), OuterRef("kind"), OuterRef("dominant_role"), OuterRef("opened_at")
    )
    override = ThresholdOverride.objects.filter(
        asset=OuterRef("asset"), model_version=OuterRef("model_version"), active=True
    )
    rows = list(
        alerts.select_related("asset__site", "asset__asset_type", "sensor")
        .defer("peak_explanation")
        .annotate(
            similar_id=Subquery(similar[:1]),
            override_open=Subquery(override.values("open_threshold")[:1]),
            override_clear=Subquery(override.values("clear_threshold")[:1]),
        )
    )
    rows.sort(key=attrgetter("board_order"))  # the page's order rule, which board.js applies to new cards
    decorate(rows)
    add_card_actions(rows)
    return rows


def similar_before(asset: Any, kind: Any, dominant_role: Any, opened_at: Any) -> QuerySet[Alert]:
    """The pks of the closed alerts of ``asset`` and ``kind`` driven by ``dominant_role`` that opened before
    ``opened_at``, last closed first: "the last similar alert" of the board's cards (given OuterRefs) and of
    the alert page. Opened before the alert, so that an alert in work is never its own similar alert."""
    return (
        Alert.objects.filter(
            asset=asset,
            kind=kind,
            dominant_role=dominant_role,
            is_shadow=False,
            state__in=CLOSED_STATES,
            closed_at__isnull=False,
            opened_at__lt=opened_at,
        )
        .order_by("-closed_at")
        .values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class CardAction:
    """A button an app above alerts adds to a board card: a plain POST to ``url`` (the view answers with a
    redirect and a message); ``name`` is its data-action."""

    label: str
    url: str
    name: str


# Card actions handed in by the apps above alerts from their AppConfig.ready() (handoff: "Create work
# order"): each maps the cards to {alert pk: [CardAction]} with at most a query or two for all of them.
CardActions = Callable[[Sequence[Alert]], dict[int, list[CardAction]]]
_CARD_ACTIONS: list[CardActions] = []


def provide_card_actions(actions: CardActions) -> None:
    """Register a provider of board-card actions (idempotent)."""
    if actions not in _CARD_ACTIONS:
        _CARD_ACTIONS.append(actions)


def add_card_actions(alerts: Sequence[Alert]) -> None:
    """Attach ``card_actions`` (the registered providers' buttons, in registration order) to board cards."""
    for alert in alerts:
        alert.card_actions = []
    if not alerts:
        return
    by_pk = {alert.pk: alert for alert in alerts}
    for provider in _CARD_ACTIONS:
        for pk, actions in provider(alerts).items():
            by_pk[pk].card_actions.extend(actions)


@dataclass(frozen=True)
class AlertLevel:
    """The thresholds an alert is judged by (its asset's active override, else its version's), their
    direction and the asset type's window step: what "3.6× the alert level" and "for 2 min" are made of."""

    open_threshold: float
    clear_threshold: float
    higher: bool
    step_s: float
    life_unit_s: float | None = None  # a remaining-useful-life version's unit (ModelVersion.rul_unit_s)

    @property
    def wording_args(self) -> dict[str, Any]:
        return {"open_threshold": self.open_threshold, "higher": self.higher}

    def unusual(self, score: float | None) -> str:
        """How unusual ``score`` is against this level, in words (detection.wording.unusual_text)."""
        return unusual_text(score, self.open_threshold, higher=self.higher, life_unit_s=self.life_unit_s)


def alert_level(
    alert: Alert, version: ModelVersion, thresholds: tuple[float, float] | None = None
) -> AlertLevel:
    """The AlertLevel of ``alert``; ``thresholds`` (open, clear) is its override, None for the version's.

    The board reads the override through the ``override_open``/``override_clear`` annotations."""
    if alert.kind == AlertKind.SENSOR_FAULT:
        # Measured by its own rule (the flagged share in units of its opening level), not by the thresholds
        # of the model version it is filed under: the page said "0.4× the alert level" of an open alert.
        rule = sensor_params(alert.asset)
        return AlertLevel(
            rule.open_threshold, rule.clear_threshold, True, float(alert.asset.asset_type.step_s)
        )
    if thresholds is None and getattr(alert, "override_open", None) is not None:
        thresholds = (alert.override_open, alert.override_clear)
    open_t, clear_t = thresholds or (version.open_threshold, version.clear_threshold)
    return AlertLevel(
        open_t,
        clear_t,
        higher_is_worse(version.output_spec),
        float(alert.asset.asset_type.step_s),
        version.rul_unit_s,
    )


def explained_at(explanation: dict | None) -> datetime | None:
    """The end of the window an explanation is about (stored as ISO text), None if unknown."""
    raw = (explanation or {}).get("window_end")
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def decorate(alerts: Sequence[Alert], level: AlertLevel | None = None) -> None:
    """Attach ``why``, ``level``, ``unusual``, ``unusual_for``, ``similar``, ``data_link``, ``explained_at``
    and, on a card awaiting an edge agent's readings, ``agent_silent_since`` to board alerts (annotated with
    ``similar_id`` and the override thresholds) in three queries, a fourth when a card is a data-link alert
    and one more when one awaits readings; ``level`` when the caller has it."""
    if not alerts:
        return
    mark_silent_agents(alerts, timezone.now())
    versions = versions_of({a.model_version_id for a in alerts})
    ranges = {pk: normal_ranges(version) for pk, version in versions.items()}
    meta = role_meta({a.asset.asset_type_id for a in alerts})
    links = [a for a in alerts if a.category == AlertCategory.DATA_LINK]
    missing = missing_spans([(a.asset_id, a.first_window_start, a.opened_at) for a in links]) if links else []
    similar_ids = {a.similar_id for a in alerts if getattr(a, "similar_id", None)}
    similar: dict[int, Alert] = {}
    if similar_ids:
        similar = {
            a.pk: a
            for a in Alert.objects.filter(pk__in=similar_ids)
            .only("pk", "state", "opened_at", "closed_at", "dominant_role", "kind", "category", "asset_id")
            .prefetch_related(
                Prefetch(
                    "feedback",
                    queryset=verdicts_in_force().select_related("user"),
                    to_attr="current_verdicts",
                )
            )
        }
    for alert in alerts:
        alert.level = level or alert_level(alert, versions[alert.model_version_id])
        alert.why = why_lines(
            alert.explanation,
            ranges.get(alert.model_version_id, {}),
            meta.get(alert.asset.asset_type_id, {}),
            alert.level,
        )
        alert.unusual = alert.level.unusual(alert.peak_score)
        alert.unusual_for = duration_text(alert.window_count * alert.level.step_s)
        alert.explained_at = explained_at(alert.explanation)
        alert.role_label = (
            meta.get(alert.asset.asset_type_id, {}).get(alert.dominant_role, (alert.dominant_role, ""))[0]
            if alert.dominant_role
            else ""
        )
        alert.data_link = (
            data_link_words(alert, missing, meta.get(alert.asset.asset_type_id, {}))
            if alert.category == AlertCategory.DATA_LINK
            else None
        )
        found = similar.get(getattr(alert, "similar_id", None) or 0)
        if found is not None:
            found.verdict = found.current_verdicts[0] if found.current_verdicts else None
        alert.similar = found


def alert_what(alert: Alert) -> str:
    """What a decorated alert is about, in the words of its one-line texts ("Vibration", "Discharge pressure
    sensor", "vibration data link"): its dominant sensor's label; the sensor itself for a sensor fault;
    the data link when readings went missing."""
    if alert.data_link is not None:
        # Readings went missing: what to check is the link ("P-101 vibration data link alert"), not the sensor.
        return alert.data_link.what
    if alert.category == AlertCategory.SENSOR_FAULT and alert.role_label:
        # The sensor's values are flagged: what to check is that sensor ("Discharge pressure sensor alert"),
        # which a bare "Discharge pressure alert" in an inbox or on an HMI reads as the machine's pressure.
        # The edge agent words its local alerts by the same rule (detection.gate.category_what).
        return category_what(alert.category, alert.role_label)
    return alert.role_label or alert.get_kind_display()


@dataclass(frozen=True)
class DataLinkWords:
    """A data-link alert in plain words: ``what`` for one-line texts ("vibration data link"), ``sentence``
    (no full stop, like a top sensor's) for the card, the alert page, the notifications and the HMI."""

    what: str
    sentence: str


def data_link_words(
    alert: Alert, missing: Iterable[MissingSpan], roles: Mapping[str, tuple[str, str]]
) -> DataLinkWords:
    """Which sensors' readings went missing around the alert's opening (the gaps that ended in its windows)
    and for how long, and what to check: the link, not the sensor."""
    gaps = sorted(
        (
            m
            for m in missing
            if m.asset_id == alert.asset_id and alert.first_window_start < m.end <= alert.opened_at
        ),
        key=lambda m: (m.role != alert.dominant_role, m.end, m.sensor_id),  # the driving sensor first
    )
    labels = list(dict.fromkeys(roles.get(m.role, (m.role, ""))[0].lower() for m in gaps))
    if not labels:
        labels = [(alert.role_label or alert.dominant_role or "driving").lower()]
    names = labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"
    many = len(labels) > 1 or len({m.sensor_key for m in gaps}) > 1
    what = f"the {names} sensor{'s' if many else ''}"
    check = check_the_link(many)
    if not gaps:
        short = category_what(AlertCategory.DATA_LINK, "" if labels == ["driving"] else names)
        return DataLinkWords(short, went_missing(names, many))
    keys = list(dict.fromkeys(m.sensor_key for m in gaps))
    what += f" ({', '.join(keys)})" if many else f" {keys[0]}"
    zone = alert.asset.site.zone
    end = max(m.end for m in gaps)
    starts = [m.start for m in gaps if m.start is not None]
    if starts:
        start = min(starts)
        span = (
            f"from {_clock(start, zone, end)} to {_clock(end, zone, end)} "
            f"({duration_text((end - start).total_seconds())})"
        )
    else:
        span = f"until {_clock(end, zone, end)}"
    return DataLinkWords(
        category_what(AlertCategory.DATA_LINK, names), f"No data from {what} {span}: {check}"
    )


def _clock(moment: datetime, zone: Any, reference: datetime) -> str:
    """'10:02', with the date when it is not the reference's day (both in the site's time zone)."""
    local = moment.astimezone(zone)
    same_day = local.date() == reference.astimezone(zone).date()
    return f"{local:%H:%M}" if same_day else f"{local:%d %b %H:%M}"


def versions_of(version_ids: Iterable[int]) -> dict[int, ModelVersion]:
    """The versions with what the cards need (normal ranges, thresholds, direction), in one query."""
    fields = (
        "pk",
        "sha256",
        "kind",
        "feature_spec",
        "background",
        "open_threshold",
        "clear_threshold",
        "output_spec",
        "provenance",
    )
    return {v.pk: v for v in ModelVersion.objects.filter(pk__in=list(version_ids)).only(*fields)}


@cached(LRUCache(maxsize=64), key=lambda version: (version.pk, version.sha256), lock=threading.Lock())
def normal_ranges(version: ModelVersion) -> dict[str, tuple[float, float]]:
    """Feature name -> (p10, p90) of the version's background: what "usually" means on the pages."""
    names = list(version.feature_spec or [])
    background = version.background or []
    return typical_ranges(background, names) if names and background else {}


def role_meta(asset_type_ids: Iterable[int]) -> dict[int, dict[str, tuple[str, str]]]:
    """asset type -> role key -> (label, unit), in one query."""
    out: dict[int, dict[str, tuple[str, str]]] = {}
    for type_id, key, label, unit in SensorRole.objects.filter(
        asset_type_id__in=list(asset_type_ids)
    ).values_list("asset_type_id", "key", "label", "unit"):
        out.setdefault(type_id, {})[key] = (label, unit)
    return out


def feature_lines(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
    level: AlertLevel | None = None,
) -> list[Finding]:
    """Every feature of an explanation against its usual range, largest |φ| first (detection.wording)."""
    return findings(explanation, ranges, roles, **(level.wording_args if level else {}))


def why_lines(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
    level: AlertLevel | None = None,
    top: int | None = WHY_LINES,
) -> list[SensorReason]:
    """The sensors that pushed the score, in plain words (detection.wording.reasons)."""
    return reasons(explanation, ranges, roles, top=top, **(level.wording_args if level else {}))
