"""The fleet of the scoring benchmarks (bench/scoring.py, bench/scale.py): N pumps with four 1 Hz sensors,
a champion and a shadow linear version over vibration, and a few seconds of fresh readings per pump loaded
through ingest_readings (due marks only, no tasks). Written once here for both."""

from __future__ import annotations

import numpy as np

BASE = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}


def vibration_version(pump, name: str, weight: float, shadow: bool = False):
    from bench import versions
    from detection.features import feature_names

    names = feature_names(sorted(BASE))
    return versions.vibration_version(
        pump,
        names,
        name=name,
        weight=weight,
        open_threshold=10.0 * weight,
        clear_threshold=5.0 * weight,
        background=np.full((10, len(names)), 2.0),
        shadow=shadow,
        reason="bench",
    )


def make_fleet(n: int, tag: str):
    from plant.models import Asset, AssetType, Sensor, SensorRole, Site

    site = Site.objects.create(slug=tag, name=tag)
    pump = AssetType.objects.create(slug=f"{tag}-pump", name=f"{tag} pump")
    roles = [SensorRole.objects.create(asset_type=pump, key=key, label=key) for key in sorted(BASE)]
    assets = Asset.objects.bulk_create(
        [Asset(site=site, asset_type=pump, name=f"{tag}-{i}", tag=f"{tag}-{i}") for i in range(n)],
        batch_size=5000,
    )
    Sensor.objects.bulk_create(
        [
            Sensor(
                asset=a, key=f"{tag}.{a.tag}.{r.key}", role=r, valid_min=0, valid_max=100, sample_period_s=1.0
            )
            for a in assets
            for r in roles
        ],
        batch_size=5000,
    )
    return site, pump, assets


def columns(assets, t0: float, seconds: int, vibration: float = 2.0):
    keys, ts, values = [], [], []
    rng = np.random.default_rng(int(t0))
    t = t0 + np.arange(seconds, dtype=np.float64)
    for asset in assets:
        for role in sorted(BASE):
            keys += [f"{asset.site.slug}.{asset.tag}.{role}"] * seconds
            ts.append(t)
            level = vibration if role == "vibration" else BASE[role]
            values.append(level + rng.normal(0, 0.05, seconds))
    return keys, np.concatenate(ts), np.concatenate(values)


def load_fresh_readings(assets, now: float, seconds: int = 70, batch: int = 500) -> None:
    """`seconds` of readings up to `now` for every asset, stored with due marks and no task sent."""
    from plant.ingest import ParsedBatch, ingest_readings
    from plant.ingest.hooks import bulk_load

    with bulk_load():
        for i in range(0, len(assets), batch):
            keys, ts, values = columns(assets[i : i + batch], now - seconds, seconds)
            ingest_readings(None, ParsedBatch.from_arrays(keys, ts, values), now_s=now)
