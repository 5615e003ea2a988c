"""A hand-made anomaly version for benches and tests: its score is `weight` × the window's mean vibration.

Shared by bench/scoring.py and the scoring, baseline and regime tests (one builder, not four copies).
Importing it needs Django set up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detection.onnx_graphs import build_linear_graph
from models_registry.models import ModelVersion
from models_registry.services import promote, register_artifact

SPEC = {"name": "score", "index": 0, "direction": "higher_is_anomalous"}


def vibration_version(
    asset_type: Any,
    names: Sequence[str],
    *,
    name: str,
    open_threshold: float,
    clear_threshold: float,
    background: np.ndarray,
    weight: float = 1.0,
    output_spec: Mapping[str, Any] = SPEC,
    shadow: bool = False,
    reason: str = "test",
) -> ModelVersion:
    """Register and promote (champion, or shadow) a linear version over `names` that weighs only
    ``vibration__mean``, by `weight`."""
    weights = np.zeros(len(names), dtype=np.float32)
    weights[list(names).index("vibration__mean")] = weight
    version = register_artifact(
        name=name,
        kind="anomaly",
        asset_type=asset_type,
        onnx_bytes=build_linear_graph(len(names), weights=weights),
        feature_spec=list(names),
        output_spec=dict(output_spec),
        open_threshold=open_threshold,
        clear_threshold=clear_threshold,
        background=background,
    )
    promote(version, reason=reason, shadow=shadow)
    version.refresh_from_db()
    return version
