from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        # The registry sits below alerts and may not import it: the comparison page's observed
        # follow-through is handed to it here, from the one definition of the per-alert facts.
        from alerts.metrics.facts import champion_follow_through
        from models_registry.comparison import provide_observed_follow_through

        provide_observed_follow_through(champion_follow_through)
