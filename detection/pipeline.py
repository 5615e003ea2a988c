"""The scoring pipeline, once: series → regime standardisation → windows → per-asset baseline → model scores.

A ``Pipeline`` is one model version's path from readings to scores, built from its spec (feature names and
``output_spec``, which may carry a regime table, ``output_spec["regimes"]``, and ask for a per-asset
baseline, ``output_spec["baseline"] == "per_asset"`` (a mean vector per asset) or ``"per_asset_robust"`` /
``"per_asset_pooled"`` (a ``detection.baseline.Calibration`` per asset: median and robust scale, the pooled
one's scale shrunk toward its fleet's; applied alike, ``detection.baseline.ROBUST_MODES``)). Its steps, in order:

1. ``windows`` — each asset's ``{role: (ts, values, quality)}`` standardised per operating regime
   (detection.regimes.apply, only for a version with a regime step), then cut into feature windows by
   detection.features.build_windows_many (one vectorised pass over every asset);
2. ``columns`` / ``rows`` — the version's feature columns of those windows and the rows it scores: complete
   windows (all its features finite) ending after a cursor (the last stored window end, if any);
3. ``inputs`` — those rows minus the asset's baseline vector, or standardised by its calibration, for a
   baselined version (detection.baseline.apply); a peer-relative version (``output_spec["peers"]``) reads
   each asset against the median change of its peer group at the same window end instead
   (``peer_inputs`` / ``peer_rows``: detection.baseline.peer_relative; ``run``'s ``groups``);
4. ``score`` — one onnxruntime batch (detection.runtime.LoadedModel), every score a finite number.

A version has a regime step or a per-asset baseline, never both. A baseline (models_registry.baseline) is
the mean of an asset's windows of raw readings, stored per feature list and shared by every baselined
version over those features, and calibrated through this pipeline's ``windows`` step like the windows it is
subtracted from; a regime step already standardises each operating regime. ``from_spec`` refuses the pair
(the scorer quarantines such a version) instead of subtracting a raw mean from standardised windows.

``run`` composes them for a set of assets. The live scorer (alerts.scoring) calls the steps itself,
because it shares the windows of one regime step between versions and reads or calibrates baselines from
the database between steps 2 and 3; the champion-vs-challenger backtest (models_registry.comparison) calls
``run``. Both so compute the same scores from the same readings. An alert's explanation rebuilt from
readings (alerts.services.lifecycle.window_features) and baseline calibration use the ``windows`` step and
``inputs`` (``asset_windows`` is the one-asset case); training's baselines use ``baseline_rows``; the SKAB
and NAB evaluations use ``asset_windows`` and ``score``.

Pure NumPy + onnxruntime: no Django (import-linter contract, ``make contracts``). Asset keys are opaque
(the callers use asset ids).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection import regimes
from detection.baseline import (
    BaselineError,
    Calibration,
    baseline_mode,
    is_robust,
    peer_mode,
    peer_relative,
)
from detection.baseline import apply as apply_baseline
from detection.features import Series, Windows, build_windows, build_windows_many, role_of
from detection.runtime import LoadedModel, ModelRuntimeError


class PipelineError(ValueError):
    """The version's spec cannot be applied to the asset type's data; the message names the problem."""


class ScoreOutputError(PipelineError):
    """The model returned a wrong number of scores or scores that are not finite numbers."""


class ModelCrash(PipelineError):
    """onnxruntime failed in a way ModelRuntimeError does not describe: the artifact's fault, not the data's."""


@dataclass(frozen=True)
class Scored:
    """One asset's scored windows: row indexes into its windows, the model input and the scores."""

    windows: Windows
    rows: np.ndarray
    X: np.ndarray
    scores: np.ndarray
    baseline: np.ndarray | Calibration | None = None

    @property
    def ends(self) -> np.ndarray:
        return self.windows.ends[self.rows]


@dataclass(frozen=True)
class Pipeline:
    """One version's scoring path (see module): its feature names, output_spec and parsed regime step."""

    feature_names: tuple[str, ...]
    output_spec: Mapping[str, Any]
    regime: regimes.RegimeSpec | None

    @classmethod
    def from_spec(
        cls,
        feature_names: Sequence[str],
        output_spec: Mapping[str, Any] | None,
        roles: Sequence[str] | None = None,
    ) -> Pipeline:
        """The pipeline of a version; PipelineError when its regime step is unusable or (given the asset
        type's ``roles``) names roles the type lacks."""
        output_spec = dict(output_spec or {})
        try:
            baseline_mode(output_spec)
            peer_mode(output_spec)
        except BaselineError as exc:
            raise PipelineError(f"its baseline step is unusable: {exc}") from None
        try:
            regime = regimes.from_output_spec(output_spec)
        except regimes.RegimeSpecError as exc:
            raise PipelineError(f"its regime step is unusable: {exc}") from None
        if regime is not None and baseline_mode(output_spec) is not None:
            raise PipelineError(
                "it asks for both a regime step and a per-asset baseline: a baseline is calibrated on an "
                "asset's raw-reading windows, so it cannot be applied to regime-standardised ones"
            )
        if regime is not None and roles is not None:
            unknown = [role for role in (*regime.keys, *regime.roles) if role not in roles]
            if unknown:
                raise PipelineError(f"its regime step names unknown roles {unknown[:5]}")
        return cls(tuple(feature_names), output_spec, regime)

    @property
    def baselined(self) -> bool:
        """True when the model scores each window against its asset's baseline (vector or calibration)."""
        return baseline_mode(self.output_spec) is not None

    @property
    def robust(self) -> bool:
        """True when the asset baselines are Calibrations (median / robust scale), not mean vectors."""
        return is_robust(baseline_mode(self.output_spec))

    @property
    def peers(self) -> bool:
        """True when each window is scored relative to its peer group's (detection.baseline.peer_relative):
        the assets given to ``run`` together are the group."""
        return peer_mode(self.output_spec) is not None

    def peer_inputs(
        self,
        windows: Mapping[Hashable, Windows],
        rows: Mapping[Hashable, np.ndarray],
        columns: np.ndarray,
        baselines: Mapping[Hashable, np.ndarray | Calibration],
        groups: Mapping[Hashable, Hashable] | None = None,
    ) -> dict[Hashable, tuple[np.ndarray, np.ndarray]]:
        """Step 3 of a peer-relative version over a peer group (detection.baseline.peer_relative): each
        asset's rows against its calibration and the group's median change at the same window end, in its
        own robust scale; asset -> (rows kept, model input). ``groups``: asset -> peer group (default one
        group). Rows at an end with fewer than detection.baseline.MIN_PEERS peers are dropped (not scored)."""
        if not all(isinstance(baselines[key], Calibration) for key in rows):
            raise PipelineError("its peer step needs a calibration (median / robust scale) for every asset")
        raw = {key: (windows[key].ends[r], windows[key].X[r][:, columns]) for key, r in rows.items()}
        out = {}
        calibrations = {key: baselines[key] for key in rows}
        for key, (ends, X) in peer_relative(raw, calibrations, groups).items():  # type: ignore[arg-type]
            kept = np.isin(windows[key].ends[rows[key]], ends)
            out[key] = (rows[key][kept], X)
        return out

    @property
    def windows_key(self) -> str | None:
        """Equal for pipelines that build identical windows from the same readings (None: raw readings)."""
        return regimes.fingerprint(self.output_spec)

    @property
    def roles(self) -> list[str]:
        """The roles whose readings the pipeline reads: its features' roles and its regime step's keys."""
        keys = self.regime.keys if self.regime is not None else ()
        return list(dict.fromkeys([*(role_of(name) for name in self.feature_names), *keys]))

    def standardise(self, series: Mapping[str, Series]) -> Mapping[str, Series]:
        """The readings the windows are built from: regime-standardised if the version has a step, else
        the raw ones (timestamps and quality bits never change)."""
        return series if self.regime is None else regimes.apply(self.regime, series)

    def windows(
        self,
        series_by_asset: Mapping[Hashable, Mapping[str, Series]],
        roles: list[str],
        *,
        window_s: float,
        step_s: float,
        start_s: Mapping[Hashable, float | None] | None = None,
        end_s: Mapping[Hashable, float | None] | None = None,
        sample_period_s: float | Mapping[Hashable, float | Mapping[str, float] | None] | None = None,
        min_coverage: float = 0.5,
        absent_roles: Mapping[Hashable, Collection[str]] | None = None,
    ) -> dict[Hashable, Windows]:
        """Each asset's feature windows over its own (start_s, end_s] of its (standardised) readings;
        ``absent_roles``: per asset, the roles it has no sensor for (NaN columns, see detection.features)."""
        return build_windows_many(
            {key: self.standardise(series) for key, series in series_by_asset.items()},
            roles,
            window_s=window_s,
            step_s=step_s,
            start_s=start_s,
            end_s=end_s,
            sample_period_s=sample_period_s,
            min_coverage=min_coverage,
            absent_roles=absent_roles,
        )

    def asset_windows(self, series: Mapping[str, Series], roles: list[str], **options: Any) -> Windows:
        """``windows`` of one asset (or one dataset run); ``options`` are detection.features.build_windows'
        (window_s, step_s, start_s, end_s, sample_period_s, min_coverage)."""
        return build_windows(self.standardise(series), roles, **options)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Indexes of the version's features among the feature columns `names` (a Windows' names);
        PipelineError naming the missing ones."""
        position = {name: i for i, name in enumerate(names)}
        missing = [name for name in self.feature_names if name not in position]
        if missing:
            raise PipelineError(f"its feature spec names unknown features {missing[:5]}")
        return np.array([position[name] for name in self.feature_names], dtype=np.intp)

    @staticmethod
    def rows(windows: Windows, columns: np.ndarray, after_s: float = -np.inf) -> np.ndarray:
        """Rows to score: windows ending after `after_s` whose features the version reads are all finite
        (an incomplete window is never scored)."""
        return np.flatnonzero(
            (windows.ends > after_s + 1e-6) & np.isfinite(windows.X[:, columns]).all(axis=1)
        )

    @staticmethod
    def inputs(
        windows: Windows,
        rows: np.ndarray,
        columns: np.ndarray,
        baseline: np.ndarray | Calibration | None = None,
    ) -> np.ndarray:
        """The model input of those rows: the version's columns, minus the asset's baseline vector or
        standardised by its calibration, if given."""
        X = windows.X[rows][:, columns]
        return X if baseline is None else apply_baseline(X, baseline)

    @staticmethod
    def baseline_rows(
        X: np.ndarray, keys: np.ndarray, baselines: Mapping[Hashable, np.ndarray | Calibration]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Step 3 over rows of several assets (row i is of asset ``keys[i]``), as ``run`` applies it: each
        row minus its asset's vector; returns (X with those rows baselined, mask of the rows kept), the rows
        of an asset without a vector being dropped from the mask (still calibrating)."""
        out = np.array(X, copy=True)
        keep = np.zeros(len(out), dtype=bool)
        for key, vector in baselines.items():
            mine = keys == key
            out[mine] = apply_baseline(out[mine], vector)
            keep |= mine
        return out, keep

    @staticmethod
    def peer_rows(
        X: np.ndarray,
        keys: np.ndarray,
        ends: np.ndarray,
        calibrations: Mapping[Hashable, Calibration],
        groups: Mapping[Hashable, Hashable] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Step 3 of a peer-relative version over stacked rows of several assets (row i is of asset
        ``keys[i]``, window end ``ends[i]``), as ``run`` applies it: returns (X with the kept rows as model
        input, mask of the rows kept); rows of an asset without a calibration, or at an end with too few
        peers, are dropped from the mask."""
        out = np.array(X, dtype=np.float32, copy=True)
        keep = np.zeros(len(out), dtype=bool)
        inputs = {key: (ends[keys == key], X[keys == key]) for key in calibrations if (keys == key).any()}
        for key, (kept_ends, Z) in peer_relative(inputs, calibrations, groups).items():
            mine = np.flatnonzero(keys == key)
            kept = mine[np.isin(ends[mine], kept_ends)]
            out[kept] = Z
            keep[kept] = True
        return out, keep

    @staticmethod
    def score(model: LoadedModel, X: np.ndarray, *, finite: bool = True) -> np.ndarray:
        """One batch through the model; ModelRuntimeError when the artifact cannot run the way its specs say,
        ModelCrash for any other onnxruntime failure, ScoreOutputError when the scores are not one finite
        number per row (with ``finite=False`` non-finite scores are returned, for the caller to report)."""
        try:
            scores = model.score(X)
        except ModelRuntimeError:
            raise
        except Exception as exc:  # anything else onnxruntime throws is the artifact's fault, not the asset's
            raise ModelCrash(f"{type(exc).__name__}: {exc}") from exc
        if scores.shape != (len(X),) or (finite and not np.isfinite(scores).all()):
            bad = int((~np.isfinite(scores)).sum()) if scores.shape == (len(X),) else len(X)
            raise ScoreOutputError(f"{bad} of {len(X)} scores are not finite numbers")
        return scores

    def run(
        self,
        model: LoadedModel | Callable[[], LoadedModel],
        windows: Mapping[Hashable, Windows],
        *,
        baselines: Mapping[Hashable, np.ndarray | Calibration]
        | Callable[[list], Mapping[Hashable, np.ndarray | Calibration]]
        | None = None,
        after_s: Mapping[Hashable, float] | None = None,
        groups: Mapping[Hashable, Hashable] | None = None,
    ) -> dict[Hashable, Scored]:
        """Steps 2-4 over the assets' windows (from ``windows``), scored in one batch.

        A baselined version scores only the assets ``baselines`` has a vector for (the others are still
        calibrating); ``baselines`` may be a callable given the keys of the assets with rows to score (the
        live scorer reads and calibrates them then). ``model`` may be a callable too, called only when there
        is something to score (a version with no new window is not loaded). A robust version (ROBUST_MODES)
        takes Calibrations, a "per_asset" one vectors; the other kind is a PipelineError. A peer-relative
        version scores each asset against the assets given with it (``groups``: asset -> its peer group,
        default one group); a window without enough peers is not scored (yet)."""
        parts: list[tuple[Hashable, np.ndarray]] = []
        columns: np.ndarray | None = None
        for key, item in windows.items():
            if len(item) == 0:
                continue
            if columns is None:
                columns = self.columns(item.names)
            rows = self.rows(item, columns, (after_s or {}).get(key, -np.inf))
            if len(rows):
                parts.append((key, rows))
        vectors: Mapping[Hashable, np.ndarray | Calibration] | None = None
        if self.baselined:
            keys = [key for key, _ in parts]
            vectors = (baselines(keys) if callable(baselines) else baselines) if parts else {}
            vectors = vectors or {}
            parts = [(key, rows) for key, rows in parts if key in vectors]
            for key, _ in parts:
                self._check_baseline(key, vectors[key], len(columns))
        if not parts or columns is None:
            return {}
        if self.peers and vectors is not None:
            # The assets scored together are the peer group; rows without enough peers wait.
            adjusted = self.peer_inputs(windows, dict(parts), columns, vectors, groups)
            parts = [(key, adjusted[key][0]) for key, _ in parts if len(adjusted[key][0])]
            if not parts:
                return {}
            X = np.concatenate([adjusted[key][1] for key, _ in parts])
        else:
            X = np.concatenate(
                [
                    self.inputs(windows[key], rows, columns, None if vectors is None else vectors[key])
                    for key, rows in parts
                ]
            )
        scores = self.score(model if isinstance(model, LoadedModel) else model(), X)
        out: dict[Hashable, Scored] = {}
        offset = 0
        for key, rows in parts:
            part = slice(offset, offset + len(rows))
            vector = None if vectors is None else vectors[key]
            if vector is not None and not isinstance(vector, Calibration):
                vector = np.asarray(vector, dtype=np.float64)
            out[key] = Scored(windows[key], rows, X[part], scores[part], vector)
            offset += len(rows)
        return out

    def _check_baseline(self, key: Hashable, baseline: Any, width: int) -> None:
        if self.robust != isinstance(baseline, Calibration):
            wanted = "a calibration (median / robust scale)" if self.robust else "a mean vector"
            raise PipelineError(
                f"its per-asset step needs {wanted} for asset {key!r}, got {type(baseline).__name__}"
            )
        if self.robust and len(baseline.location) != width:
            raise PipelineError(
                f"the calibration of asset {key!r} has {len(baseline.location)} features, "
                f"the version reads {width}"
            )


# The windows step of every version without a regime step, and of the evaluations: raw readings.
RAW_READINGS = Pipeline.from_spec([], {})
