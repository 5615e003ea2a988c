"""The registry's part of plant's asset page (plant.views.provide_asset_panels, registered in
ModelsRegistryConfig.ready()): the per-asset baselines."""

from __future__ import annotations

from dataclasses import replace

from models_registry.baseline import calibration_status, unsettled_words
from models_registry.bundle import threshold_overrides_of
from models_registry.forms import RecalibrateForm
from plant.models import Asset


def asset_context(asset: Asset) -> dict:
    """The asset's calibrations and calibrated thresholds per version in use, and the recalibration form
    (shown to engineers), for the asset page."""
    statuses = [
        replace(
            item,
            override=threshold_overrides_of(item.version, [asset.pk]).get(asset.pk),
            unsettled=unsettled_words(asset, item.baseline.trends if item.baseline is not None else []),
        )
        for item in calibration_status(asset)
    ]
    return {"baselines": statuses, "calibrate_form": RecalibrateForm()}
