"""Beat tasks of the readings storage: partitions created ahead, expired raw readings removed."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from plant import retention, storage


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def ensure_reading_partitions_task() -> list[str]:
    """Create the coming periods' partitions of plant_reading and move DEFAULT-partition rows into theirs
    (PostgreSQL; nothing to do on a plain table). Idempotent: returns the partitions it created."""
    if not storage.is_partitioned():
        return []
    return storage.ensure_ahead(timezone.now())


@shared_task(ignore_result=True, soft_time_limit=3000, time_limit=3300)
def apply_reading_retention_task() -> dict:
    """Remove raw readings past each site's retention, keeping alert evidence (plant.retention)."""
    report = retention.apply_retention()
    return {
        "dropped_partitions": report.dropped_partitions,
        "kept_evidence_rows": report.kept_evidence_rows,
        "deleted_rows": report.deleted_rows,
    }
