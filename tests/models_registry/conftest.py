"""Registry test helpers: media in a temporary folder and tiny hand-made ONNX models."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from models_registry.models import ModelVersion
from detection.onnx_graphs import build_linear_graph as linear_onnx
from models_registry.services import register_artifact
from plant.models import AssetType


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def nan_onnx(width: int) -> bytes:
    """A model whose score is NaN for every row (0/0), to fail the reference-batch check."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["X", "axes"], ["s"], keepdims=1),
            helper.make_node("Sub", ["s", "s"], ["zero"]),
            helper.make_node("Div", ["zero", "zero"], ["score"]),
        ],
        "nan",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def make_version(
    asset_type: AssetType,
    *,
    name: str = "pump-anomaly",
    kind: str = "anomaly",
    width: int = 4,
    onnx_bytes: bytes | None = None,
    feature_spec: list[str] | None = None,
    background: np.ndarray | None = None,
    **extra,
) -> ModelVersion:
    spec = feature_spec or [f"f{i}" for i in range(width)]
    rng = np.random.default_rng(7)
    return register_artifact(
        name=name,
        kind=kind,
        asset_type=asset_type,
        onnx_bytes=onnx_bytes if onnx_bytes is not None else linear_onnx(len(spec)),
        feature_spec=spec,
        output_spec=extra.pop("output_spec", {"name": "score", "direction": "higher"}),
        open_threshold=extra.pop("open_threshold", 3.0),
        clear_threshold=extra.pop("clear_threshold", 2.0),
        background=background if background is not None else rng.normal(size=(20, len(spec))),
        metrics=extra.pop("metrics", {"pr_auc": 0.91, "precision": 0.8, "recall": 0.75}),
        **extra,
    )


def corrupt(version: ModelVersion) -> None:
    """Flip bytes of the stored artifact in place, as a disk or copy error would."""
    path = version.onnx_file.path
    with open(path, "r+b") as handle:
        data = bytearray(handle.read())
        data[len(data) // 2] ^= 0xFF
        handle.seek(0)
        handle.write(bytes(data))


def make_readings(asset, start, seconds: int, *, seed: int = 0, fault_from: int | None = None) -> int:
    """1 Hz readings of an asset's four pump sensors that move together with a shared load.

    From `fault_from` seconds on, the pressure turns against the load and vibration gets rough: every
    sensor stays in its normal range, only how they relate changes (a multivariate fault).
    """
    from datetime import timedelta

    from plant.models import Reading

    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=np.float64)
    load = (
        0.5 * np.sin(2 * np.pi * t / 600.0 + seed)
        + np.convolve(rng.normal(0, 0.05, seconds), np.ones(60) / 60, mode="same").cumsum() * 0.05
    )
    signals = {
        "current": 20 + 4 * load + rng.normal(0, 0.2, seconds),
        "pressure": 6 + 1.5 * load + rng.normal(0, 0.05, seconds),
        "vibration": 2 + 0.5 * load + rng.normal(0, 0.05, seconds),
        "temperature": 50 + 3 * load + rng.normal(0, 0.1, seconds),
    }
    if fault_from is not None:
        faulty = t >= fault_from
        signals["pressure"][faulty] = 6 - 1.5 * load[faulty] + rng.normal(0, 0.05, faulty.sum())
        signals["vibration"][faulty] += rng.normal(0, 0.4, faulty.sum())
    times = [start + timedelta(seconds=int(s)) for s in t]
    rows = []
    for sensor in asset.sensors.select_related("role"):
        values = signals[sensor.role.key]
        rows.extend(
            Reading(sensor=sensor, ts=ts, value=float(v)) for ts, v in zip(times, values, strict=True)
        )
    Reading.objects.bulk_create(rows, batch_size=5000)
    return len(rows)
