"""Metric rows: counts aggregated by the database per (period, key), rates and percentiles derived from
them. The page, the JSON/CSV API and the trust-erosion warning all read ``metric_rows``."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, QuerySet

from alerts.choices import FalseAlarmReason
from alerts.metrics.params import MetricsQuery, period_label
from alerts.metrics.queries import (
    ALERT_KEYS,
    MISSED_KEYS,
    counted_alerts,
    metric_filters,
    missed_failures,
    trunc,
)
from models_registry.models import ModelVersion
from plant.models import Asset, AssetType, Site

# Conditional counts of a row, each a COUNT(...) FILTER (WHERE ...) of the same GROUP BY.
COUNTED = (
    "verdicts",
    "confirmed",
    "false_alarms",
    "not_actionable",
    "actionable",
    "followed",
    "due",
    "ignored",
)
# The columns of the API's rows (JSON keys and CSV header, in this order).
API_FIELDS = (
    "period",
    "key",
    "label",
    "alerts",
    "verdicts",
    "confirmed",
    "false_alarms",
    "not_actionable",
    "missed",
    "precision",
    "recall",
    "follow_through",
    "actionability",
    "tta_median_s",
    "tta_p90_s",
    "ignored",
)
NO_MODEL = "no model deployed"
ALL = "All"


def ratio(numerator: int, denominator: int) -> float | None:
    """A rate, or None (not 0) when nothing was there to count."""
    return numerator / denominator if denominator else None


def p90(values: list[float]) -> float | None:
    """Nearest-rank 90th percentile: the smallest value at or above 90 % of the values (an observed one)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


@dataclass
class MetricsRow:
    """The numbers of one (period, key): counts from the database, rates derived from them."""

    period: str
    key: int | None
    label: str = ""
    alerts: int = 0
    verdicts: int = 0
    confirmed: int = 0
    false_alarms: int = 0
    not_actionable: int = 0
    actionable: int = 0
    followed: int = 0
    due: int = 0
    ignored: int = 0
    missed: int = 0
    tta_s: list[float] = field(default_factory=list, repr=False)
    false_alarms_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return ratio(self.confirmed, self.confirmed + self.false_alarms)

    @property
    def recall(self) -> float | None:
        return ratio(self.confirmed, self.confirmed + self.missed)

    @property
    def follow_through(self) -> float | None:
        return ratio(self.followed, self.due)

    @property
    def actionability(self) -> float | None:
        return ratio(self.actionable, self.verdicts)

    @property
    def tta_median_s(self) -> float | None:
        return float(statistics.median(self.tta_s)) if self.tta_s else None

    @property
    def tta_p90_s(self) -> float | None:
        return p90(self.tta_s)

    @property
    def dismissed(self) -> int:
        return self.false_alarms + self.not_actionable

    def as_dict(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in API_FIELDS}
        row["false_alarms_by_reason"] = dict(self.false_alarms_by_reason)
        return row


def metric_rows(
    site_ids: Collection[int], query: MetricsQuery, *, now: datetime, group_by: str | None = "query"
) -> list[MetricsRow]:
    """One row per (period, key) that had an alert or a missed failure, ordered by period then label.

    ``group_by`` defaults to the query's grouping; None gives one total row per period (key None).
    """
    group = query.group_by if group_by == "query" else group_by
    filters = metric_filters(now)
    alerts = counted_alerts(site_ids, query)
    by_alert = {"p": trunc(query.period, "opened_at")}
    if group:
        by_alert["k"] = F(ALERT_KEYS[group])
    rows: dict[tuple[str, int | None], MetricsRow] = {}

    def row(moment: datetime, key: int | None) -> MetricsRow:
        label = period_label(moment, query.period)
        if (label, key) not in rows:
            rows[(label, key)] = MetricsRow(period=label, key=key)
        return rows[(label, key)]

    counts = alerts.values(**by_alert).annotate(
        n=Count("pk"), **{name: Count("pk", filter=filters[name]) for name in COUNTED}
    )
    for values in counts.order_by():
        target = row(values["p"], values.get("k"))
        target.alerts = values["n"]
        for name in COUNTED:
            setattr(target, name, values[name])
    reasons = (
        alerts.filter(filters["false_alarms"])
        .values(**by_alert, reason=F("verdict_reason"))
        .annotate(n=Count("pk"))
        .order_by()
    )
    for values in reasons:
        row(values["p"], values.get("k")).false_alarms_by_reason[values["reason"] or "unknown"] = values["n"]
    # Percentiles are not portable SQL: the delays come back one number per acknowledged alert.
    for moment, key, delay in _delays(alerts.filter(filters["acknowledged"]), by_alert):
        row(moment, key).tta_s.append(max(0.0, delay.total_seconds()))
    by_missed = {"p": trunc(query.period, "failure_at")}
    if group:
        by_missed["k"] = F(MISSED_KEYS[group])
    for values in missed_failures(site_ids, query).values(**by_missed).annotate(n=Count("pk")).order_by():
        row(values["p"], values.get("k")).missed = values["n"]
    labels = key_labels(group, {key for _, key in rows})
    for (_, key), target in rows.items():
        target.label = labels.get(key, NO_MODEL if group == "model_version" else ALL)
    return _finished(rows.values())


def _finished(rows: Iterable[MetricsRow]) -> list[MetricsRow]:
    """Reasons in their display order (the choices, then any other in name order); rows by period, label."""
    for target in rows:
        target.false_alarms_by_reason = {
            reason: target.false_alarms_by_reason[reason]
            for reason in [*FalseAlarmReason.values, *sorted(target.false_alarms_by_reason)]
            if reason in target.false_alarms_by_reason
        }
    return sorted(rows, key=lambda r: (r.period, r.label, r.key or 0))


def period_totals(rows: Iterable[MetricsRow]) -> list[MetricsRow]:
    """One row per period (key None, label "All") summed from the rows of any grouping: the same numbers
    as ``metric_rows(..., group_by=None)`` without counting the alerts again, because every alert and
    every missed failure has exactly one key (null included) in each grouping."""
    totals: dict[str, MetricsRow] = {}
    for row in rows:
        total = totals.setdefault(row.period, MetricsRow(period=row.period, key=None, label=ALL))
        total.alerts += row.alerts
        total.missed += row.missed
        for name in COUNTED:
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.tta_s.extend(row.tta_s)
        for reason, n in row.false_alarms_by_reason.items():
            total.false_alarms_by_reason[reason] = total.false_alarms_by_reason.get(reason, 0) + n
    return _finished(totals.values())


def _delays(alerts: QuerySet, by_alert: dict[str, Any]) -> Iterator[tuple[datetime, int | None, timedelta]]:
    """(period start, key or None, time to acknowledge) per acknowledged alert."""
    grouped = alerts.annotate(**{f"_{name}": value for name, value in by_alert.items()})
    names = [f"_{name}" for name in by_alert]
    for values in grouped.values_list(*names, "tta").order_by():
        yield (values[0], None, values[1]) if len(names) == 1 else values


def key_labels(group: str | None, keys: Iterable[int | None]) -> dict[int | None, str]:
    """Names for the keys of a grouping (one query)."""
    ids = [key for key in keys if key is not None]
    if not group or not ids:
        return {}
    if group == "site":
        return dict(Site.objects.filter(pk__in=ids).values_list("pk", "name"))
    if group == "asset_type":
        return dict(AssetType.objects.filter(pk__in=ids).values_list("pk", "name"))
    if group == "asset":
        return {
            pk: f"{name} · {site}"
            for pk, name, site in Asset.objects.filter(pk__in=ids).values_list("pk", "name", "site__name")
        }
    return {
        pk: f"{name} v{version}"
        for pk, name, version in ModelVersion.objects.filter(pk__in=ids).values_list("pk", "name", "version")
    }


@dataclass(frozen=True)
class DriverCount:
    """Dismissed (false alarm / not actionable) and ignored alerts of one asset or model in one period."""

    period: str
    key: int
    label: str
    dismissed: int
    ignored: int

    @property
    def count(self) -> int:
        return self.dismissed + self.ignored


def driver_counts(
    site_ids: Collection[int], query: MetricsQuery, group: str, *, now: datetime
) -> list[DriverCount]:
    """Per (period, asset or model version): how many alerts were dismissed or ignored."""
    return drivers_by(site_ids, query, (group,), now=now)[group]


def drivers_by(
    site_ids: Collection[int], query: MetricsQuery, groups: tuple[str, ...], *, now: datetime
) -> dict[str, list[DriverCount]]:
    """``driver_counts`` for several groupings from one pass over the alerts: counted per (period, every
    key at once), then summed per grouping here (each alert has one key of each)."""
    filters = metric_filters(now)
    counts = (
        counted_alerts(site_ids, query)
        .filter(filters["dismissed_or_ignored"])
        .values(
            p=trunc(query.period, "opened_at"), **{f"k_{group}": F(ALERT_KEYS[group]) for group in groups}
        )
        .annotate(
            _dismissed=Count("pk", filter=filters["dismissed"]),
            _ignored=Count("pk", filter=filters["ignored"]),
        )
        .order_by()
    )
    summed: dict[str, dict[tuple[datetime, int], list[int]]] = {group: {} for group in groups}
    for values in counts:
        for group in groups:
            pair = summed[group].setdefault((values["p"], values[f"k_{group}"]), [0, 0])
            pair[0] += values["_dismissed"]
            pair[1] += values["_ignored"]
    result = {}
    for group in groups:
        labels = key_labels(group, {key for _, key in summed[group]})
        result[group] = [
            DriverCount(
                period=period_label(moment, query.period),
                key=key,
                label=labels.get(key, str(key)),
                dismissed=dismissed,
                ignored=ignored,
            )
            for (moment, key), (dismissed, ignored) in summed[group].items()
        ]
    return result
