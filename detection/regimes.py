"""Operating-regime normalisation: a per-reading pre-processing step a model version can carry.

A machine that runs at several operating points (C-MAPSS FD002: six altitude / Mach / throttle
conditions) moves every sensor by far more than wear does when it switches between them. A window of raw
readings mixes regimes, so the model cannot undo it; it has to happen per reading, before the windows.

The step (``RegimeSpec``; stored as ``output_spec["regimes"]`` of a ModelVersion, see ``to_dict``):

* regime of a reading = ``tuple(rint(value_k × scale_k))`` over the KEY roles (e.g. the three operating
  settings, scales 1, 100, 1), where value_k is the key role's latest usable reading at or before the
  reading's timestamp (an as-of join; readings of the same instant line up exactly);
* each standardised role is replaced by ``z = (x - mean[regime, role]) / std[regime, role]``, with the
  per-regime moments fitted on training data; a reading whose regime is not in the table (or that has no
  key reading before it) uses the overall moments, so nothing is dropped and the coverage rule is untouched;
* every other role, the key roles included, passes through unchanged; timestamps and quality bits never
  change, so the windows keep the same ends, coverage and flags as on the raw readings.

Key roles should report at the same instants as (or more often than) the roles they normalise: at the start
of a read range a reading older than the key's first reading in the range falls back to the overall moments.

``apply`` is the ONE implementation: the C-MAPSS evaluation (``evaluation.cmapss_features``) and the live
scorer (``alerts.scoring``) both call it on ``{role: (ts, values, quality)}`` before
``detection.features.build_windows_many``. Versions without ``"regimes"`` in their output_spec are scored on raw
readings exactly as before. Pure NumPy, no ORM.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.features import EXCLUDED_QUALITY, Series

SPEC_KEY = "regimes"
RULE = (
    "regime = tuple(rint(key value x scale)) with each key role's latest usable reading at or before the "
    "reading; z = (x - mean[regime]) / std[regime]; a regime not in the table uses the overall moments"
)
MIN_REGIME_ROWS = 30  # a regime seen in fewer training readings than this uses the overall moments


class RegimeSpecError(ValueError):
    """A regime table that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class RegimeSpec:
    """Key roles (with their rounding scale), standardised roles, per-regime and overall mean / std."""

    keys: tuple[str, ...]
    scales: tuple[float, ...]
    roles: tuple[str, ...]
    table: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]
    overall: tuple[np.ndarray, np.ndarray]

    @classmethod
    def fit(
        cls,
        columns: Mapping[str, np.ndarray],
        *,
        keys: Sequence[str],
        scales: Sequence[float],
        roles: Sequence[str],
        min_rows: int = MIN_REGIME_ROWS,
    ) -> RegimeSpec:
        """Moments per regime from aligned training columns (row i of every column is one instant)."""
        if len(keys) != len(scales) or not keys or not roles:
            raise RegimeSpecError("A regime spec needs key roles, one scale per key role, and roles.")
        key_values = np.column_stack([np.asarray(columns[k], dtype=np.float64) for k in keys])
        values = np.column_stack([np.asarray(columns[r], dtype=np.float64) for r in roles])
        codes = _codes(key_values, scales)
        table = {}
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        for i, code in enumerate(unique):
            chosen = inverse.ravel() == i
            if chosen.sum() >= min_rows:
                table[tuple(int(c) for c in code)] = _moments(values[chosen])
        return cls(
            keys=tuple(keys),
            scales=tuple(float(s) for s in scales),
            roles=tuple(roles),
            table=table,
            overall=_moments(values),
        )

    def regimes_of(self, key_values: np.ndarray) -> list[tuple[int, ...]]:
        """The regime of each row of key-role values (n x len(keys)), by the rule of ``RULE``."""
        codes = _codes(np.asarray(key_values, dtype=np.float64).reshape(-1, len(self.keys)), self.scales)
        return [tuple(int(c) for c in row) for row in codes]

    def _moments_for(self, key_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(key_values)
        mean = np.tile(self.overall[0], (n, 1))
        std = np.tile(self.overall[1], (n, 1))
        known = np.isfinite(key_values).all(axis=1)
        if not known.any() or not self.table:
            return mean, std
        codes = _codes(key_values[known], self.scales)
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        rows = np.flatnonzero(known)
        for i, code in enumerate(unique):
            moments = self.table.get(tuple(int(c) for c in code))
            if moments is not None:
                chosen = rows[inverse.ravel() == i]
                mean[chosen], std[chosen] = moments
        return mean, std

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for ``output_spec["regimes"]``."""
        return {
            "rule": RULE,
            "keys": list(self.keys),
            "scales": list(self.scales),
            "roles": list(self.roles),
            "table": [
                {"regime": list(code), "mean": m.tolist(), "std": s.tolist()}
                for code, (m, s) in sorted(self.table.items())
            ],
            "overall": {"mean": self.overall[0].tolist(), "std": self.overall[1].tolist()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> RegimeSpec:
        """Parse ``to_dict`` output; RegimeSpecError names what is wrong."""
        if not isinstance(data, Mapping):
            raise RegimeSpecError(f"regimes must be an object, got {type(data).__name__}.")
        try:
            keys = [str(k) for k in data["keys"]]
            scales = [float(s) for s in data["scales"]]
            roles = [str(r) for r in data["roles"]]
            overall = _pair(data["overall"]["mean"], data["overall"]["std"], len(roles), "overall")
            table = {}
            for entry in data.get("table", []):
                code = tuple(int(c) for c in entry["regime"])
                if len(code) != len(keys):
                    raise RegimeSpecError(f"regime {list(code)} has {len(code)} values for {len(keys)} keys.")
                table[code] = _pair(entry["mean"], entry["std"], len(roles), f"regime {list(code)}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RegimeSpecError):
                raise
            raise RegimeSpecError(f"regimes is malformed ({type(exc).__name__}: {exc}).") from None
        if not keys or len(keys) != len(scales) or not roles:
            raise RegimeSpecError("regimes needs key roles, one scale per key role, and roles.")
        if set(keys) & set(roles):
            raise RegimeSpecError(f"key roles {sorted(set(keys) & set(roles))} cannot also be standardised.")
        return cls(keys=tuple(keys), scales=tuple(scales), roles=tuple(roles), table=table, overall=overall)


def from_output_spec(output_spec: Mapping[str, Any] | None) -> RegimeSpec | None:
    """The version's regime step, or None when it has none (raw readings, as before)."""
    data = (output_spec or {}).get(SPEC_KEY)
    return None if data is None else RegimeSpec.from_dict(data)


def fingerprint(output_spec: Mapping[str, Any] | None) -> str | None:
    """A stable text key of the version's regime step (versions sharing one share their windows)."""
    data = (output_spec or {}).get(SPEC_KEY)
    return None if data is None else json.dumps(data, sort_keys=True)


def apply(spec: RegimeSpec, series: Mapping[str, Series]) -> dict[str, Series]:
    """The readings with every standardised role replaced by its z-scores (see the module docstring).

    ``series`` maps role -> (ts seconds, values, quality); roles missing from it stay missing, roles the
    spec does not name are returned as given.
    """
    out: dict[str, Series] = dict(series)
    keys = [_usable_sorted(series.get(k)) for k in spec.keys]
    for j, role in enumerate(spec.roles):
        item = series.get(role)
        if item is None:
            continue
        ts, values, quality = (np.asarray(a) for a in item)
        ts = ts.astype(np.float64, copy=False)
        key_values = np.column_stack([_as_of(k_ts, k_values, ts) for k_ts, k_values in keys])
        mean, std = spec._moments_for(key_values)
        z = (values.astype(np.float64, copy=False) - mean[:, j]) / std[:, j]
        out[role] = (ts, z, quality)
    return out


def _usable_sorted(item: Series | None) -> tuple[np.ndarray, np.ndarray]:
    if item is None:
        return np.zeros(0), np.zeros(0)
    ts, values, quality = (np.asarray(a) for a in item)
    ts = ts.astype(np.float64, copy=False)
    values = values.astype(np.float64, copy=False)
    usable = ((quality.astype(np.uint16) & EXCLUDED_QUALITY) == 0) & np.isfinite(values) & np.isfinite(ts)
    ts, values = ts[usable], values[usable]
    order = np.argsort(ts, kind="stable")
    return ts[order], values[order]


def _as_of(key_ts: np.ndarray, key_values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The key's latest value at or before each ts (NaN before its first reading)."""
    at = np.searchsorted(key_ts, ts, side="right") - 1
    return np.where(at >= 0, key_values[np.maximum(at, 0)] if len(key_values) else np.nan, np.nan)


def _codes(key_values: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    return np.rint(key_values * np.asarray(scales, dtype=np.float64)).astype(np.int64)


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    # A constant sensor in a regime keeps its offset removed but is not blown up.
    return mean, np.where(std > 1e-9, std, 1.0)


def _pair(mean: Any, std: Any, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    if m.shape != (n,) or s.shape != (n,):
        raise RegimeSpecError(f"{what}: mean and std need {n} values each (one per role).")
    if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
        raise RegimeSpecError(f"{what}: mean must be finite and std finite and positive.")
    return m, s
