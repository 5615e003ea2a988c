"""The read side of the technicians' pages: the alerts of the user's sites (plant.access's site rule), the
board's cards and the words that explain them.

Cost of one board, whatever the number of cards: the alerts (with their asset and, per card, the id of
the last closed similar alert as a correlated subquery on the (asset, kind, dominant_role, closed_at)
index), their model versions (for the normal ranges), the sensor roles (labels, units) and, when any card
has a similar alert, those alerts with their current verdicts — five queries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache, cached
from django.db.models import Case, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When

from alerts.choices import CLOSED_STATES, AlertState, EpisodeState, Severity
from alerts.metrics.facts import verdicts_in_force
from alerts.models import Alert
from detection.explain import typical_ranges
from detection.features import STAT_LABELS, role_of
from models_registry.models import ModelVersion
from plant.access import scope_to_sites
from plant.models import SensorRole

BOARD_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.SNOOZED)
# The board's cards: alerts waiting for people, and (in their own lane) judged alerts in work.
ON_BOARD = Q(state__in=BOARD_STATES) | Q(state__in=CLOSED_STATES, episode=EpisodeState.IN_WORK)
WHY_LINES = 3


def alerts_for_user(user: Any) -> QuerySet[Alert]:
    """Every visible (non-shadow) alert of the user's sites, in any state."""
    return scope_to_sites(Alert.objects.filter(is_shadow=False), user, "asset__site")


def board_alerts(user: Any, *, ids: Iterable[int] | None = None, asset_id: int | None = None) -> list[Alert]:
    """The board's cards: open, acknowledged and snoozed alerts of the user's sites and those in work
    (``alert.in_work``: the in-work lane), critical first and then oldest first, each with ``why``
    (plain-language lines) and ``similar`` (the last closed similar alert of the asset with its
    ``verdict``, or None) attached."""
    alerts = alerts_for_user(user).filter(ON_BOARD)
    if ids is not None:
        alerts = alerts.filter(pk__in=list(ids))
    if asset_id is not None:
        alerts = alerts.filter(asset_id=asset_id)
    similar = (
        Alert.objects.filter(
            asset=OuterRef("asset"),
            kind=OuterRef("kind"),
            dominant_role=OuterRef("dominant_role"),
            is_shadow=False,
            state__in=CLOSED_STATES,
            closed_at__isnull=False,
        )
        .order_by("-closed_at")
        .values("pk")[:1]
    )
    rank = Case(
        *[When(severity=s.value, then=Value(s.rank)) for s in Severity],
        default=Value(0),
        output_field=IntegerField(),
    )
    rows = list(
        alerts.select_related("asset__site")
        .defer("peak_explanation")
        .annotate(severity_rank=rank, similar_id=Subquery(similar))
        .order_by("-severity_rank", "opened_at", "pk")
    )
    decorate(rows)
    return rows


def decorate(alerts: Sequence[Alert]) -> None:
    """Attach ``why`` and ``similar`` to board alerts (annotated with ``similar_id``) in three queries."""
    if not alerts:
        return
    ranges = normal_ranges_of({a.model_version_id for a in alerts})
    meta = role_meta({a.asset.asset_type_id for a in alerts})
    similar_ids = {a.similar_id for a in alerts if getattr(a, "similar_id", None)}
    similar: dict[int, Alert] = {}
    if similar_ids:
        similar = {
            a.pk: a
            for a in Alert.objects.filter(pk__in=similar_ids)
            .only("pk", "state", "opened_at", "closed_at", "dominant_role", "kind", "asset_id")
            .prefetch_related(
                Prefetch(
                    "feedback",
                    queryset=verdicts_in_force().select_related("user"),
                    to_attr="current_verdicts",
                )
            )
        }
    for alert in alerts:
        alert.why = why_lines(
            alert.explanation, ranges.get(alert.model_version_id, {}), meta.get(alert.asset.asset_type_id, {})
        )
        alert.role_label = (
            meta.get(alert.asset.asset_type_id, {}).get(alert.dominant_role, (alert.dominant_role, ""))[0]
            if alert.dominant_role
            else ""
        )
        found = similar.get(getattr(alert, "similar_id", None) or 0)
        if found is not None:
            found.verdict = found.current_verdicts[0] if found.current_verdicts else None
        alert.similar = found


def normal_ranges_of(version_ids: Iterable[int]) -> dict[int, dict[str, tuple[float, float]]]:
    """Per version: feature name -> (p10, p90) over its background sample, cached per (id, sha256)."""
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for version in ModelVersion.objects.filter(pk__in=list(version_ids)).only(
        "pk", "sha256", "feature_spec", "background"
    ):
        out[version.pk] = normal_ranges(version)
    return out


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


@dataclass(frozen=True)
class WhyLine:
    """One contributing sensor in plain words: "Vibration RMS mean 4.1 mm/s (usually 1.2–1.9) ↑ +2.3"."""

    role: str
    feature: str
    sensor: str
    stat: str
    value: float
    unit: str
    low: float | None
    high: float | None
    phi: float
    role_phi: float

    @property
    def direction(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return "above" if self.value > self.high else "below" if self.value < self.low else "within"

    @property
    def arrow(self) -> str:
        return {"above": "↑", "below": "↓", "within": "≈"}.get(self.direction, "")

    @property
    def value_text(self) -> str:
        unit = f"{self.unit}/s" if self.stat == "trend" and self.unit else self.unit
        return f"{fmt(self.value)} {unit}".strip()

    @property
    def usual_text(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return f"usually {fmt(self.low)}–{fmt(self.high)}"

    @property
    def effect_class(self) -> str:
        return "why-up" if self.role_phi >= 0 else "why-down"

    @property
    def range_text(self) -> str:
        return "" if self.low is None or self.high is None else f"{fmt(self.low)} – {fmt(self.high)}"

    @property
    def effect_text(self) -> str:
        return f"{'+' if self.role_phi >= 0 else '−'}{fmt(abs(self.role_phi), 2)}"

    @property
    def text(self) -> str:
        usual = f" ({self.usual_text})" if self.usual_text else ""
        return f"{self.sensor} {self.stat} {self.value_text}{usual} {self.arrow} {self.effect_text}".strip()


def feature_lines(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
) -> list[WhyLine]:
    """Every feature of an explanation as a WhyLine, largest |φ| first (role_phi is the feature's own φ)."""
    lines = []
    for feature in (explanation or {}).get("features", []):
        name = feature["name"]
        role, _, stat = name.rpartition("__")
        label, unit = roles.get(role, (role.replace("_", " ").capitalize(), ""))
        low, high = ranges.get(name, (None, None))
        phi = float(feature.get("phi") or 0.0)
        # A baselined model's input is the change from the asset's operating point: show the sensor's own
        # value, and the usual range (of the model's input) around that operating point.
        base = float(feature.get("baseline") or 0.0)
        if low is not None and high is not None:
            low, high = low + base, high + base
        lines.append(
            WhyLine(
                role=role,
                feature=name,
                sensor=label,
                stat=STAT_LABELS.get(stat, stat.replace("_", " ")),
                value=float(feature.get("raw", feature["value"])),
                unit=unit,
                low=low,
                high=high,
                phi=phi,
                role_phi=phi,
            )
        )
    lines.sort(key=lambda line: abs(line.phi), reverse=True)
    return lines


def why_lines(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
    top: int = WHY_LINES,
) -> list[WhyLine]:
    """The top contributing sensors (roles by summed |φ|), each told by its largest feature, with the
    role's total contribution to the score."""
    totals: dict[str, float] = {}
    weight: dict[str, float] = {}
    best: dict[str, WhyLine] = {}
    for line in feature_lines(explanation, ranges, roles):
        role = role_of(line.feature)
        totals[role] = totals.get(role, 0.0) + line.phi
        weight[role] = weight.get(role, 0.0) + abs(line.phi)
        best.setdefault(role, line)  # lines come largest |φ| first
    picked = [role for role in sorted(weight, key=weight.get, reverse=True) if weight[role] > 0][:top]
    return [WhyLine(**{**best[role].__dict__, "role_phi": totals[role]}) for role in picked]


def fmt(value: float, digits: int = 3) -> str:
    """Short human number: 4.1, 0.0123, 1.2e+03."""
    if value != value:  # NaN
        return "–"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"  # 7,412 rather than 7.41e+03
    return f"{value:.{digits}g}"
