"""Builders of a small plant of generic pumps (one sensor per role), shared by the test suite
(tests/conftest.py), the benches (bench/) and the CI checks (.ci/)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from plant.models import Asset, AssetType, Sensor, SensorRole, Site


def make_site(slug: str = "north", name: str | None = None) -> Site:
    return Site.objects.create(slug=slug, name=name or slug.title())


def make_pump_type(slug: str = "pump") -> AssetType:
    asset_type, _ = AssetType.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    for key, unit in (("vibration", "mm/s"), ("current", "A"), ("pressure", "bar"), ("temperature", "°C")):
        SensorRole.objects.get_or_create(
            asset_type=asset_type, key=key, defaults={"label": key.title(), "unit": unit}
        )
    return asset_type


def make_asset(site: Site, tag: str = "p-101", asset_type: AssetType | None = None) -> Asset:
    """An asset with one sensor per role of its type, keyed '<site>.<tag>.<role>'."""
    asset_type = asset_type or make_pump_type()
    asset = Asset.objects.create(site=site, asset_type=asset_type, name=tag.upper(), tag=tag)
    Sensor.objects.bulk_create(
        Sensor(
            asset=asset,
            key=f"{site.slug}.{tag}.{role.key}",
            role=role,
            unit=role.unit,
            valid_min=0.0,
            valid_max=100.0,
            sample_period_s=1.0,
        )
        for role in asset_type.roles.all()
    )
    return asset


def make_role_sensors(
    site: Site,
    assets: Iterable[Asset],
    roles: Mapping[str, SensorRole],
    specs: Iterable[tuple[str, str, str, float, float]],
    **fields: Any,
) -> list[Sensor]:
    """One sensor per (key, label, unit, valid min, valid max) spec on each asset, keyed
    '<site>.<tag>.<key>', in one bulk insert (`fields`: further columns of every sensor)."""
    specs = list(specs)
    return Sensor.objects.bulk_create(
        Sensor(
            asset=asset,
            key=f"{site.slug}.{asset.tag}.{key}",
            role=roles[key],
            unit=unit,
            valid_min=low,
            valid_max=high,
            **fields,
        )
        for asset in assets
        for key, _label, unit, low, high in specs
    )
