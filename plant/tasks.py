"""Beat tasks of the plant app."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from plant import rollups


@shared_task(ignore_result=True, soft_time_limit=1800, time_limit=1900, acks_late=True)
def roll_up_readings_task() -> dict:
    """Roll up the readings written since the last run (plant.rollups; idempotent, runs take turns)."""
    return asdict(rollups.roll_up_readings())
