"""A small simulated pump plant in the database, shared by the registry's end-to-end and retrain tests."""

from __future__ import annotations

from plant.builders import make_role_sensors
from plant.models import Asset, AssetType, SensorRole, Site
from demo.seed import PUMP_ROLES
from plant.simulator import SimAsset

TAGS = ("p-101", "p-102", "p-103")


def make_simulated_plant(site: Site, slug: str = "sim-pump") -> tuple[AssetType, dict[str, Asset]]:
    """An asset type with the simulator's five roles, and three pumps with one sensor per role."""
    asset_type = AssetType.objects.create(slug=slug, name="Simulated pump", window_s=60, step_s=10)
    roles = {
        key: SensorRole.objects.create(asset_type=asset_type, key=key, label=label, unit=unit)
        for key, label, unit, _low, _high in PUMP_ROLES
    }
    assets = {}
    for tag in TAGS:
        asset = Asset.objects.create(site=site, asset_type=asset_type, name=tag.upper(), tag=tag)
        make_role_sensors(site, [asset], roles, PUMP_ROLES, sample_period_s=1.0)
        assets[tag] = asset
    return asset_type, assets


def sim_assets(site: Site) -> list[SimAsset]:
    """The simulator's view of those pumps: role -> sensor key."""
    return [SimAsset(tag, {key: f"{site.slug}.{tag}.{key}" for key, *_ in PUMP_ROLES}) for tag in TAGS]
