"""Metric rows: counts aggregated by the database per (period, key), rates and percentiles derived from
them. The page, the JSON/CSV API and the trust-erosion warning all read ``metric_rows``."""

from __future__ import annotations

import gc
import math
import operator
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from django.db.models import Count, F

from alerts.choices import Verdict
from alerts.metrics.closed import ClosedPart, closed_part
from alerts.metrics.facts import COUNTED, conditions, counts_sql, facts_sql, fetch, in_display_order
from alerts.metrics.facts import moment as to_moment
from alerts.metrics.params import MetricsQuery, period_label
from alerts.metrics.queries import MISSED_KEYS, missed_failures, trunc
from models_registry.models import ModelVersion
from plant.models import Asset, AssetType, Site

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
    # The numerators and denominators the rates above leave implicit (RATE_PARTS): followed / due is the
    # follow-through, actionable / verdicts the actionability; alerts − due are still inside their window;
    # acknowledged is how many answered alerts tta_median_s and tta_p90_s come from; machine_confirmed /
    # machine_judged is the precision (machine_confirmed also recall's numerator), and routed_judged the
    # confirmed faults and false alarms on sensor or data-link alerts that both rates leave out.
    "actionable",
    "followed",
    "due",
    "acknowledged",
    "machine_confirmed",
    "machine_judged",
    "routed_judged",
)
NO_MODEL = "no model deployed"
ALL = "All"


def ratio(numerator: int, denominator: int) -> float | None:
    """A rate, or None (not 0) when nothing was there to count."""
    return numerator / denominator if denominator else None


# Each rate's numerator and denominator (MetricsRow attributes), and the word the page puts after the
# denominator: the page's cells and the trend's hover text say '100% (2 of 2 due)' from these.
RATE_PARTS = {
    "precision": ("machine_confirmed", "machine_judged", ""),
    "recall": ("machine_confirmed", "faults", ""),
    "follow_through": ("followed", "due", "due"),
    "actionability": ("actionable", "verdicts", ""),
}


def rate_text(row: MetricsRow, rate: str) -> str:
    """One of a row's rates with what it divides: '67% (2 of 3)', '100% (2 of 2 due)', '— (none due)'."""
    numerator_name, denominator_name, word = RATE_PARTS[rate]
    value, of = getattr(row, rate), f" {word}" if word else ""
    if value is None:
        return f"— (none{of})"
    return f"{value:.0%} ({getattr(row, numerator_name)} of {getattr(row, denominator_name)}{of})"


def median(values: list[float]) -> float | None:
    """statistics.median (the mean of the middle two of an even count) without its checks: one per row of
    a year of asset x week rows."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def p90(values: list[float]) -> float | None:
    """Nearest-rank 90th percentile: the smallest value at or above 90 % of the values (an observed one)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


@dataclass(slots=True)
class MetricsRow:
    """The numbers of one (period, key): counts from the database, rates derived from them. ``confirmed``
    and ``false_alarms`` count every verdict the operators gave; precision and recall read
    ``machine_confirmed`` and ``machine_judged``, the verdicts on machine-fault alerts only
    (alerts.metrics.facts: a sensor or data-link alert is the gate's call, not the model's)."""

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
    machine_confirmed: int = 0
    machine_judged: int = 0
    missed: int = 0
    tta_s: list[float] = field(default_factory=list, repr=False)
    false_alarms_by_reason: dict[str, int] = field(default_factory=dict)

    # Each rate's denominator, named once: the rates divide by them and the page shows them beside the rate
    # ("100 % (2 of 2 due)"), with what they leave out (``not_due``, ``unjudged``), so the two never disagree.
    # Precision's denominator is ``machine_judged``: confirmed faults and false alarms on machine-fault
    # alerts (not-actionable verdicts are neither).
    @property
    def faults(self) -> int:
        """Recall's denominator: confirmed machine faults and reported missed failures."""
        return self.machine_confirmed + self.missed

    @property
    def routed_judged(self) -> int:
        """Confirmed faults and false alarms on sensor or data-link alerts: in neither precision nor recall."""
        return self.confirmed + self.false_alarms - self.machine_judged

    @property
    def not_due(self) -> int:
        """Alerts left out of follow-through: still inside their answer window without a verdict."""
        return self.alerts - self.due

    @property
    def unjudged(self) -> int:
        """Alerts without a verdict yet: in no denominator but follow-through's (once due)."""
        return self.alerts - self.verdicts

    @property
    def precision(self) -> float | None:
        return ratio(self.machine_confirmed, self.machine_judged)

    @property
    def recall(self) -> float | None:
        return ratio(self.machine_confirmed, self.faults)

    @property
    def follow_through(self) -> float | None:
        return ratio(self.followed, self.due)

    @property
    def actionability(self) -> float | None:
        return ratio(self.actionable, self.verdicts)

    @property
    def acknowledged(self) -> int:
        """The denominator of the time to acknowledge: alerts a person answered (one delay each)."""
        return len(self.tta_s)

    @property
    def tta_median_s(self) -> float | None:
        return median(self.tta_s)

    @property
    def tta_p90_s(self) -> float | None:
        return p90(self.tta_s)

    @property
    def dismissed(self) -> int:
        return self.false_alarms + self.not_actionable

    def as_dict(self) -> dict[str, Any]:
        row = dict(zip(API_FIELDS, _API_VALUES(self)))
        row["false_alarms_by_reason"] = dict(self.false_alarms_by_reason)
        return row


# A row's API values as one tuple (read in C).
_API_VALUES = operator.attrgetter(*API_FIELDS)
# Closed rows are built positionally (alerts.metrics.rows._add_closed): the counts follow COUNTED's order.
if tuple(f.name for f in fields(MetricsRow))[4 : 5 + len(COUNTED)] != (*COUNTED, "missed"):
    raise ImportError("MetricsRow's count fields no longer follow alerts.metrics.facts.COUNTED")


def metric_rows(
    site_ids: Collection[int], query: MetricsQuery, *, now: datetime, group_by: str | None = "query"
) -> list[MetricsRow]:
    """One row per (period, key) that had an alert or a missed failure, ordered by period then label.

    ``group_by`` defaults to the query's grouping; None gives one total row per period (key None).
    """
    return rows_and_drivers(site_ids, query, now=now, group_by=group_by)[0]


def rows_and_drivers(
    site_ids: Collection[int],
    query: MetricsQuery,
    *,
    now: datetime,
    group_by: str | None = "query",
    drivers: tuple[str, ...] = (),
    drivers_top: int | None = None,
) -> tuple[list[MetricsRow], dict[str, list[DriverCount]]]:
    """``metric_rows`` and ``drivers_by(..., drivers)`` (at most two groupings) from one statement over the
    alerts: the per-alert facts are the costly part, so they are found once for the counts, the delays
    and the drivers (three parts of a UNION ALL over the same ``facts``). The closed periods stored by
    alerts.metrics.closed are read from their cells and left out of that statement. ``drivers_top``: the
    drivers of a stored period may be cut to the keys ranked in its first ``drivers_top`` (ties kept),
    all that the trust warning reads."""
    with gc_paused():
        return _rows_and_drivers(site_ids, query, now, group_by, drivers, drivers_top)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a burst of rows is built: a year of asset x week rows is tens of
    thousands of lists and dicts, and each few hundred of them set off a collection that, every so often,
    walks every object of the process (~0.1-0.3 s, bench/metrics.py). The rows hold no cycles; whatever
    the burst leaves is collected as usual once it ends."""
    if not gc.isenabled():  # paused by a caller already
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _rows_and_drivers(
    site_ids: Collection[int],
    query: MetricsQuery,
    now: datetime,
    group_by: str | None,
    drivers: tuple[str, ...],
    drivers_top: int | None,
) -> tuple[list[MetricsRow], dict[str, list[DriverCount]]]:
    group = query.group_by if group_by == "query" else group_by
    if len(drivers) > 2:
        raise ValueError("at most two driver groupings")
    rows: dict[tuple[str, int | None], MetricsRow] = {}
    # Found again by the period start as the database returned it: one label per period, not per delay.
    by_moment: dict[tuple[Any, int | None], MetricsRow] = {}

    def labelled(label: str, key: int | None) -> MetricsRow:
        return rows.get((label, key)) or rows.setdefault((label, key), MetricsRow(period=label, key=key))

    def row(moment: Any, key: int | None) -> MetricsRow:
        found = by_moment.get((moment, key))
        if found is None:
            found = by_moment[(moment, key)] = labelled(period_label(to_moment(moment), query.period), key)
        return found

    closed = closed_part(site_ids, query, now=now, group=group, drivers=drivers, top=drivers_top)
    facts, params = facts_sql(
        site_ids,
        query,
        tuple(dict.fromkeys([*([group] if group else []), *drivers])),
        leave_out=closed.ranges,
    )
    # PostgreSQL types a UNION column from its first parts: a bare NULL there would be text, not an id.
    no_key = "CAST(NULL AS BIGINT)"
    key = f"k_{group}" if group else no_key
    by = f"p, k_{group}" if group else "p"
    blanks = ", ".join(["NULL"] * len(COUNTED))
    counted, counted_params = counts_sql(COUNTED, now)
    # Every part has the same columns: part, period, key, second key, reason, then the counts (COUNT(*) and
    # COUNTED) and a delay.
    # False alarms are split by reason in the counts' GROUP BY (other alerts: one group, reason null).
    # Percentiles are not portable SQL: the delays come back one number per acknowledged alert.
    parts = [
        f"SELECT 'c', p, {key}, {no_key},"
        f" CASE WHEN verdict = %s THEN COALESCE(verdict_reason, '') END AS fa_reason,"
        f" {counted}, NULL FROM facts GROUP BY {by}, fa_reason",
        f"SELECT 't', p, {key}, {no_key}, NULL, NULL, {blanks}, tta_us"
        f" FROM facts WHERE first_human_at IS NOT NULL",
    ]
    part_params = [Verdict.FALSE_ALARM, *counted_params]
    if drivers:
        keys = [f"k_{name}" for name in drivers]
        driver_counts_sql, driver_params = counts_sql(("dismissed", "ignored"), now)
        condition, condition_params = conditions(now)["dismissed_or_ignored"]
        parts.append(
            f"SELECT 'd', p, {keys[0]}, {keys[1] if len(keys) > 1 else no_key}, NULL, {driver_counts_sql},"
            f" {', '.join(['NULL'] * (len(COUNTED) - 2))}, NULL FROM facts WHERE {condition}"
            f" GROUP BY p, {', '.join(keys)}"
        )
        part_params += [*driver_params, *condition_params]
    summed: dict[str, dict[tuple[str, int], list[int]]] = {name: {} for name in drivers}
    delays: dict[tuple[Any, int | None], list[int]] = {}
    for values in fetch(f"{facts} {' UNION ALL '.join(parts)}", [*params, *part_params]):
        if values[0] == "t":  # most of the rows: kept lean
            delays.setdefault((values[1], values[2]), []).append(values[-1])
            continue
        part, moment, key_value, second_key, reason, n, *counts = values
        if part == "d":
            label = period_label(to_moment(moment), query.period)
            for name, driver_key in zip(drivers, (key_value, second_key)):
                pair = summed[name].setdefault((label, driver_key), [0, 0])
                pair[0] += counts[0]
                pair[1] += counts[1]
        else:
            target = row(moment, key_value)
            target.alerts += n
            for name, count in zip(COUNTED, counts):
                setattr(target, name, getattr(target, name) + count)
            if reason is not None:
                reasons = target.false_alarms_by_reason
                reasons[reason or "unknown"] = reasons.get(reason or "unknown", 0) + n
    for (moment, key_value), micros in delays.items():
        row(moment, key_value).tta_s.extend([max(0.0, us / 1_000_000) for us in micros])
    finished = _add_closed(closed, drivers, rows, summed)
    by_missed = {"p": trunc(query.period, "failure_at")}
    if group:
        by_missed["k"] = F(MISSED_KEYS[group])
    for values in missed_failures(site_ids, query).values(**by_missed).annotate(n=Count("pk")).order_by():
        row(values["p"], values.get("k")).missed = values["n"]
    labels = key_labels(group, {key for _, key in rows})
    for (_, key), target in rows.items():
        target.label = labels.get(key, NO_MODEL if group == "model_version" else ALL)
    return _finished(rows.values(), finished), _driver_rows(summed, query)


def _add_closed(
    closed: ClosedPart,
    drivers: tuple[str, ...],
    rows: dict[tuple[str, int | None], MetricsRow],
    summed: dict[str, dict[tuple[str, int], list[int]]],
) -> set[tuple[str, int | None]]:
    """Add the closed periods' sums (alerts.metrics.closed.closed_part) to the rows of their (period,
    key) and to the driver counts, as the live statement's parts add its alerts; return the keys of the
    rows made of them alone, finished already (a closed period has no live alert: the live count leaves
    its range out, so its rows are new, built by one positional call each)."""
    finished = set()
    for sums in closed.rows:
        row_key = (sums.label, sums.key)
        target = rows.get(row_key)
        if target is None:
            rows[row_key] = MetricsRow(
                sums.label, sums.key, "", sums.alerts, *sums.counts, 0, list(sums.delays), dict(sums.reasons)
            )
            finished.add(row_key)
            continue
        target.alerts += sums.alerts
        for name, count in zip(COUNTED, sums.counts):
            setattr(target, name, getattr(target, name) + count)
        for name, count in sums.reasons:
            target.false_alarms_by_reason[name] = target.false_alarms_by_reason.get(name, 0) + count
        target.tta_s.extend(sums.delays)
    for name, counts in zip(drivers, closed.drivers):
        for pair_key, (dismissed, ignored) in counts.items():
            pair = summed[name].setdefault(pair_key, [0, 0])
            pair[0] += dismissed
            pair[1] += ignored
    return finished


def _finished(
    rows: Iterable[MetricsRow], done: Collection[tuple[str, int | None]] = frozenset()
) -> list[MetricsRow]:
    """Reasons in their display order, delays sorted (but in the rows of ``done``, finished already);
    rows by period, label."""
    for target in rows:
        if (target.period, target.key) in done:
            continue
        target.false_alarms_by_reason = in_display_order(target.false_alarms_by_reason)
        # The same numbers in the same order whether counted live or read from closed periods' cells.
        target.tta_s.sort()
    return sorted(rows, key=lambda r: (r.period, r.label, r.key or 0))


# A row's counts as one tuple (read in C): alerts, COUNTED in order, missed.
_COUNTS = operator.attrgetter("alerts", *COUNTED, "missed")


def period_totals(rows: Iterable[MetricsRow]) -> list[MetricsRow]:
    """One row per period (key None, label "All") summed from the rows of any grouping: the same numbers
    as ``metric_rows(..., group_by=None)`` without counting the alerts again, because every alert and
    every missed failure has exactly one key (null included) in each grouping."""
    counts: dict[str, list[tuple[int, ...]]] = {}
    delays: dict[str, list[float]] = {}
    reasons: dict[str, dict[str, int]] = {}
    with gc_paused():
        for row in rows:
            period = row.period
            if period not in counts:
                counts[period], delays[period], reasons[period] = [], [], {}
            counts[period].append(_COUNTS(row))
            delays[period].extend(row.tta_s)
            if row.false_alarms_by_reason:
                by_reason = reasons[period]
                for reason, n in row.false_alarms_by_reason.items():
                    by_reason[reason] = by_reason.get(reason, 0) + n
        totals = [
            MetricsRow(period, None, ALL, *map(sum, zip(*summed)), delays[period], reasons[period])
            for period, summed in counts.items()
        ]
        return _finished(totals)


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
    facts, params = facts_sql(site_ids, query, groups)
    counted, counted_params = counts_sql(("dismissed", "ignored"), now)
    condition, condition_params = conditions(now)["dismissed_or_ignored"]
    keys = ", ".join(f"k_{group}" for group in groups)
    counts = fetch(
        f"{facts} SELECT p, {keys}, {counted} FROM facts WHERE {condition} GROUP BY p, {keys}",
        [*params, *counted_params, *condition_params],
    )
    summed: dict[str, dict[tuple[str, int], list[int]]] = {group: {} for group in groups}
    for moment, *values in counts:
        key_values, (_, dismissed, ignored) = values[: len(groups)], values[len(groups) :]
        label = period_label(to_moment(moment), query.period)
        for group, key in zip(groups, key_values):
            pair = summed[group].setdefault((label, key), [0, 0])
            pair[0] += dismissed
            pair[1] += ignored
    return _driver_rows(summed, query)


def _driver_rows(
    summed: dict[str, dict[tuple[str, int], list[int]]], query: MetricsQuery
) -> dict[str, list[DriverCount]]:
    result = {}
    for group, counts in summed.items():
        labels = key_labels(group, {key for _, key in counts})
        result[group] = [
            DriverCount(
                period=label,
                key=key,
                label=labels.get(key, str(key)),
                dismissed=dismissed,
                ignored=ignored,
            )
            for (label, key), (dismissed, ignored) in counts.items()
        ]
    return result
