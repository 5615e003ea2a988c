"""Beat tasks of the readings storage: rollups kept up to date, partitions created ahead, expired raw
readings removed."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task
from django.utils import timezone

from plant import retention, rollups, storage


@shared_task(ignore_result=True, soft_time_limit=1800, time_limit=1900, acks_late=True)
def roll_up_readings_task() -> dict:
    """Roll up the readings written since the last run (plant.rollups; idempotent, runs take turns)."""
    return asdict(rollups.roll_up_readings())


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
