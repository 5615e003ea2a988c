from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # The asset page is plant's; its baselines panel is the registry's (plant may not import it).
        from models_registry.asset_panels import asset_context
        from models_registry.retrain import provide_run_sender
        from models_registry.tasks import retrain_model_task
        from plant.views import provide_asset_panels

        provide_asset_panels(context=asset_context)
        # Looked up at call time, so a test (or a later ready()) that replaces the task's delay is honoured.
        provide_run_sender(lambda run_id: retrain_model_task.delay(run_id))
