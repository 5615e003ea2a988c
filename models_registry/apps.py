from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # plant's ingest marks assets due and must enqueue their scoring, but may not import the task
        # (plant sits below the registry): the task's sender is handed to it here. `.delay` is looked up at
        # each call so that tests can patch it.
        from models_registry.asset_panels import asset_context, chart_extras
        from models_registry.tasks import score_asset_task
        from plant.scheduling import provide_scoring_sender
        from plant.views import provide_asset_panels

        provide_scoring_sender(lambda asset_id: score_asset_task.delay(asset_id))
        # The asset page is plant's; its baselines and scoring-gaps panels are the registry's.
        provide_asset_panels(context=asset_context, chart=chart_extras)
