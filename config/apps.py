"""The operations app (issue 17): connects the metrics' event counters in every process that loads Django
(web, workers, beat, bridge). It has no models; its views are config.ops and config.metrics."""

from __future__ import annotations

from celery.signals import task_postrun
from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "config"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from config import metrics  # needs the apps' models, loaded only now
        from plant.ingest.hooks import batch_ingested

        batch_ingested.connect(metrics.on_batch_ingested, dispatch_uid="vigil-metrics-ingest")
        task_postrun.connect(metrics.on_task_postrun, weak=False, dispatch_uid="vigil-metrics-explain")
