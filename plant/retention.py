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


def site_cutoffs(now: datetime) -> dict[int, datetime | None]:
    """Each site with assets: the time before which its raw readings expire (None: kept forever)."""
    cutoffs = {}
    for site in Site.objects.filter(assets__isnull=False).distinct():
        days = site.effective_reading_retention_days()
        cutoffs[site.pk] = now - timedelta(days=days) if days is not None else None
    return cutoffs


def apply_retention(now: datetime | None = None, batch: int = 10_000) -> RetentionReport:
    """Remove every site's expired raw readings, keeping alert evidence (see the module docstring)."""
    now = now or timezone.now()
    cutoffs = site_cutoffs(now)
    report = RetentionReport()
    expiring = [c for c in cutoffs.values() if c is not None]
    if not expiring:
        return report
    # Rollups are computed from raw readings: bring them up to date before any reading goes, so the
    # minute/hour aggregates (kept longer than raw data) never miss what retention removes.
    rollups.roll_up_readings()
    evidence = evidence_windows(max(expiring))
    partitioned = storage.is_partitioned()
    if partitioned and None not in cutoffs.values():
        _drop_partitions(min(expiring), evidence, report)
    parts = storage.partitions() if partitioned else []
    for site_id, cutoff in cutoffs.items():
        if cutoff is not None:
            bound = _whole_partitions_bound(cutoff, parts)
            report.deleted_rows += _delete_expired(site_id, bound, evidence, batch)
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
    cutoff: datetime, evidence: dict[int, list[tuple[datetime, datetime]]], report: RetentionReport
) -> None:
    table = storage.table_name()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Partitions already reduced to their evidence (a comment says so) have nothing left to remove.
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s) AND obj_description(c.oid, 'pg_class') = %s",
            [table, EVIDENCE_ONLY],
        )
        done = {row[0] for row in cursor.fetchall()}
    expired = [p for p in storage.partitions(table) if p.end <= cutoff and p.name not in done]
    if expired:
        _detach_expired(table, expired, evidence, report)
    # Dropped once detached: freeing the partitions' files (most of the run's time) then holds no lock
    # ingest needs. A run killed in between leaves `_expired` tables the next one drops.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname LIKE %s",
            [table.replace("_", r"\_") + r"\_p%\_expired"],
        )
        leftovers = [row[0] for row in cursor.fetchall()]
    if leftovers:
        # One statement: one commit, and one pass over shared buffers for all of them.
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {', '.join(qn(name) for name in leftovers)}")


def _detach_expired(
    table: str,
    expired: list[storage.Partition],
    evidence: dict[int, list[tuple[datetime, datetime]]],
    report: RetentionReport,
) -> None:
    qn = connection.ops.quote_name
    # One transaction, the parent locked first (the order ingest takes its locks in, so no deadlock): the
    # lock waits once for the ingest transactions in flight, then holds off new ones only while the
    # evidence is copied and the partitions are swapped — catalog changes.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [storage._LOCK_KEY])
        waiting = time.perf_counter()
        cursor.execute(f"LOCK TABLE {qn(table)} IN ACCESS EXCLUSIVE MODE")
        locked = time.perf_counter()
        report.lock_wait_s = locked - waiting
        for part in expired:
            inside = [
                (asset_id, max(start, part.start), end)
                for asset_id, spans in evidence.items()
                for start, end in spans
                if start < part.end and end >= part.start
            ]
            if inside:
                kept = f"{part.name}_kept"
                cursor.execute(
                    f"CREATE TABLE {qn(kept)} (LIKE {qn(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
                cursor.execute(
                    f"INSERT INTO {qn(kept)} SELECT r.* FROM unnest(%s::bigint[], %s::timestamptz[],"
                    " %s::timestamptz[]) AS w(asset_id, t0, t1)"
                    f" JOIN {qn(Sensor._meta.db_table)} s ON s.asset_id = w.asset_id"
                    # LATERAL (+ OFFSET 0) keeps ts in the index condition: a plain join read every row
                    # of each sensor in the partition and filtered them (50× slower).
                    f" CROSS JOIN LATERAL (SELECT * FROM {qn(part.name)} x WHERE x.sensor_id = s.id"
                    " AND x.ts >= w.t0 AND x.ts <= w.t1 OFFSET 0) r",
                    [[w[0] for w in inside], [w[1] for w in inside], [w[2] for w in inside]],
                )
                report.kept_evidence_rows += cursor.rowcount
            cursor.execute(f"ALTER TABLE {qn(table)} DETACH PARTITION {qn(part.name)}")
            cursor.execute(f"ALTER TABLE {qn(part.name)} RENAME TO {qn(part.name + '_expired')}")
            if inside:
                cursor.execute(f"ALTER TABLE {qn(kept)} RENAME TO {qn(part.name)}")
                cursor.execute(f"COMMENT ON TABLE {qn(part.name)} IS %s", [EVIDENCE_ONLY])
                cursor.execute(
                    f"ALTER TABLE {qn(table)} ATTACH PARTITION {qn(part.name)} FOR VALUES FROM (%s) TO (%s)",
                    [part.start, part.end],
                )
            report.dropped_partitions.append(part.name)
    report.locked_s = time.perf_counter() - locked


def _delete_expired(
    site_id: int, cutoff: datetime, evidence: dict[int, list[tuple[datetime, datetime]]], batch: int
) -> int:
    """Batched deletes of the site's readings older than `cutoff` outside the evidence windows."""
    expired = Reading.objects.filter(ts__lt=cutoff)
    site_assets = set(Asset.objects.filter(site_id=site_id).values_list("pk", flat=True))
    with_evidence = [asset_id for asset_id in evidence if asset_id in site_assets]
    selections = [expired.filter(sensor__asset__site_id=site_id).exclude(sensor__asset_id__in=with_evidence)]
    for asset_id in with_evidence:
        keep = Q()
        for start, end in evidence[asset_id]:
            keep |= Q(ts__gte=start, ts__lte=end)
        selections.append(expired.filter(sensor__asset_id=asset_id).exclude(keep))
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
