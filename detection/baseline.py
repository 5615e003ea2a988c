"""Per-asset baselines, the pure part: a model whose ``output_spec["baseline"] == "per_asset"`` sees each
window's features minus its asset's operating point (a mean feature vector), not the raw features.

Shared by training, the scorer, explanations, the edge runner and the SKAB evaluation, so they cannot drift
apart; calibrating and storing baselines (Django) is ``models_registry.baseline``. ``apply`` returns float32,
the model input type; the vector is float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PER_ASSET = "per_asset"
MIN_WINDOWS = 5  # fewer windows are a point, not an operating point


class BaselineError(ValueError):
    """A baseline cannot be calibrated from the given period; the message says why."""


def expects_baseline(output_spec: Mapping[str, Any] | None) -> bool:
    """True when a model's output_spec asks for per-asset baselined input."""
    return (output_spec or {}).get("baseline") == PER_ASSET


def period_mask(ends: np.ndarray, window_s: float, start_s: float, end_s: float) -> np.ndarray:
    """Windows lying wholly inside [start_s, end_s] (a window covers (end - window_s, end])."""
    ends = np.asarray(ends, dtype=np.float64)
    return (ends - window_s >= start_s - 1e-6) & (ends <= end_s + 1e-6)


def mean_vector(X: np.ndarray) -> tuple[np.ndarray, int]:
    """(float64 mean of the complete rows of X, how many rows that is); BaselineError below MIN_WINDOWS."""
    X = np.asarray(X)
    complete = np.isfinite(X).all(axis=1) if X.ndim == 2 else np.zeros(0, dtype=bool)
    count = int(complete.sum())
    if count < MIN_WINDOWS:
        raise BaselineError(
            f"only {count} complete feature windows in the calibration period (need at least {MIN_WINDOWS})"
        )
    return X[complete].astype(np.float64).mean(axis=0), count


def apply(X: np.ndarray, vector: np.ndarray | list[float]) -> np.ndarray:
    """Baselined model input: X minus the vector, computed in float64 and returned as float32."""
    return (np.asarray(X) - np.asarray(vector, dtype=np.float64)).astype(np.float32)
