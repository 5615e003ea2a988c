"""Closed metrics periods, pre-aggregated: the per-alert facts of every month and ISO week that ended more
than ``VIGIL_FOLLOW_THROUGH_HOURS`` ago, summed per (asset, model version, false-alarm reason) into
MetricsCell rows, so a metrics row of a closed period is a sum of a few cells instead of a pass over every
alert, event and verdict (bench/metrics.py: the facts statement over 100,000 alerts takes ~0.5 s on
PostgreSQL whatever the grouping, a whole-table aggregation no index shortens).

The numbers are the live ones: the cells count the same facts statement (``alerts.metrics.facts``) with
the same conditions, and ``alerts.metrics.rows`` adds them to the live count of the alerts outside the
stored periods. A stored period is only read when nothing in it can change without a write:

* every alert in it is past its follow-through window (``due``), as of the moment it was counted at
  (``computed_for``; ``due`` only ever becomes true, so the counts hold for any later moment); a period
  with an alert not yet due (shown long after it opened) is left to the live count;
* a save or delete of an alert, or of an event or feedback of one (a late verdict, a correction, an undo),
  whose opening falls in a stored period marks that period dirty (``invalidate``); dirty periods are
  counted again on the next read or by the beat task (``refresh_closed_periods_task``);
* the time zone and the follow-through window it was counted with are today's (``settings_key``).

Missed failures are not stored: they are few and counted live for every period.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Min, Q, QuerySet
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from alerts.choices import Verdict
from alerts.metrics.facts import COUNTED, alert_facts_sql, conditions, counts_sql, fetch, in_display_order
from alerts.metrics.facts import moment as to_moment
from alerts.metrics.params import PERIODS, MetricsQuery, period_bounds, period_label
from alerts.metrics.queries import follow_through_window, trunc
from alerts.models import Alert, AlertEvent, Feedback, MetricsCell, MetricsPeriod
from plant.models import Asset

# Below this many periods to count, only their own events and verdicts are read (a late verdict's period);
# above it one pass over both tables is cheaper (the first fill of a year's history).
FEW_PERIODS = 4
# The counts of a stored cell, summed per key by ``closed_part``.
CELL_COUNTS = ("alerts", *COUNTED)
# Closed parts read and parsed by this process, by what they were read from (``_cache_key``): the most
# recent few (an asset x week part of a year is ~10,000 rows with their delays, a few MiB).
CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], ClosedPart] = OrderedDict()
_cache_lock = threading.Lock()  # web requests run on several threads (VIGIL_HTTP_THREADS)
# Bumped by every ``refresh`` of this process: a key read before it is never reused after it, even when a
# rolled-back transaction left the periods' rows as they were (pk, generation and computed_for repeat).
_refreshes = itertools.count()
_refreshed = 0


def settings_key() -> str:
    """What the stored counts depend on besides the rows: the periods' time zone and the window."""
    return f"{settings.TIME_ZONE}|{settings.VIGIL_FOLLOW_THROUGH_HOURS}"


def horizon(now: datetime) -> datetime:
    """Periods ending at or before this are closed (as of ``now`` and of the clock, whichever is earlier:
    a question asked for a later moment does not store periods that are still open today)."""
    return min(now, timezone.now()) - follow_through_window()


def labels_between(kind: str, start: datetime, end: datetime) -> list[str]:
    """The periods of ``kind`` from the one holding ``start`` to the last that ends at or before ``end``."""
    labels = []
    label = period_label(start, kind)
    while True:
        _, period_end = period_bounds(label)
        if period_end > end:
            return labels
        labels.append(label)
        label = period_label(period_end, kind)


def spans(labels: Iterable[str]) -> list[tuple[datetime, datetime]]:
    """The periods' [start, end) ranges, adjacent ones merged (a year of stored weeks is one range)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(period_bounds(label) for label in labels):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def opened_in(ranges: list[tuple[datetime, datetime]]) -> Q:
    """Alerts opened in any of ``ranges``."""
    condition = Q(pk__in=[])
    for start, end in ranges:
        condition |= Q(opened_at__gte=start, opened_at__lt=end)
    return condition


def refresh(kind: str, labels: Collection[str], now: datetime) -> list[str]:
    """Count the facts of the closed periods ``labels`` of ``kind`` as of ``now`` and store them; the
    labels stored (a period with an alert not yet due, or touched while it was counted, is not)."""
    if not labels:
        return []
    global _refreshed
    _refreshed = next(_refreshes) + 1
    MetricsPeriod.objects.bulk_create(
        [MetricsPeriod(kind=kind, label=label) for label in labels], ignore_conflicts=True
    )
    # Read before the facts: an invalidation after this bumps the generation and the period stays dirty.
    periods = {period.label: period for period in MetricsPeriod.objects.filter(kind=kind, label__in=labels)}
    alerts = Alert.objects.filter(is_shadow=False).filter(opened_in(spans(labels)))
    facts, params = alert_facts_sql(
        alerts,
        few=len(labels) < FEW_PERIODS,
        p=trunc(kind, "opened_at"),
        k_asset=F("asset_id"),
        k_model_version=F("model_version_id"),
    )
    counted, counted_params = counts_sql(COUNTED, now)
    due, due_params = conditions(now)["due"]
    reason = "CASE WHEN verdict = %s THEN COALESCE(verdict_reason, '') END"
    blanks = ", ".join(["NULL"] * (len(COUNTED) + 2))
    sql = (
        f"{facts} SELECT 'c', p, k_asset, k_model_version, {reason} AS fa_reason, {counted},"
        f" COUNT(CASE WHEN NOT {due} THEN 1 END), NULL FROM facts"
        f" GROUP BY p, k_asset, k_model_version, fa_reason"
        f" UNION ALL SELECT 't', p, k_asset, k_model_version, {reason}, {blanks}, tta_us"
        f" FROM facts WHERE first_human_at IS NOT NULL"
    )
    sql_params = [*params, Verdict.FALSE_ALARM, *counted_params, *due_params, Verdict.FALSE_ALARM]
    cells: dict[tuple[str, int, int], MetricsCell] = {}
    not_due: dict[str, int] = {}
    delays: dict[tuple[str, int, int], list[str]] = {}
    reasons: dict[tuple[str, int, int], dict[str, int]] = {}
    labels_of: dict[Any, str] = {}
    for part, moment, asset, version, fa_reason, n, *values in fetch(sql, sql_params):
        label = labels_of.get(moment) or labels_of.setdefault(moment, period_label(to_moment(moment), kind))
        cell_key = (label, asset, version)
        cell = cells.get(cell_key)
        if cell is None:
            cell = cells[cell_key] = MetricsCell(asset_id=asset, model_version_id=version)
        if part == "t":
            delays.setdefault(cell_key, []).append(str(int(values[-1])))
            continue
        cell.alerts += n
        for name, count in zip(COUNTED, values):
            setattr(cell, name, getattr(cell, name) + count)
        if fa_reason is not None:
            by_reason = reasons.setdefault(cell_key, {})
            by_reason[fa_reason or "unknown"] = by_reason.get(fa_reason or "unknown", 0) + n
        not_due[label] = not_due.get(label, 0) + values[len(COUNTED)]
    stored = []
    with transaction.atomic():
        for label in labels:
            period = periods[label]
            if not_due.get(label):
                continue
            changed = MetricsPeriod.objects.filter(pk=period.pk, generation=period.generation).update(
                dirty=False, computed_for=now, settings_key=settings_key()
            )
            if changed:
                stored.append(label)
        MetricsCell.objects.filter(period__kind=kind, period__label__in=stored).delete()
        kept = set(stored)
        rows = []
        for cell_key, cell in cells.items():
            if cell_key[0] in kept:
                cell.period = periods[cell_key[0]]
                cell.tta_us = ",".join(delays.get(cell_key, ()))
                cell.false_alarm_reasons = ",".join(
                    f"{reason}:{count}" for reason, count in reasons.get(cell_key, {}).items()
                )
                rows.append(cell)
        MetricsCell.objects.bulk_create(rows, batch_size=2000)
    return stored


def refresh_closed_periods(now: datetime | None = None) -> dict[str, int]:
    """Store every closed period not stored yet, dirty or counted under other settings (the beat task):
    how many periods of each kind were counted."""
    now = now or timezone.now()
    first = Alert.objects.filter(is_shadow=False).aggregate(first=Min("opened_at"))["first"]
    done = {}
    for kind in PERIODS:
        labels = labels_between(kind, first, horizon(now)) if first else []
        key = settings_key()
        valid = {
            period.label
            for period in MetricsPeriod.objects.filter(kind=kind, label__in=labels)
            if _fresh(period, now, key)
        }
        done[kind] = len(refresh(kind, [label for label in labels if label not in valid], now))
    return done


def _fresh(period: MetricsPeriod, now: datetime, key: str) -> bool:
    """Its stored counts are today's for ``now``: clean, counted with these settings, at or before ``now``."""
    return not period.dirty and period.settings_key == key and period.computed_for <= now


@dataclass(frozen=True)
class ClosedRow:
    """The sums of one (period, key) of the stored periods: alerts, the COUNTED counts in their order, the
    false alarms by reason in their display order and the delays to acknowledge in seconds, sorted (a
    finished row's order: alerts.metrics.rows)."""

    label: str
    key: int | None
    alerts: int
    counts: tuple[int, ...]
    reasons: tuple[tuple[str, int], ...]
    delays: tuple[float, ...]


@dataclass
class ClosedPart:
    """The stored periods a query reads (``ranges``, to leave out of the live count), the sums of their
    cells per (period, key) (``rows``) and per driver grouping the dismissed and ignored alerts of a
    (period, key) (``drivers``: one dict per grouping, (label, key) → (dismissed, ignored)). Immutable once
    built: a cached part is shared by every request of this process that asks the same."""

    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)
    rows: list[ClosedRow] = field(default_factory=list)
    drivers: list[dict[tuple[str, int], tuple[int, int]]] = field(default_factory=list)


# The cells' columns each grouping reads (the site and asset type through the asset, as they are today).
CELL_KEYS = {
    "site": "site_id",
    "asset": "asset_id",
    "asset_type": "asset_type_id",
    "model_version": "model_version_id",
}


def closed_part(
    site_ids: Collection[int],
    query: MetricsQuery,
    *,
    now: datetime,
    group: str | None,
    drivers: tuple[str, ...] = (),
    top: int | None = None,
) -> ClosedPart:
    """The closed periods of the query's kind wholly inside its range, with their cells on the sites
    summed per key of ``group`` (None: one key, null) and of each of ``drivers`` (with ``top``: only the
    keys that can be among the first ``top`` of a period, all the trust warning names); dirty ones are counted
    again first. Periods never stored (the beat task has not run since they closed) are left to the live
    count."""
    limit = horizon(now)
    since, until = query.since(), query.until()
    usable, stale = [], []
    key = settings_key()
    read: list[tuple[Any, ...]] = []
    for period in MetricsPeriod.objects.filter(kind=query.period).order_by("label"):
        start, end = period_bounds(period.label)
        if end > limit or (since and start < since) or (until and end > until):
            continue
        if _fresh(period, now, key):
            usable.append(period.label)
            read.append((period.pk, period.label, period.generation, period.computed_for))
        else:
            stale.append(period.label)
    usable += refresh(query.period, stale, now)
    if not usable:
        return ClosedPart()
    sites = [pk for pk in site_ids if not query.site or pk == query.site.pk]
    if not sites:  # nobody's alerts: nothing to sum (and no empty IN () for the database)
        return ClosedPart(ranges=spans(usable), drivers=[{} for _ in drivers])
    cache_key = None
    if not stale:  # just counted: their new marks are not in ``read`` (the next request caches them)
        cache_key = _cache_key(read, sites, group, drivers, top)
        with _cache_lock:
            cached = _cache.get(cache_key)
            if cached is not None:
                _cache.move_to_end(cache_key)
                return cached
    part = _read_closed(usable, sites, query.period, group, drivers, top)
    if cache_key is not None:
        with _cache_lock:
            _cache[cache_key] = part
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return part


def _cache_key(
    read: list[tuple[Any, ...]],
    sites: list[int],
    group: str | None,
    drivers: tuple[str, ...],
    top: int | None,
) -> tuple[Any, ...]:
    """What a closed part is read from: the periods as stored (a late verdict bumps ``generation``, a
    recount sets ``computed_for``; each count replaces the period's cells in the transaction that sets
    them), the sites, which site and type each of their assets is in today (the cells are summed through
    the asset), the grouping, the settings, the database and this process's refreshes."""
    assets = tuple(
        Asset.objects.filter(site_id__in=sites).order_by("pk").values_list("pk", "site_id", "asset_type_id")
    )
    return (
        connection.settings_dict["NAME"],
        _refreshed,
        settings_key(),
        tuple(read),
        tuple(sites),
        assets,
        group,
        drivers,
        top,
    )


def clear_cache() -> None:
    """Forget the closed parts this process has read."""
    with _cache_lock:
        _cache.clear()


def _read_closed(
    usable: list[str],
    sites: list[int],
    kind: str,
    group: str | None,
    drivers: tuple[str, ...],
    top: int | None,
) -> ClosedPart:
    """Sum the cells of the periods ``usable`` on ``sites`` in the database (one statement) and parse the
    sums once: the false alarms by reason and the delays come back as text (portable SQL)."""
    # The cells of the query read once (a CTE), then summed per key by each part.
    selected = (
        f"WITH sel AS (SELECT mp.label, a.site_id, c.asset_id, a.asset_type_id, c.model_version_id,"
        f" c.false_alarm_reasons, {', '.join(f'c.{name}' for name in CELL_COUNTS)}, c.tta_us"
        f" FROM {MetricsCell._meta.db_table} c"
        f" JOIN {MetricsPeriod._meta.db_table} mp ON mp.id = c.period_id"
        f" JOIN {Asset._meta.db_table} a ON a.id = c.asset_id"
        f" WHERE mp.kind = %s AND mp.dirty = %s AND mp.label IN ({', '.join(['%s'] * len(usable))})"
        f" AND a.site_id IN ({', '.join(['%s'] * len(sites))}))"
    )
    params = [kind, False, *usable, *sites]
    concat = "group_concat" if connection.vendor == "sqlite" else "string_agg"
    # PostgreSQL types a UNION column from its first part: the key must not be a bare NULL there.
    group_key = CELL_KEYS[group] if group else "CAST(NULL AS BIGINT)"
    sums = ", ".join(f"SUM({name})" for name in CELL_COUNTS)
    blanks = ", ".join(["NULL"] * (len(COUNTED) - 2))
    parts = [
        f"SELECT 'c', label, {group_key}, {concat}(NULLIF(false_alarm_reasons, ''), ','), {sums},"
        f" {concat}(NULLIF(tta_us, ''), ',') FROM sel GROUP BY label, {group_key}"
    ]
    dismissed = "SUM(false_alarms + not_actionable)"
    for index, name in enumerate(drivers):
        # The live statement counts only dismissed or ignored alerts: no pair of zeros. With ``top``, only
        # the keys ranked in the first ``top`` of their period by that count (ties kept: RANK).
        ranked = (
            f"SELECT label, {CELL_KEYS[name]} AS k, {dismissed} AS d, SUM(ignored) AS i,"
            f" RANK() OVER (PARTITION BY label ORDER BY {dismissed} + SUM(ignored) DESC) AS rk"
            f" FROM sel GROUP BY label, {CELL_KEYS[name]} HAVING {dismissed} > 0 OR SUM(ignored) > 0"
        )
        parts.append(
            f"SELECT 'd{index}', label, k, NULL, NULL, d, i, {blanks}, NULL FROM ({ranked}) r{index}"
            + (f" WHERE rk <= {int(top)}" if top else "")
        )
    part = ClosedPart(ranges=spans(usable), drivers=[{} for _ in drivers])
    for kind_of_row, label, key, reason, n, *counts, micros in fetch(
        f"{selected} {' UNION ALL '.join(parts)}", params
    ):
        if kind_of_row != "c":
            part.drivers[int(kind_of_row[1:])][(label, key)] = (counts[0], counts[1])
            continue
        by_reason: dict[str, int] = {}
        if reason:  # "reason:count" of each cell, a reason repeated once per cell
            for item in reason.split(","):
                name, count = item.rsplit(":", 1)
                by_reason[name] = by_reason.get(name, 0) + int(count)
        delays = sorted([max(0.0, int(us) / 1_000_000) for us in micros.split(",")]) if micros else []
        reasons = tuple(in_display_order(by_reason).items())
        part.rows.append(ClosedRow(label, key, n, tuple(counts), reasons, tuple(delays)))
    return part


# --- invalidation ------------------------------------------------------------------------------------------


def invalidate(opened_at: datetime) -> None:
    """Mark the stored periods holding an alert opened at ``opened_at`` dirty (one UPDATE, none while no
    closed period can hold it: the alerts an operator answers today are in open periods)."""
    labels = {kind: period_label(opened_at, kind) for kind in PERIODS}
    if min(period_bounds(label)[1] for label in labels.values()) > timezone.now() - follow_through_window():
        return
    condition = Q(pk__in=[])
    for kind, label in labels.items():
        condition |= Q(kind=kind, label=label)
    MetricsPeriod.objects.filter(condition).update(dirty=True, generation=F("generation") + 1)


def _alert_changed(sender: type, instance: Alert, **kwargs: Any) -> None:
    if instance.opened_at is not None:
        invalidate(instance.opened_at)


def _child_changed(sender: type, instance: AlertEvent | Feedback, **kwargs: Any) -> None:
    if instance.alert_id is None:  # a missed failure: counted live
        return
    origin = kwargs.get("origin")
    if origin is not None:
        # Deleted along with its alert (or its asset): the alert's own post_delete marks the period.
        origin_model = origin.model if isinstance(origin, QuerySet) else type(origin)
        if origin_model is not sender:
            return
    if type(instance).alert.is_cached(instance):
        opened_at = instance.alert.opened_at
    else:
        opened_at = Alert.objects.filter(pk=instance.alert_id).values_list("opened_at", flat=True).first()
    if opened_at is not None:
        invalidate(opened_at)


def connect_invalidation() -> None:
    """Hear of every change to the facts' rows (AlertsConfig.ready)."""
    for signal, name in ((post_save, "save"), (post_delete, "delete")):
        signal.connect(_alert_changed, sender=Alert, dispatch_uid=f"metrics-closed-alert-{name}")
        for model in (AlertEvent, Feedback):
            signal.connect(
                _child_changed, sender=model, dispatch_uid=f"metrics-closed-{model.__name__}-{name}"
            )
