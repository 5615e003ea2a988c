"""Raw-reading retention: each site's readings older than its retention are removed, alert evidence kept.

A site's retention is `Site.reading_retention_days`, else VIGIL_READING_RETENTION_DAYS, else none (kept
forever). Labels, alerts and explanations are never touched (only readings are removed), and the readings
inside every alert's evidence window — the span its detail page charts (alerts.charts.chart_range), handed in
by the alerts app with `provide_evidence_windows` since plant may not import it — are kept, so an old alert
still shows what it was raised on.

* PostgreSQL with a partitioned table: a range partition whose end is older than every site's cutoff is
  dropped whole. When alert evidence lies in it, the evidence rows are first copied into a fresh table that
  replaces it over the same range (all partitions in one short transaction), so they stay in
  `plant_reading` where every chart reads them; the kept partition holds only them and is marked so (a
  table comment) that later runs leave it alone.
* Everything else (a site with a longer retention than another's, the DEFAULT partition, SQLite): batched
  deletes of the site's expired rows outside the evidence windows, one commit per batch, so ingest never waits
  on a long transaction. On PostgreSQL these stop at the start of the partition holding the cutoff: a
  partition's rows go together (readings are kept up to one partition length past the retention).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from plant import rollups, storage
from plant.models import Asset, Reading, Sensor, Site

# windows(before): (asset id, start, end) of every alert evidence window starting before `before`.
EvidenceWindows = Callable[[datetime], Iterable[tuple[int, datetime, datetime]]]

_provider: EvidenceWindows | None = None


def provide_evidence_windows(provider: EvidenceWindows) -> None:
    """Register where the evidence windows to keep come from (once, from the alerts AppConfig)."""
    global _provider
    _provider = provider


def evidence_windows(before: datetime) -> dict[int, list[tuple[datetime, datetime]]]:
    """Each asset's evidence windows starting before `before`, merged where they overlap."""
    if _provider is None:
        # Removing readings without knowing which ones are evidence could empty an alert's chart for good.
        raise ImproperlyConfigured(
            "no evidence-window provider registered (plant.retention.provide_evidence_windows): "
            "is the alerts app installed?"
        )
    by_asset: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for asset_id, start, end in sorted(_provider(before), key=lambda w: (w[0], w[1])):
        spans = by_asset[asset_id]
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return dict(by_asset)


@dataclass
class RetentionReport:
    """What one retention run removed."""

    dropped_partitions: list[str] = field(default_factory=list)
    kept_evidence_rows: int = 0
    deleted_rows: int = 0
    # How long the partition swap waited for the ingest transactions in flight, then held ingest off.
    lock_wait_s: float = 0.0
    locked_s: float = 0.0
    # The whole run, of which freeing the detached partitions' files (DROP: no lock ingest needs) and the
    # rest (until the expired partitions are out of the table, evidence kept, rollups checked).
    seconds: float = 0.0
    drop_s: float = 0.0
    detached_s: float = 0.0


def site_cutoffs(now: datetime) -> dict[int, datetime | None]:
    """Each site with assets: the time before which its raw readings expire (None: kept forever)."""
    cutoffs = {}
    for site in Site.objects.filter(assets__isnull=False).distinct():
        days = site.effective_reading_retention_days()
        cutoffs[site.pk] = now - timedelta(days=days) if days is not None else None
    return cutoffs


def apply_retention(now: datetime | None = None, batch: int = 10_000) -> RetentionReport:
    """Remove every site's expired raw readings, keeping alert evidence (see the module docstring)."""
    started = time.perf_counter()
    now = now or timezone.now()
    cutoffs = site_cutoffs(now)
    report = RetentionReport()
    expiring = [c for c in cutoffs.values() if c is not None]
    if not expiring:
        return report
    partitioned = storage.is_partitioned()
    parts = storage.partitions() if partitioned else []
    evidence = evidence_windows(max(expiring))
    if partitioned and None not in cutoffs.values():
        _drop_partitions(min(expiring), parts, evidence, report)
        parts = storage.partitions()
    report.detached_s = time.perf_counter() - started - report.drop_s
    for site_id, cutoff in cutoffs.items():
        if cutoff is not None:
            bound = _whole_partitions_bound(cutoff, parts)
            # Rollups are computed from raw readings: the buckets of what may go are brought up to date
            # first (only those: one index look-up when the beat task keeps them current), so the
            # minute/hour aggregates, kept longer than raw data, never miss what retention removes.
            rollups.roll_up_before(bound)
            report.deleted_rows += _delete_expired(site_id, bound, evidence, batch)
    report.seconds = time.perf_counter() - started
    return report


def _whole_partitions_bound(cutoff: datetime, parts: list[storage.Partition]) -> datetime:
    """On PostgreSQL readings go a whole partition at a time: the rows of the partition holding the
    cutoff stay until it has expired entirely (at most VIGIL_READING_PARTITION_DAYS more), so that the
    drop, not millions of row deletes, removes them."""
    for part in parts:
        if part.start <= cutoff < part.end:
            return part.start
    return cutoff


EVIDENCE_ONLY = "vigil: alert evidence only"


def _drop_partitions(
    cutoff: datetime,
    parts: list[storage.Partition],
    evidence: dict[int, list[tuple[datetime, datetime]]],
    report: RetentionReport,
) -> None:
    table = storage.table_name()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Partitions already reduced to their evidence (a comment says so) have nothing left to remove;
        # `_expired` tables left by a run killed before its drop are dropped with this run's.
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s) AND obj_description(c.oid, 'pg_class') = %s"
            " UNION ALL SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition"
            " AND relname LIKE %s",
            [table, EVIDENCE_ONLY, table.replace("_", r"\_") + r"\_p%\_expired"],
        )
        found = [row[0] for row in cursor.fetchall()]
    leftovers = [name for name in found if name.endswith("_expired")]
    expired = [p for p in parts if p.end <= cutoff and p.name not in found]
    if expired:
        _detach_expired(table, expired, evidence, report)
        leftovers += [f"{part.name}_expired" for part in expired]
    if leftovers:
        # Dropped once detached: freeing the partitions' files (most of the run's time) then holds no lock
        # ingest needs. One statement: one commit, one pass over shared buffers for all of them.
        dropping = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {', '.join(qn(name) for name in leftovers)}")
        report.drop_s = time.perf_counter() - dropping


def _literal(moment: datetime) -> str:
    """A partition bound as a SQL literal (ours, never user input): DDL takes no parameters."""
    return f"'{moment.isoformat()}'::timestamptz"


def _detach_expired(
    table: str,
    expired: list[storage.Partition],
    evidence: dict[int, list[tuple[datetime, datetime]]],
    report: RetentionReport,
) -> None:
    """Swap the expired partitions out of the table in one transaction and four statements whatever their
    number: their evidence copied into fresh tables (one statement), the expired ones detached and the
    evidence-only ones attached in their place (one batch of DDL)."""
    qn = connection.ops.quote_name
    first, last = expired[0].start, max(part.end for part in expired)
    kept: dict[str, storage.Partition] = {}
    for part in expired:
        if any(start < part.end and end >= part.start for spans in evidence.values() for start, end in spans):
            kept[f"{part.name}_kept"] = part
    windows = [
        (asset_id, max(start, first), min(end, last))
        for asset_id, spans in evidence.items()
        for start, end in spans
        if start < last and end >= first
    ]
    # The parent locked first (the order ingest takes its locks in, so no deadlock): the lock waits once
    # for the ingest transactions in flight, then holds off new ones only while the rollups are checked,
    # the evidence is copied and the partitions are swapped (catalog changes).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [storage._LOCK_KEY])
        waiting = time.perf_counter()
        cursor.execute(f"LOCK TABLE {qn(table)} IN ACCESS EXCLUSIVE MODE")
        locked = time.perf_counter()
        report.lock_wait_s = locked - waiting
        # No writer is left: every reading of the expired partitions is visible. Their buckets not yet
        # rolled up for good are recomputed now (one index look-up when the rollups are current).
        rollups.roll_up_before(last)
        if kept:
            cursor.execute(
                "; ".join(
                    f"CREATE TABLE {qn(name)} (LIKE {qn(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                    for name in kept
                )
            )
            inserts = [
                f"i{n} AS (INSERT INTO {qn(name)} SELECT * FROM ev WHERE ts >= {_literal(part.start)}"
                f" AND ts < {_literal(part.end)} RETURNING 1)"
                for n, (name, part) in enumerate(kept.items())
            ]
            cursor.execute(
                "WITH w AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[])"
                " AS w(asset_id, t0, t1)),"
                f" ev AS (SELECT r.* FROM w JOIN {qn(Sensor._meta.db_table)} s ON s.asset_id = w.asset_id"
                # LATERAL (+ OFFSET 0) keeps ts in the index condition: a plain join read every row of
                # each sensor in the partitions and filtered them (50x slower). The constant bounds let
                # the planner keep only the expired partitions.
                f" CROSS JOIN LATERAL (SELECT * FROM {qn(table)} x WHERE x.sensor_id = s.id"
                f" AND x.ts >= w.t0 AND x.ts <= w.t1 AND x.ts >= {_literal(first)} AND x.ts < {_literal(last)}"
                f" OFFSET 0) r), {', '.join(inserts)}"
                f" SELECT {' + '.join(f'(SELECT COUNT(*) FROM i{n})' for n in range(len(inserts)))}",
                [[w[0] for w in windows], [w[1] for w in windows], [w[2] for w in windows]],
            )
            report.kept_evidence_rows += int(cursor.fetchone()[0])
        swaps = []
        comment = EVIDENCE_ONLY.replace("'", "''")
        for part in expired:
            swaps += [
                f"ALTER TABLE {qn(table)} DETACH PARTITION {qn(part.name)}",
                f"ALTER TABLE {qn(part.name)} RENAME TO {qn(part.name + '_expired')}",
            ]
            report.dropped_partitions.append(part.name)
        for name, part in kept.items():
            swaps += [
                f"ALTER TABLE {qn(name)} RENAME TO {qn(part.name)}",
                f"COMMENT ON TABLE {qn(part.name)} IS '{comment}'",
                f"ALTER TABLE {qn(table)} ATTACH PARTITION {qn(part.name)}"
                f" FOR VALUES FROM ({_literal(part.start)}) TO ({_literal(part.end)})",
            ]
        cursor.execute("; ".join(swaps))
    report.locked_s = time.perf_counter() - locked


# Evidence windows excluded by one selection at most: each is a term of one OR, and SQLite parses an OR of
# n terms n deep (SQLITE_MAX_EXPR_DEPTH is 1,000).
WINDOWS_PER_SELECTION = 200


def _delete_expired(
    site_id: int, cutoff: datetime, evidence: dict[int, list[tuple[datetime, datetime]]], batch: int
) -> int:
    """Batched deletes of the site's readings older than `cutoff` outside the evidence windows: one
    selection for the site's assets when their windows are few (one query when nothing has expired, as on
    PostgreSQL after the drops), else one per group of assets holding up to WINDOWS_PER_SELECTION."""
    expired = Reading.objects.filter(ts__lt=cutoff)
    site_assets = set(Asset.objects.filter(site_id=site_id).values_list("pk", flat=True))
    groups: list[list[int]] = [[]]
    size = 0
    for asset_id in sorted(asset_id for asset_id in evidence if asset_id in site_assets):
        if groups[-1] and size + len(evidence[asset_id]) > WINDOWS_PER_SELECTION:
            groups.append([])
            size = 0
        groups[-1].append(asset_id)
        size += len(evidence[asset_id])
    selections = []
    for index, group in enumerate(groups):
        keep = Q()
        for asset_id in group:
            for start, end in evidence[asset_id]:
                keep |= Q(sensor__asset_id=asset_id, ts__gte=start, ts__lte=end)
        # The first selection also takes the site's assets without evidence.
        rows = (
            expired.filter(sensor__asset__site_id=site_id).exclude(
                sensor__asset_id__in=[a for g in groups[1:] for a in g]
            )
            if index == 0
            else expired.filter(sensor__asset_id__in=group)
        )
        selections.append(rows.exclude(keep) if group else rows)
    deleted = 0
    for selection in selections:
        while True:
            ids = list(selection.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                break
            # ts__lt prunes the partitions a delete by id has to look in.
            count, _ = Reading.objects.filter(pk__in=ids, ts__lt=cutoff).delete()
            deleted += count
            if len(ids) < batch:
                break
    return deleted
