"""Per-asset baselines, the pure part: a model whose ``output_spec["baseline"] == "per_asset"`` sees each
window's features minus its asset's operating point (a mean feature vector), not the raw features; one
whose ``output_spec["baseline"]`` is ``"per_asset_robust"`` or ``"per_asset_pooled"`` (``ROBUST_MODES``,
tested by ``is_robust``) sees them standardised by its asset's calibration (``Calibration``: per-feature
median and robust scale), so one asset's size or noise does not set the scale every other asset is judged
on. The two robust modes are applied alike (scorer, explanations, edge, per-asset thresholds); they differ
only in how the calibration is made: ``calibrate``, or ``calibrate`` then ``pooled``.

Robust calibration (``calibrate``):

* Rows: complete windows (every feature finite) that no data-quality flag touched (``flagged``; the caller
  ORs in labelled-fault windows); fewer than ``MIN_WINDOWS`` left is a BaselineError naming both counts.
* Location: the per-feature median (one bad stretch in the period moves it by at most one rank).
* Scale: 1.4826·MAD (σ for Gaussian data, 50 % breakdown). When more than half the values are identical
  MAD is 0; then 1.2533·mean|x − median| (σ for Gaussian data; the modified z-score's fallback, Iglewicz &
  Hoaglin), which is non-zero as soon as any value differs.
* Floor: ``max(REL_FLOOR·|median|, ABS_FLOOR)``. A feature (almost) constant in calibration — a stuck
  transmitter, a statistic of a quantised signal, a pump idling at one duty — would otherwise get a scale
  of 0 and make every later change infinite. The relative floor (0.1 % of the feature's level, the same
  fraction the ingest's spike rule floors its scale at) is far above float32's resolution (1e-7), so
  rounding never reads as change, and does not depend on units; the absolute one only matters for a
  feature constant at 0 (slope, std of a constant), where no level exists to be relative to.

Pooled scale (``pool`` / ``pooled``, the "per_asset_pooled" mode, in the product since issue 13 and in the
evaluations; the result is an ordinary Calibration, applied exactly like a robust one). A short calibration gives a
scale that says little, and usually too little (a calm stretch), so normal variation it never saw reads
as tens of σ. Each asset's scale is shrunk toward its fleet's (partial pooling, empirical Bayes), per
feature, on the log scale, in proportion to how little its calibration can tell:

* ``log s_pooled = w·log s_own + (1 − w)·median over the fleet's assets of log s_own`` and
  ``w = n_eff / (n_eff + POOL_PRIOR_WINDOWS)``; the location stays the asset's own median, the floors are
  applied again after pooling.
* ``n_eff``, the independent windows of the calibration: its windows / (window_s / step_s) (overlapping
  windows counted as one, as ``detection.thresholds`` does), times ``min(1, span / POOL_HORIZON_S)``,
  the share of a day the calibration spans.
* ``POOL_PRIOR_WINDOWS`` = 136: the count at which 1.4826·MAD's relative standard error, ≈ 1.166/√n for
  Gaussian data (MAD's asymptotic efficiency 0.37 against the standard deviation), reaches 10 %; an asset's
  own scale gets half the weight once it is known to ±10 % (one standard error), most of it beyond that.
  It is the normal-normal posterior weight τ² / (τ² + 1.36/n) with the prior spread τ of the fleet's
  log-scales at √(1.36/136) = 0.1.
* ``POOL_HORIZON_S`` = one day: the slow variation of a plant (ambient temperature, shifts, load) repeats
  daily, so a calibration shorter than a day has seen only that share of the variation it will be judged
  against; its evidence about the scale counts in that proportion. A calibration of a day or more counts
  in full.
* The fleet's centre is the median over assets (one vote each), so one odd asset does not move it.
* ``pooled(own, span, fleet)`` is one asset's pooled calibration: ``pool`` of it with the OWN (never
  already-pooled) calibrations and spans of the rest of its fleet, so pooling a whole fleet at once and
  pooling each asset against the others give the same scales, bit for bit (a median does not depend on
  order). An asset alone is its own centre and keeps its own scale (to rounding: exp(log s)). The span
  is ``calibration_span``: the first calibration window's start to the last one's end. The product
  (models_registry.baseline.pool_with_fleet: training, auto-calibration, recalibration) and the evaluations
  (models_registry.evaluation.fleet.baselines) both calibrate through it.

Both constants were fixed from the statements above before any evaluation ran, not from a score.

First evaluation (constants committed before any run, nothing changed after; combined detector, per-asset
thresholds): SKAB pooled fleet F1 0.786, FAR 6.8 %, MAR 31.5 % (robust 0.680 / 24.0 / 38.0; mean-only
0.807 / 12.0 / 25.5), three faulty runs without an alert (robust four, mean-only two): a 400-point
calibration spans 0.5 % of a day, so every run gets the fleet's scale; IMS test 1 meets its target
(failing bearings 64 h and 131 h ahead, healthy ≤ 1.7 % in alert; robust 12 h and 25 %), test 2 does not
(failing 74 h ahead, healthy up to 36 % in alert; robust 84 %); simulator fleet: every quiet-pump fault
alerts (6/6, seeds 1 and 2) but one medium and one noisy pump per seed miss cavitation (16/18 per seed;
robust 18/18), the noisy pumps' 8-h scales being pulled halfway toward the median pump's. Pooling fixes
what is asset-specific in a short scale; a drift every asset's calibration missed alike (test 2's
bearings) stays.

Shared by training, the scorer, explanations, the edge runner and the SKAB evaluation, so they cannot drift
apart; calibrating and storing baselines (Django) is ``models_registry.baseline``. ``apply`` returns float32,
the model input type; the vector is float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PER_ASSET = "per_asset"
PER_ASSET_ROBUST = "per_asset_robust"
PER_ASSET_POOLED = "per_asset_pooled"  # a robust calibration whose scale is pooled with the fleet's (pool)
MODES = (PER_ASSET, PER_ASSET_ROBUST, PER_ASSET_POOLED)
# The modes whose per-asset step is a Calibration, applied as (x - location) / scale, with per-asset
# thresholds: they differ only in how the calibration is made (calibrate, or calibrate then pooled).
ROBUST_MODES = (PER_ASSET_ROBUST, PER_ASSET_POOLED)
MIN_WINDOWS = 5  # fewer windows are a point, not an operating point
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi / 2)
REL_FLOOR = 1e-3
ABS_FLOOR = 1e-6
MAD_LOG_VARIANCE = 1.36  # n·Var(log 1.4826·MAD) for Gaussian data: (1.166)²
POOL_PRIOR_WINDOWS = 136  # ≈ 1.36 / 0.1²: independent windows at which the MAD is known to ±10 %
POOL_HORIZON_S = 86400.0  # a day: the period of a plant's slow normal variation


class BaselineError(ValueError):
    """A baseline cannot be calibrated from the given period; the message says why."""


def expects_baseline(output_spec: Mapping[str, Any] | None) -> bool:
    """True when a model's output_spec asks for per-asset baselined input (a mean vector)."""
    return (output_spec or {}).get("baseline") == PER_ASSET


def is_robust(mode: str | None) -> bool:
    """True for a mode whose per-asset step is a Calibration (ROBUST_MODES), however it was made."""
    return mode in ROBUST_MODES


def baseline_mode(output_spec: Mapping[str, Any] | None) -> str | None:
    """The per-asset step a model's output_spec asks for: None or one of MODES; BaselineError for any other
    value (a spec this code cannot honour must not be scored raw)."""
    value = (output_spec or {}).get("baseline")
    if value in (None, ""):
        return None
    if value not in MODES:
        raise BaselineError(f"unknown baseline mode {value!r}; known: {', '.join(MODES)}")
    return value


@dataclass(frozen=True)
class Calibration:
    """One asset's robust calibration: per-feature location and scale (float64) and how many windows
    gave them. ``to_json`` / ``from_json`` give the plain lists the database stores."""

    location: np.ndarray
    scale: np.ndarray
    count: int

    def __post_init__(self) -> None:
        location = np.asarray(self.location, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if location.ndim != 1 or location.shape != scale.shape:
            raise BaselineError(
                f"a calibration needs one location and one scale per feature, got {location.shape} and "
                f"{scale.shape}"
            )
        if not (np.isfinite(location).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise BaselineError("a calibration's locations must be finite and its scales finite and positive")
        object.__setattr__(self, "location", location)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "count", int(self.count))

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location.tolist(), "scale": self.scale.tolist(), "count": self.count}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """The calibration ``to_json`` wrote; BaselineError when the document is not one."""
        try:
            return cls(
                np.asarray(data["location"], dtype=np.float64),
                np.asarray(data["scale"], dtype=np.float64),
                int(data["count"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BaselineError):
                raise
            raise BaselineError(f"not a stored calibration: {exc}") from None

    def subset(self, columns: Sequence[int] | np.ndarray) -> Calibration:
        """The calibration of some of its features (a version reading fewer columns)."""
        columns = np.asarray(columns, dtype=np.intp)
        return Calibration(self.location[columns], self.scale[columns], self.count)


def usable_rows(X: np.ndarray, flagged: np.ndarray | None = None) -> np.ndarray:
    """Rows of X that may calibrate: complete (every feature finite) and not flagged. ``flagged`` is one
    value per row or per (row, role) (quality bits, or booleans); any non-zero value excludes the row."""
    X = np.asarray(X)
    ok = np.isfinite(X).all(axis=1) if X.ndim == 2 else np.zeros(0, dtype=bool)
    if flagged is not None:
        flagged = np.asarray(flagged)
        if flagged.shape[:1] != ok.shape:
            raise BaselineError(
                f"{flagged.shape[0] if flagged.ndim else 0} quality rows for {len(ok)} windows"
            )
        if len(ok):  # (0, -1) cannot be reshaped; no rows, nothing to exclude
            ok &= ~(flagged.reshape(len(ok), -1) != 0).any(axis=1)
    return ok


def calibrate(X: np.ndarray, flagged: np.ndarray | None = None) -> Calibration:
    """The robust calibration of an asset from its windows in a normal period (see the module docstring);
    BaselineError when fewer than MIN_WINDOWS complete, unflagged windows remain."""
    X = np.asarray(X)
    ok = usable_rows(X, flagged)
    count = int(ok.sum())
    if count < MIN_WINDOWS:
        raise BaselineError(
            f"only {count} of {len(ok)} feature windows in the calibration period are complete and "
            f"unflagged (need at least {MIN_WINDOWS})"
        )
    rows = X[ok].astype(np.float64)
    location = np.median(rows, axis=0)
    deviation = np.abs(rows - location)
    scale = MAD_TO_SIGMA * np.median(deviation, axis=0)
    scale = np.where(scale > 0, scale, MEAN_AD_TO_SIGMA * deviation.mean(axis=0))
    return Calibration(location, _floored(location, scale), count)


def _floored(location: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.maximum(scale, np.maximum(REL_FLOOR * np.abs(location), ABS_FLOOR))


# --- is the calibration period settled? ------------------------------------------------------------------------

TREND_ALPHA = 0.01  # two-sided Mann-Kendall level per asset (Bonferroni over its sensors)
TREND_MIN_CHANGE = 1.0  # the change, in the calibration's own robust σ of that level, worth a warning


@dataclass(frozen=True)
class LevelTrend:
    """A sensor whose level moved steadily through a calibration period: median level of its first and
    last third (sensor units), Mann-Kendall p-value, the change in the calibration's robust σ."""

    role: str
    first: float
    last: float
    p_value: float
    sigmas: float

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "first": self.first,
            "last": self.last,
            "p_value": self.p_value,
            "sigmas": self.sigmas,
        }


def mann_kendall_p(y: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Kendall test of a monotonic trend in ``y`` (in order): S = Σ_{i<j}
    sign(y_j − y_i), Var(S) with the tie correction, normal approximation with continuity correction
    (Mann 1945; Kendall 1975). 1.0 for fewer than 3 values or no variation."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 3:
        return 1.0
    s = float(np.sign(y[None, :] - y[:, None])[np.triu_indices(n, 1)].sum())
    _, ties = np.unique(y, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18.0
    if var <= 0 or s == 0:
        return 1.0
    # Serial correlation makes S vary more than for independent values: Var(S) is inflated by the AR(1)
    # factor (1 + r1) / (1 − r1) of the series after removing its Sen slope (Yue & Wang 2004), r1 ≥ 0.
    i, j = np.triu_indices(n, 1)
    rest = y - float(np.median((y[j] - y[i]) / (j - i))) * np.arange(n)
    rest = rest - rest.mean()
    denom = float(np.dot(rest, rest))
    r1 = min(max(float(np.dot(rest[1:], rest[:-1]) / denom), 0.0), 0.9) if denom > 0 else 0.0
    var *= (1.0 + r1) / (1.0 - r1)
    z = (abs(s) - 1.0) / math.sqrt(var)
    return math.erfc(z / math.sqrt(2.0))


def level_trends(ends: np.ndarray, X: np.ndarray, names: Sequence[str], window_s: float) -> list[LevelTrend]:
    """The sensors whose level (``<role>__mean``) rose or fell steadily through a calibration's windows
    (``ends``, rows of ``X`` over ``names``; only its usable rows): a start-up, a warm-up or a drift that
    the calibration then calls normal, so the asset alerts once it settles (or misses a fault that moves it
    back). Steady: Mann-Kendall p < TREND_ALPHA / (sensors) over non-overlapping windows (overlapping ones
    share readings and would overstate the evidence; the serial correlation left is allowed for), so a
    calibration of a steady asset gets a false warning about once in a hundred (measured on synthetic
    series: 0 % with independent noise, 3 % for four sensors whose level wanders as AR(1) 0.8 from one
    independent window to the next; tests/detection/test_baseline_trends.py); worth saying: the median of
    the last third differs from the first third's by at least TREND_MIN_CHANGE robust σ of the calibration
    itself (a small trend in a long, otherwise steady period is no reason to recalibrate). Both constants were fixed by these
    statements, not by a score; this is a warning for the engineer and changes no calibration. A sudden step
    (a duty change) is not what this looks for: the serial-correlation allowance absorbs much of it."""
    ends = np.asarray(ends, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    order = np.argsort(ends, kind="stable")
    ends, X = ends[order], X[order]
    keep, last = [], -math.inf
    for i, end in enumerate(ends):
        if end - last >= window_s:
            keep.append(i)
            last = end
    levels = [j for j, name in enumerate(names) if name.rpartition("__")[2] == "mean"]
    alpha = TREND_ALPHA / max(len(levels), 1)  # for the asset: one false warning in 100 calibrations
    out = []
    for j in levels:
        role = names[j].rpartition("__")[0]
        column = X[:, j]
        every = column[np.isfinite(column)]
        y = column[keep]
        y = y[np.isfinite(y)]
        if len(y) < 3 or len(every) < MIN_WINDOWS:
            continue
        location = np.median(every)
        scale = float(
            _floored(np.array([location]), np.array([MAD_TO_SIGMA * np.median(np.abs(every - location))]))[0]
        )
        third = max(1, len(y) // 3)
        first, final = float(np.median(y[:third])), float(np.median(y[-third:]))
        sigmas = abs(final - first) / scale
        p = mann_kendall_p(y)
        if p < alpha and sigmas >= TREND_MIN_CHANGE:
            out.append(LevelTrend(role, first, final, p, sigmas))
    return out


def independent_windows(count: int, span_s: float, window_s: float, step_s: float) -> float:
    """``n_eff`` of a calibration of ``count`` windows spanning ``span_s`` seconds (module docstring):
    count / (window_s / step_s), times min(1, span_s / POOL_HORIZON_S)."""
    overlap = max(window_s / step_s, 1.0)
    return count / overlap * min(1.0, max(span_s, 0.0) / POOL_HORIZON_S)


def pool_weight(n_eff: float) -> float:
    """The weight of an asset's own log-scale: n_eff / (n_eff + POOL_PRIOR_WINDOWS)."""
    return n_eff / (n_eff + POOL_PRIOR_WINDOWS)


def pool(
    calibrations: Mapping[Any, Calibration],
    spans_s: Mapping[Any, float],
    window_s: float,
    step_s: float,
) -> dict[Any, Calibration]:
    """Each asset's calibration with its scale shrunk toward the fleet's median log-scale, per feature,
    with weight ``pool_weight(independent_windows(...))`` (see the module docstring); location and count
    unchanged, floors re-applied. ``spans_s``: each calibration's time span (first window start to last
    window end). BaselineError for an empty fleet or calibrations of different feature counts."""
    if not calibrations:
        raise BaselineError("pooling needs at least one calibration")
    shapes = {c.scale.shape for c in calibrations.values()}
    if len(shapes) != 1:
        raise BaselineError(f"pooled calibrations must have the same features, got shapes {sorted(shapes)}")
    if window_s <= 0 or step_s <= 0:
        raise BaselineError("window_s and step_s must be positive")
    centre = np.median(np.log(np.vstack([c.scale for c in calibrations.values()])), axis=0)
    out = {}
    for key, c in calibrations.items():
        w = pool_weight(independent_windows(c.count, float(spans_s[key]), window_s, step_s))
        scale = np.exp(w * np.log(c.scale) + (1.0 - w) * centre)
        out[key] = Calibration(c.location, _floored(c.location, scale), c.count)
    return out


def calibration_span(ends: np.ndarray, window_s: float) -> float:
    """A calibration's time span from the ends of the windows it was computed from: the first one's start to
    the last one's end (0 for none). ``pool`` weighs the calibration's evidence by it."""
    ends = np.asarray(ends, dtype=np.float64)
    return float(ends.max() - ends.min() + window_s) if len(ends) else 0.0


def pooled(
    own: Calibration,
    span_s: float,
    fleet: Sequence[tuple[Calibration, float]],
    window_s: float,
    step_s: float,
) -> Calibration:
    """The "per_asset_pooled" calibration of one asset: its own robust calibration ``own`` (spanning
    ``span_s``) pooled (``pool``) with the OWN calibrations and spans of the other assets of its fleet
    (``fleet``; never already-pooled ones). The fleet's centre is the median over all of them and the asset;
    an asset alone (empty ``fleet``) is its own centre, so it keeps its own scale. The one rule the product
    (models_registry.baseline: training, auto-calibration, recalibration) and the evaluations calibrate
    by; pooling the whole fleet at once gives every asset exactly this."""
    members: dict[int, Calibration] = {0: own}
    spans = {0: float(span_s)}
    for i, (calibration, span) in enumerate(fleet, start=1):
        members[i], spans[i] = calibration, float(span)
    return pool(members, spans, window_s, step_s)[0]


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


def apply(X: np.ndarray, baseline: np.ndarray | list[float] | Calibration) -> np.ndarray:
    """Baselined model input, computed in float64 and returned as float32: X minus the vector
    ("per_asset"), or (X - location) / scale for a Calibration (ROBUST_MODES)."""
    if isinstance(baseline, Calibration):
        return ((np.asarray(X) - baseline.location) / baseline.scale).astype(np.float32)
    return (np.asarray(X) - np.asarray(baseline, dtype=np.float64)).astype(np.float32)


# Peer-relative step (``output_spec["peers"] == PEER_MEDIAN``), on top of a robust calibration: common-mode
# rejection for assets that share a load, a speed or an environment (bearings on one shaft, pumps on one
# header). See ``peer_relative``.
PEER_MEDIAN = "median"
PEER_MODES = (PEER_MEDIAN,)
# The group's level may fall to this share of its calibration before the ratio stops following it (a
# stopped group would otherwise divide by ~0).
MIN_PEER_FACTOR = 0.05
MIN_PEERS = 3  # a median of fewer assets is not a majority's behaviour: 2 peers cannot outvote 1 fault


def peer_mode(output_spec: Mapping[str, Any] | None) -> str | None:
    """The peer step a model's output_spec asks for: None or PEER_MEDIAN; BaselineError for any other value
    or for a peer step without a robust calibration (the step compares standardised deviations)."""
    spec = output_spec or {}
    value = spec.get("peers")
    if value in (None, ""):
        return None
    if value not in PEER_MODES:
        raise BaselineError(f"unknown peer step {value!r}; known: {', '.join(PEER_MODES)}")
    if not is_robust(spec.get("baseline")):
        raise BaselineError(f"the peer step needs a robust calibration: baseline {' or '.join(ROBUST_MODES)}")
    return value


def peer_level(calibration: Calibration) -> np.ndarray:
    """The per-feature level a peer-relative change is a share of: ``max(|location|, scale)`` (a feature
    with no level of its own, e.g. a slope around 0, changes in units of its robust scale instead)."""
    return np.maximum(np.abs(calibration.location), calibration.scale)


def peer_reference(changes: np.ndarray) -> np.ndarray:
    """The group's change per feature from its members' rows ``changes`` [n, d]: the median after setting
    aside, per feature, the member farthest from the median (n >= 3). In a small group the plain median is
    pulled by one extreme member: of four it is the mean of the two middle values and of three the middle
    one, so when one asset fails the others are compared with the upper part of themselves and the lowest
    reads as a fault. Without the farthest member the reference is the median of the rest (of three, the
    mean of the other two). Chosen on synthetic series (tests/detection/test_peer_relative.py, the
    simulator's pumps in tests/models_registry/test_peer_relative_product.py), not on an evaluated run."""
    changes = np.asarray(changes, dtype=np.float64)
    n = len(changes)
    if n < 3:
        return np.median(changes, axis=0)
    farthest = np.argmax(np.abs(changes - np.median(changes, axis=0)), axis=0)
    keep = np.ones(changes.shape, dtype=bool)
    keep[farthest, np.arange(changes.shape[1])] = False
    rest = changes.T[keep.T].reshape(changes.shape[1], n - 1).T
    return np.median(rest, axis=0)


def peer_relative(
    inputs: Mapping[Any, tuple[np.ndarray, np.ndarray]],
    calibrations: Mapping[Any, Calibration],
    groups: Mapping[Any, Any] | None = None,
    min_peers: int = MIN_PEERS,
) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Each asset's deviation from what its peers' median change predicts for it, in its own robust scale.

    ``inputs``: asset -> (window ends, raw feature rows); ``calibrations``: asset -> its robust
    calibration. Per feature, each asset's relative change ``r_i = (x_i - location_i) / level_i``
    (``peer_level``); the group's change ``R`` at a window end is the median of ``r_j`` over the assets
    with a window there (``peer_reference``: without its farthest member, so one asset cannot pull it).
    The model input, in the asset's own robust units: for a feature with a level of its own
    (``|location| > scale``: an amplitude, a flow, a current) ``((1 + r_i) / (1 + R) - 1) · level_i /
    scale_i`` — the asset's reading scaled back to the group's operating point, its noise with it; for one
    without (a slope around 0) ``(r_i - R) · level_i / scale_i``. So a change every peer shows at once in
    proportion to its own level (the rig speeding up, a heavier load on the whole header: amplitudes and
    their noise scale together) cancels; one asset leaving its peers stays (with ``R = 0`` the input is
    the plain robust step's). Not modelled: a shared change that adds the same amount to assets at
    different levels (a temperature over each one's own ambient) — it reads as a difference. The asset is one of its
    peers; the reference holds while fewer than half the group (after its farthest member) deviate. Window ends are multiples
    of the asset type's step, so an end is the same time on every asset. ``groups``: asset -> its peer
    group (default: all one group); only assets of one group are peers. Rows at an end fewer than
    ``min_peers`` assets of the group have are dropped (no reference: not scored); returns asset ->
    (ends kept, model input rows, float32)."""
    if min_peers < 1:
        raise BaselineError("min_peers must be at least 1")
    keys = list(inputs)
    if not keys:
        return {}
    ends = np.concatenate([np.asarray(inputs[k][0], dtype=np.float64) for k in keys])
    changes = np.concatenate(
        [
            (np.asarray(inputs[k][1], dtype=np.float64) - calibrations[k].location)
            / peer_level(calibrations[k])
            for k in keys
        ]
    )
    owner = np.concatenate([np.full(len(inputs[k][0]), i) for i, k in enumerate(keys)])
    group_ids = {g: n for n, g in enumerate(dict.fromkeys((groups or {}).get(k) for k in keys))}
    group = np.array([group_ids[(groups or {}).get(k)] for k in keys], dtype=np.int64)[owner]
    # Rows of one group at one end (ends within a millisecond are one end) are peers.
    grid = np.stack([group, np.round(ends * 1e3).astype(np.int64)], axis=1)
    order = np.lexsort((grid[:, 1], grid[:, 0]))
    _, first, counts = np.unique(grid[order], axis=0, return_index=True, return_counts=True)
    reference = np.full(changes.shape, np.nan)
    for start, n in zip(first, counts, strict=True):
        if n >= min_peers:
            members = order[start : start + n]
            reference[members] = peer_reference(changes[members])
    keep = np.isfinite(reference).all(axis=1) if changes.ndim == 2 else np.zeros(0, dtype=bool)
    out = {}
    for i, k in enumerate(keys):
        mine = (owner == i) & keep
        c = calibrations[k]
        # A feature with a level of its own (|location| > scale) is scaled by the group's change, noise
        # and all: ((1 + r_i) / (1 + reference) - 1). One without is shifted: r_i - reference.
        has_level = np.abs(c.location) > c.scale
        factor = np.where(has_level, np.maximum(1.0 + reference[mine], MIN_PEER_FACTOR), 1.0)
        Z = (1.0 + changes[mine]) / factor - 1.0 - np.where(has_level, 0.0, reference[mine])
        out[k] = (ends[mine], (Z * peer_level(c) / c.scale).astype(np.float32))
    return out
