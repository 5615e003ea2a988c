from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # The asset page is plant's; its baselines panel is the registry's (plant may not import it).
        from models_registry.asset_panels import asset_context
        from plant.views import provide_asset_panels

        provide_asset_panels(context=asset_context)
