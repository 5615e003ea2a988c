"""What the noise controls change in scoring: per-asset threshold overrides and sensors under calibration.

Read by ``alerts.services.lifecycle`` (so kept free of anything but model imports) and written by
``alerts.services.noise``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from alerts.choices import AlertCategory
from alerts.models import ThresholdOverride
from models_registry import baseline
from models_registry.models import ModelVersion
from plant.models import Sensor


def threshold_overrides(version: ModelVersion, asset_ids: Collection[int]) -> dict[int, tuple[float, float]]:
    """Asset id -> (open, clear) of the active overrides of ``version`` among ``asset_ids``: one query for a
    whole scoring chunk, passed to ``apply_scores(..., thresholds=...)``."""
    rows = ThresholdOverride.objects.filter(
        model_version=version, asset_id__any=asset_ids, active=True
    ).values_list("asset_id", "open_threshold", "clear_threshold")
    return {asset_id: (open_t, clear_t) for asset_id, open_t, clear_t in rows}


def thresholds_in_force(version: ModelVersion, asset_ids: Collection[int]) -> dict[int, tuple[float, float]]:
    """Asset id -> (open, clear) for the assets whose thresholds are not the version's: an active override
    (a human decision) before the asset's calibrated thresholds of a robust version
    (models_registry.baseline.thresholds_in_force); passed to ``apply_scores(..., thresholds=...)``."""
    return baseline.thresholds_in_force(version, asset_ids, threshold_overrides(version, asset_ids))


def effective_thresholds(
    version: ModelVersion, asset_id: int, overrides: Mapping[int, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """(open, clear) the lifecycle uses for the asset: its active override, else its calibrated thresholds
    (robust versions), else the version's. ``overrides``: ``thresholds_in_force`` of a chunk."""
    if overrides is None:
        overrides = thresholds_in_force(version, [asset_id])
    return overrides.get(asset_id, (version.open_threshold, version.clear_threshold))


def under_calibration(asset_id: int, role: str) -> bool:
    """Whether a sensor of the asset in this role is marked for calibration."""
    if not role:
        return False
    return Sensor.objects.filter(asset_id=asset_id, role__key=role, needs_calibration=True).exists()


def calibration_category(asset_id: int, role: str, category: str) -> AlertCategory:
    """A machine-fault alert driven by a sensor marked for calibration is a sensor issue; the gate's own
    sensor fault or data link stays (readings that did not arrive say nothing about the calibration)."""
    if category != AlertCategory.MACHINE_FAULT or not under_calibration(asset_id, role):
        return AlertCategory(category)
    return AlertCategory.SENSOR_FAULT
