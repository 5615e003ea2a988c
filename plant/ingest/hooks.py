"""What happens to the assets whose readings an ingest stored, decided above plant.

Scoring (due marks, scoring tasks) is the alerts app's, which plant may not import: alerts hands its
callable in from AlertsConfig.ready() with `provide_readings_stored`. Ingestion calls `readings_stored`
inside the transaction that stored the readings, so whatever the hook writes (the due marks) commits or
rolls back with them: an outage loses nothing that was acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# hook(asset ids, wake): wake is False inside `bulk_load()` (record, but send no task now).
ReadingsStored = Callable[[list[int], bool], None]

_hook: ReadingsStored | None = None
# Sent after every ingest_readings call with ``result`` (its IngestResult): the operations metrics count
# accepted and rejected readings from it (config.metrics); nothing that decides storage listens here.
batch_ingested = Signal()
_local = threading.local()


def provide_readings_stored(hook: ReadingsStored) -> None:
    """Register what is done with the assets an ingest stored readings for (once, from an AppConfig)."""
    global _hook
    _hook = hook


def readings_stored(asset_ids: list[int]) -> None:
    """Report the assets an ingest just stored readings for (call inside its transaction)."""
    if _hook is None:
        # Storing readings that no scorer will ever be told about would lose them silently.
        raise ImproperlyConfigured(
            "no readings-stored hook registered (plant.ingest.hooks.provide_readings_stored): "
            "is the alerts app installed?"
        )
    _hook(asset_ids, not getattr(_local, "bulk", False))


@contextmanager
def bulk_load() -> Iterator[None]:
    """Ingest without waking anything now (bulk loads before the broker runs): the hook still records the
    assets (due marks), and the scoring sweep sends their tasks later."""
    previous = getattr(_local, "bulk", False)
    _local.bulk = True
    try:
        yield
    finally:
        _local.bulk = previous
