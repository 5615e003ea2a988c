from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        # The registry sits below alerts and may not import it: the comparison page's observed
        # follow-through is handed to it here, from the one definition of the per-alert facts.
        from alerts.metrics.facts import champion_follow_through
        from alerts.metrics.openapi import metrics_part
        from alerts.views import asset_panel
        from models_registry.comparison import provide_observed_follow_through
        from plant.openapi import provide_openapi_part
        from plant.views import provide_asset_panels

        provide_observed_follow_through(champion_follow_through)
        # The metrics API is alerts'; plant builds the API document and may not import alerts.
        provide_openapi_part(metrics_part)
        provide_asset_panels(context=asset_panel)
