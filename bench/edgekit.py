"""A simulated pump and a real edge bundle for it, made without Django: a PCA detector fitted on simulated
healthy windows (the product's own detector and ONNX export), thresholds from its healthy scores. Used by
bench/edge.py and the edge tests (tests/edge)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectivity.points import Sample
from detection.bundle import pack_bundle
from detection.detectors import fit_detector
from detection.features import build_windows, feature_names
from plant.simulator import Fault, FaultSchedule, PlantSimulator, SimAsset

ROLES = ["current", "flow", "pressure", "temperature", "vibration"]
TAG = "p-101"
WINDOW_S, STEP_S = 60.0, 10.0
TRAIN_S = 14_400.0


# Each role's words as an exported bundle carries them (models_registry.bundle: the asset type's labels).
ROLE_WORDS = {
    "current": ["Motor current", "A"],
    "flow": ["Flow", "m³/h"],
    "pressure": ["Discharge pressure", "bar"],
    "temperature": ["Bearing temperature", "°C"],
    "vibration": ["Vibration RMS", "mm/s"],
}


def sensors(tag: str = TAG) -> dict[str, str]:
    return {role: f"demo.{tag}.{role}" for role in ROLES}


def simulator(fault_at: float | None = None, tag: str = TAG, noise: float = 1.0) -> PlantSimulator:
    """A pump simulator that has run up to TRAIN_S (the training stretch); continue it from there."""
    faults = FaultSchedule(
        [] if fault_at is None else [Fault("bearing_wear", tag, None, fault_at, 3_600.0, severity=1.0)]
    )
    sim = PlantSimulator([SimAsset(tag, sensors(tag), noise=noise)], seed=7, faults=faults)
    sim.step(0.0, TRAIN_S)  # past the start-up transient (the lagged temperature), as in training
    return sim


def series_of(sim: PlantSimulator, t0: float, t1: float) -> dict[str, tuple]:
    keys, ts, values = sim.step(t0, t1)
    role_of = {key: role for role, key in sensors().items()}
    out = {}
    for key in dict.fromkeys(keys.tolist()):
        mine = keys == key
        out[role_of[key]] = (ts[mine], values[mine], np.zeros(int(mine.sum()), dtype=np.uint16))
    return out


def samples_of(sim: PlantSimulator, t0: float, t1: float) -> list[Sample]:
    keys, ts, values = sim.step(t0, t1)
    order = np.argsort(ts, kind="stable")
    return [Sample(str(keys[i]), float(ts[i]), float(values[i])) for i in order]


@dataclass
class MadeBundle:
    path: Path
    zip_bytes: bytes
    spec: dict
    background: list  # healthy feature rows, for the registry's reference-batch check


def make_bundle(tmp: Path, *, open_factor: float = 1.5) -> MadeBundle:
    fresh = PlantSimulator([SimAsset(TAG, sensors())], seed=7)
    windows = build_windows(series_of(fresh, 0.0, TRAIN_S), ROLES, window_s=WINDOW_S, step_s=STEP_S)
    X = windows.X[np.isfinite(windows.X).all(axis=1)]
    detector = fit_detector("pca", X)
    healthy = detector.score(X)
    open_threshold = float(np.max(healthy) * open_factor)
    spec = {
        "format": 1,
        "model": {
            "name": "edge-test",
            "version": 1,
            "kind": "anomaly",
            "sha256": "ab" * 32,
            "status": "champion",
        },
        "asset_type": "pump",
        "feature_names": feature_names(ROLES),
        "roles": ROLES,
        "window_s": WINDOW_S,
        "step_s": STEP_S,
        "open_threshold": open_threshold,
        "clear_threshold": open_threshold * 0.8,
        "open_windows": 3,
        "clear_windows": 6,
        "output_spec": {"name": "score", "index": 0, "direction": "higher_is_anomalous"},
        "asset": {"id": 1, "tag": TAG, "site": "demo"},
        "sensors": {key: role for role, key in sensors().items()},
        "background": X[:: max(1, len(X) // 100)].tolist(),
        "role_words": ROLE_WORDS,
    }
    data = pack_bundle(detector.to_onnx(), spec)
    path = tmp / "bundle.zip"
    path.write_bytes(data)
    return MadeBundle(path, data, spec, X[:: max(1, len(X) // 50)].tolist())


def fleet_simulator(tags: list[str], noise: float = 1.0) -> PlantSimulator:
    """Several pumps (each with the five roles), warmed up to TRAIN_S like ``simulator``."""
    sim = PlantSimulator([SimAsset(tag, sensors(tag), noise=noise) for tag in tags], seed=7)
    sim.step(0.0, TRAIN_S)
    return sim
