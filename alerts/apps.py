from __future__ import annotations

from django.apps import AppConfig

# Models-free, so importable while the app registry loads (the rest below needs models: ready() imports it).
from plant.openapi import provide_openapi_part


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        # plant and the registry sit below alerts and may not import it: what they need from alerts is
        # handed to them here — the comparison page's observed follow-through (from the one definition of
        # the per-alert facts) and recorded alerts, the bundles' threshold overrides, the metrics API's
        # part of the OpenAPI document, the asset page's missed-failure form and scoring gaps, and the ingest
        # hook that marks assets due and wakes their scoring.
        from alerts import asset_panels
        from alerts.comparison_source import champion_follow_through, recorded_episodes
        from alerts.metrics.closed import connect_invalidation
        from alerts.services.overrides import threshold_overrides
        from alerts.edge_openapi import edge_part
        from alerts.metrics.openapi import metrics_part
        from alerts.services.lifecycle import provide_explanation_sender
        from alerts.tasks import complete_explanation_task, readings_stored
        from alerts import writeback
        from alerts.charts import evidence_windows
        from alerts.views import asset_panel
        from models_registry.bundle import provide_threshold_overrides
        from models_registry.comparison import provide_observed_follow_through, provide_recorded_alerts
        from plant.ingest.hooks import provide_readings_stored
        from plant.retention import provide_evidence_windows
        from plant.views import provide_asset_panels, provide_site_alerts

        provide_observed_follow_through(champion_follow_through)
        connect_invalidation()
        provide_recorded_alerts(recorded_episodes)
        provide_threshold_overrides(threshold_overrides)
        # The metrics API is alerts'; plant builds the API document and may not import alerts.
        provide_openapi_part(metrics_part)
        provide_openapi_part(edge_part)
        provide_asset_panels(context=asset_panel)
        provide_asset_panels(context=asset_panels.asset_context, chart=asset_panels.chart_extras)
        # The site page shows each asset's active alert next to its data health.
        provide_site_alerts(asset_panels.site_alerts)
        # Readings are plant's, their scoring is alerts': the marks are written in the ingest's transaction.
        provide_readings_stored(readings_stored)
        # Raw-reading retention (plant) keeps the readings each alert's chart shows.
        provide_evidence_windows(evidence_windows)
        # The lifecycle queues explanations; the task module imports the lifecycle, so the sender is handed
        # in (looked up at call time: tests replace the task's delay).
        provide_explanation_sender(lambda alert_id: complete_explanation_task.delay(alert_id))
        # Each alert state change queues the asset's state for the site's write-back connections.
        writeback.connect()
