"""The registry's part of plant's asset page (plant.views.provide_asset_panels, registered in
ModelsRegistryConfig.ready()): the per-asset baselines."""

from __future__ import annotations

from models_registry.baseline import calibration_status
from plant.models import Asset


def asset_context(asset: Asset) -> dict:
    """The asset's baselines, for the asset page."""
    return {"baselines": calibration_status(asset)}
