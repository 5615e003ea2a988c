"""Feature windows: readings of an asset's sensors turned into named feature vectors.

Pure NumPy and free of Django on purpose: the same code serves training, online scoring, offline
evaluation and the edge runner (``python -m edge.runner``), which runs on a gateway that has only
numpy and onnxruntime. Change a statistic here and every model trained before the change is invalid, so the
feature names (``<role>__<stat>``) are stored with each model version and checked before use.

Windows
    A window ending at ``e`` covers the half-open interval ``(e - window_s, e]``; ends are multiples of
    ``step_s`` (so the same window has the same end wherever it is computed) and lie in
    ``[start_s + window_s, end_s]``. Regular 1 Hz data therefore gives exactly ``window_s`` samples per window.

Statistics per role (``STATS``)
    mean, std (population), min, max, slope (least-squares, value units per second) and diff_rms (root mean
    square of successive differences: roughness/noise that mean and std miss when a signal also trends).

Gaps and flagged readings (documented handling)
    * Readings whose quality has OUT_OF_RANGE, SPIKE or SOURCE_BAD set (``EXCLUDED_QUALITY``), and
      non-finite values, are left out of every statistic; their bits still show in ``Windows.flagged``.
    * ``coverage`` is the share of the expected samples (``window_s / sample period``) that were usable,
      clipped to 1. A window whose coverage for ANY role is below ``min_coverage`` (or that has no usable
      reading at all) is dropped, never imputed; its end is listed in ``Windows.dropped_ends`` so callers can
      report missing data instead of silently scoring less.
    * Empty input, a missing role, a range shorter than one window: a ``Windows`` with ``n = 0`` and the
      right shapes, never an exception.

Roles an asset does not have (optional sensors)
    ``absent_roles`` names the roles an asset has no sensor for (an optional role of its type). Their
    columns are NaN, their coverage 0 and flags 0 in every window, their readings (if any are passed) are
    ignored, and the keep rule above runs over the roles the asset has: a window complete for those is
    kept. A model reads only windows whose features it uses are all finite, so a version trained on the
    roles present scores such an asset, and one reading an absent role scores none of its windows (its
    callers say why). An asset with every role absent has no window. With no absent role the output is
    bit-identical to what it would be without the argument.
    * The sample period of a role is ``sample_period_s`` when given, else the median positive spacing of its
      timestamps, else 1 s (the default ``Sensor.sample_period_s``).

Cost: sums come from cumulative sums over chunks of windows (each chunk with its own time and value origin
so that cancellation stays at ~1e-12 relative); min, max and the quality OR use ``np.*.reduceat`` on
interleaved window bounds. 1e6 readings take well under a second. There is one implementation,
``build_windows_many`` (many assets in one pass: NumPy's fixed cost per call paid once, not per asset, for
the scoring sweep); ``build_windows`` is its one-asset case, used by training, evaluation and the edge runner.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from detection.quality import OUT_OF_RANGE, SOURCE_BAD, SPIKE

STATS: tuple[str, ...] = ("mean", "std", "min", "max", "slope", "diff_rms")
# How each stat reads in a sentence ("Vibration variability 0.4 mm/s"), for explanations and the board.
STAT_LABELS: dict[str, str] = {
    "mean": "mean",
    "std": "variability",
    "min": "minimum",
    "max": "maximum",
    "slope": "trend",
    "diff_rms": "roughness",
}
SEPARATOR = "__"

# Readings whose value says nothing about the process: out of range, a spike, the source's own "bad".
EXCLUDED_QUALITY = OUT_OF_RANGE | SPIKE | SOURCE_BAD

MAX_WINDOWS = 5_000_000
_DEFAULT_PERIOD_S = 1.0
_FEW_ROWS = 32  # below this many rows _prefix_rows sums row by row (see there)
_SEARCHSORTED_RUN = 256  # queries per segment from which _bisect_right uses np.searchsorted (see there)

Series = tuple[np.ndarray, np.ndarray, np.ndarray]
K = TypeVar("K")


@dataclass(frozen=True)
class Windows:
    """Feature windows of one asset: row i of every array describes the window ending at ``ends[i]``."""

    ends: np.ndarray  # float64 [n], epoch seconds, multiples of step_s
    X: np.ndarray  # float32 [n, d], columns named by ``names``
    names: list[str]
    coverage: np.ndarray  # float64 [n, n_roles], usable share of the expected samples
    flagged: np.ndarray  # uint16 [n, n_roles], OR of the quality bits of all readings in the window
    roles: list[str] = field(default_factory=list)
    dropped_ends: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ends of windows left out

    def __len__(self) -> int:
        return len(self.ends)


def feature_names(roles: list[str]) -> list[str]:
    """Ordered feature names for the roles: ``<role>__<stat>``, role-major, stats in ``STATS`` order."""
    _check_roles(roles)
    return [f"{role}{SEPARATOR}{stat}" for role in roles for stat in STATS]


def role_of(feature_name: str) -> str:
    """The sensor role a feature name belongs to (``"vibration__mean"`` -> ``"vibration"``)."""
    return feature_name.rsplit(SEPARATOR, 1)[0]


def roles_read(feature_names: list[str]) -> list[str]:
    """The roles a model with these features reads, in the order they first appear (a version's role set)."""
    return list(dict.fromkeys(role_of(name) for name in feature_names))


def build_windows(
    series: Mapping[str, Series],
    roles: list[str],
    *,
    window_s: float,
    step_s: float,
    start_s: float | None = None,
    end_s: float | None = None,
    min_coverage: float = 0.5,
    sample_period_s: float | Mapping[str, float] | None = None,
    absent_roles: Collection[str] = (),
) -> Windows:
    """Turn per-role readings into feature windows (see the module docstring for every rule).

    ``series`` maps role -> (ts seconds float64, values float64, quality uint16); arrays of one role have the
    same length. Unsorted timestamps are sorted. ``absent_roles``: roles the asset has no sensor for (see
    the module docstring). Raises ValueError only for invalid arguments (bad window shape, mismatched array
    lengths), never for missing or sparse data.
    """
    return build_windows_many(
        {0: series},
        roles,
        window_s=window_s,
        step_s=step_s,
        start_s={0: start_s},
        end_s={0: end_s},
        min_coverage=min_coverage,
        sample_period_s={0: sample_period_s},
        absent_roles={0: absent_roles},
    )[0]


def _check_roles(roles: list[str]) -> None:
    if isinstance(roles, str) or not roles:
        raise ValueError("roles must be a non-empty list of role keys.")
    if len(set(roles)) != len(roles):
        raise ValueError(f"roles must be unique, got {list(roles)}.")
    for role in roles:
        if not isinstance(role, str) or not role or SEPARATOR in role:
            raise ValueError(f"role keys must be non-empty strings without {SEPARATOR!r}, got {role!r}.")


def _normalise(role: str, item: Series | None) -> Series:
    if item is None:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.uint16)
    ts, values, quality = (np.asarray(a) for a in item)
    ts = ts.astype(np.float64, copy=False).ravel()
    values = values.astype(np.float64, copy=False).ravel()
    quality = quality.astype(np.uint16, copy=False).ravel()
    if not (len(ts) == len(values) == len(quality)):
        raise ValueError(
            f"Role {role!r}: ts, values and quality must have the same length "
            f"(got {len(ts)}, {len(values)}, {len(quality)})."
        )
    finite_ts = np.isfinite(ts)
    if not finite_ts.all():
        ts, values, quality = ts[finite_ts], values[finite_ts], quality[finite_ts]
    if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, values, quality = ts[order], values[order], quality[order]
    return ts, values, quality


def _normalise_many(
    role: str, items: list[Series | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_normalise`` of every item, end to end: (ts, values, quality, segment offsets). Items already in
    normal form (1-D float64 / float64 / uint16 of one length, finite sorted ts: the scoring sweep's reads)
    are checked together, without NumPy's fixed cost per item; the others go through ``_normalise``. Either
    way the arrays hold the same numbers in the same order as ``_normalise`` gives."""
    parts: list[Series] = []
    for item in items:
        if item is None:
            parts.append(_normalise(role, None))
            continue
        ts, values, quality = item
        if (
            type(ts) is np.ndarray
            and type(values) is np.ndarray
            and type(quality) is np.ndarray
            and ts.dtype == np.float64
            and values.dtype == np.float64
            and quality.dtype == np.uint16
            and ts.ndim == values.ndim == quality.ndim == 1
            and len(ts) == len(values) == len(quality)
        ):
            parts.append((ts, values, quality))
        else:
            parts.append(_normalise(role, item))
    if not parts:
        return (*_normalise(role, None), np.zeros(1, dtype=np.int64))
    lengths = np.fromiter((len(p[0]) for p in parts), dtype=np.int64, count=len(parts))
    seg = np.r_[0, np.cumsum(lengths)]
    ts, values, quality = (np.concatenate([p[i] for p in parts]) for i in range(3))
    # A non-finite or out-of-order ts anywhere: those items through _normalise (drops, stable sort).
    inner = np.ones(len(ts), dtype=bool)
    inner[seg[1:-1][lengths[1:] > 0]] = False  # a segment's first reading has no predecessor in it
    with np.errstate(invalid="ignore"):
        bad_at = ~np.isfinite(ts) | np.r_[False, inner[1:] & (ts[1:] < ts[:-1])]
    if bad_at.any():
        owner = np.repeat(np.arange(len(parts)), lengths)
        for i in np.unique(owner[bad_at]).tolist():
            parts[i] = _normalise(role, parts[i])
        return _normalise_many(role, parts)
    return ts, values, quality, seg


def _segments(
    ts: np.ndarray, values: np.ndarray, quality: np.ndarray, seg: np.ndarray, picked: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The segments ``picked`` (ascending) of end-to-end columns, end to end."""
    keep = np.repeat(np.isin(np.arange(len(seg) - 1), picked), np.diff(seg))
    return ts[keep], values[keep], quality[keep], np.r_[0, np.cumsum(np.diff(seg)[picked])]


def _period(role: str, ts: np.ndarray, given: float | Mapping[str, float] | None) -> float:
    if isinstance(given, Mapping):
        given = given.get(role)
    if given is not None:
        if not (np.isfinite(given) and given > 0):
            raise ValueError(f"sample_period_s for role {role!r} must be positive, got {given!r}.")
        return float(given)
    spacing = np.diff(ts)
    spacing = spacing[spacing > 0]
    return float(np.median(spacing)) if len(spacing) else _DEFAULT_PERIOD_S


def _interleave(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # reduceat over [lo0, hi0, lo1, hi1, ...]: even outputs are the (possibly overlapping) windows.
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2], idx[1::2] = lo, hi
    return idx


def _window_moments(
    window_sums: list[np.ndarray], s_dd: np.ndarray, lw: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance, slope and diff RMS of windows [lw, h) from their sums of v, v², t, t², t·v and of the
    squared successive differences."""
    s_v, s_vv, s_t, s_tt, s_tv = window_sums
    cnt = (h - lw).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s_v / cnt
        var = np.maximum(s_vv / cnt - mean * mean, 0.0)
        sxx = s_tt - s_t * s_t / cnt
        sxy = s_tv - s_t * s_v / cnt
        slope = np.where(sxx > 1e-12 * np.maximum(s_tt, 1.0), sxy / sxx, 0.0)
        n_pairs = np.maximum(h - lw - 1, 0)
        diff_rms = np.where(n_pairs > 0, np.sqrt(np.maximum(s_dd, 0.0) / np.maximum(n_pairs, 1)), 0.0)
    return mean, var, slope, diff_rms


def _empty(names: list[str], roles: list[str]) -> Windows:
    return Windows(
        ends=np.zeros(0),
        X=np.zeros((0, len(names)), dtype=np.float32),
        names=names,
        coverage=np.zeros((0, len(roles))),
        flagged=np.zeros((0, len(roles)), dtype=np.uint16),
        roles=list(roles),
        dropped_ends=np.zeros(0),
    )


def build_windows_many(
    series_by_asset: Mapping[K, Mapping[str, Series]],
    roles: list[str],
    *,
    window_s: float,
    step_s: float,
    start_s: Mapping[K, float | None] | None = None,
    end_s: Mapping[K, float | None] | None = None,
    min_coverage: float = 0.5,
    sample_period_s: float | Mapping[K, float | Mapping[str, float] | None] | None = None,
    absent_roles: Mapping[K, Collection[str]] | None = None,
) -> dict[K, Windows]:
    """``build_windows`` for many assets in one vectorised pass, bit-identical to calling it per asset.

    ``start_s``/``end_s`` map asset key -> bound (missing or None: from the data, as in build_windows);
    ``sample_period_s`` is one number for every asset or maps asset key -> what build_windows accepts;
    ``absent_roles`` maps asset key -> the roles it has no sensor for (missing: none).
    NumPy's fixed cost per call, paid once per asset and role by build_windows, is paid once per batch here
    (the scoring sweep builds windows for hundreds of assets at a time). To stay bit-identical the sums keep
    build_windows' per-(asset, role, chunk) origins and prefix sums: chunks of equal length are stacked into
    one matrix (row sums and row cumsums run the same pairwise / sequential additions as on a 1-D slice).
    Windows that cannot have a usable reading of every role (hours of look-back around a minute of data)
    are listed in ``dropped_ends`` without computing statistics for them.
    """
    _check_roles(roles)
    window_s, step_s = float(window_s), float(step_s)
    if not (np.isfinite(window_s) and window_s > 0 and np.isfinite(step_s) and step_s > 0):
        raise ValueError(f"window_s and step_s must be positive numbers, got {window_s!r} and {step_s!r}.")
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be between 0 and 1, got {min_coverage!r}.")
    names = feature_names(roles)
    n_roles = len(roles)
    keys = list(series_by_asset)
    out: dict[K, Windows] = {}

    # Per asset: the roles it has (absent roles are empty series, as in build_windows).
    cand: list[tuple[K, set[str]]] = []
    for key in keys:
        absent = set(absent_roles.get(key, ())) if absent_roles is not None else set()
        unknown = absent.difference(roles)
        if unknown:
            raise ValueError(
                f"absent_roles of {key!r} names roles not among {list(roles)}: {sorted(unknown)}"
            )
        if len(absent) == n_roles:
            out[key] = _empty(names, roles)
            continue
        cand.append((key, absent))
    # Per role, every candidate's normalised series end to end (segment i: seg[i]:seg[i + 1]).
    columns = [
        _normalise_many(
            role, [None if role in absent else series_by_asset[key].get(role) for key, absent in cand]
        )
        for role in roles
    ]
    firsts, lasts = [], []
    for ts, _, _, seg in columns:
        has = seg[1:] > seg[:-1]
        at_first, at_last = np.minimum(seg[:-1], len(ts) - 1), np.maximum(seg[1:] - 1, 0)
        firsts.append(np.where(has, ts[at_first] if len(ts) else 0.0, np.nan).tolist())
        lasts.append(np.where(has, ts[at_last] if len(ts) else 0.0, np.nan).tolist())

    # Per asset (cheap Python): window range and sample periods, as build_windows does.
    live: list[tuple[K, int, list[float], int, int]] = []
    absent_rows: list[list[bool]] = []
    bounds = [c[3].tolist() for c in columns]
    for i, (key, absent) in enumerate(cand):
        data_firsts = [f[i] for f in firsts if f[i] == f[i]]  # NaN: the role has no reading
        data_lasts = [last[i] for last in lasts if last[i] == last[i]]
        given_start = start_s.get(key) if start_s is not None else None
        given_end = end_s.get(key) if end_s is not None else None
        start = float(given_start) if given_start is not None else (min(data_firsts) if data_firsts else None)
        end = float(given_end) if given_end is not None else (max(data_lasts) if data_lasts else None)
        if start is None or end is None:
            out[key] = _empty(names, roles)
            continue
        k0 = int(np.ceil((start + window_s) / step_s - 1e-9))
        k1 = int(np.floor(end / step_s + 1e-9))
        if k1 < k0:
            out[key] = _empty(names, roles)
            continue
        if k1 - k0 + 1 > MAX_WINDOWS:
            raise ValueError(
                f"{k1 - k0 + 1} windows requested for {key!r} (more than {MAX_WINDOWS}); narrow start_s/end_s "
                "or widen step_s."
            )
        given = sample_period_s.get(key) if isinstance(sample_period_s, Mapping) else sample_period_s
        periods = [
            _period(role, c[0][b[i] : b[i + 1]], given)
            for role, c, b in zip(roles, columns, bounds, strict=True)
        ]
        live.append((key, i, periods, k0, k1))
        absent_rows.append([role in absent for role in roles])
    if not live:
        return {key: out[key] for key in keys}
    if len(live) < len(cand):  # keep the live assets' segments only (same values, same order)
        picked = np.array([i for _, i, *_ in live], dtype=np.int64)
        columns = [_segments(ts, values, quality, seg, picked) for ts, values, quality, seg in columns]

    # Only windows where every role the asset has holds a usable reading can be kept; the scoring look-back
    # asks for hours of ends around a minute of data, so the others (dropped, all NaN) are never materialised
    # per role. The candidate k range per asset is widened by two steps: exactness comes from the counts.
    absent_mask = np.array(absent_rows, dtype=bool).reshape(len(live), n_roles)
    per_role = []
    k_lo = np.array([k0 for *_, k0, _ in live], dtype=np.int64)
    k_hi = np.array([k1 for *_, k1 in live], dtype=np.int64)
    for r in range(n_roles):
        ts, values, quality, seg = columns[r]
        usable = ((quality & EXCLUDED_QUALITY) == 0) & np.isfinite(values)
        useg = np.r_[0, np.cumsum(usable)][seg]
        uts, uvalues = ts[usable], values[usable]
        has = useg[1:] > useg[:-1]
        first = np.where(has, uts[np.minimum(useg[:-1], len(uts) - 1)] if len(uts) else 0.0, 0.0)
        last = np.where(has, uts[np.maximum(useg[1:] - 1, 0)] if len(uts) else 0.0, 0.0)
        # An absent role narrows nothing (its windows are NaN by design), a present one without data empties.
        no_data = np.where(absent_mask[:, r], k_lo, k_hi + 1)
        with np.errstate(invalid="ignore", over="ignore"):
            k_lo = np.where(has, np.maximum(k_lo, np.floor(first / step_s) - 2), no_data).astype(np.int64)
            k_hi = np.minimum(k_hi, np.where(has, np.ceil((last + window_s) / step_s) + 2, k_hi)).astype(
                np.int64
            )
        per_role.append((ts, quality, seg, uts, uvalues, useg))

    n_cand = np.maximum(k_hi - k_lo + 1, 0)
    owner = np.repeat(np.arange(len(live)), n_cand)
    c_off = np.r_[0, np.cumsum(n_cand)]
    k = k_lo[owner] + (np.arange(int(c_off[-1]), dtype=np.int64) - c_off[owner])
    ends = k.astype(np.float64) * step_s
    k_first = np.array([k0 for *_, k0, _ in live], dtype=np.int64)
    n_all = np.array([k1 - k0 + 1 for *_, k0, k1 in live], dtype=np.int64)
    local = k - k_first[owner]
    # Chunks: runs of `chunk` windows of one asset, origin at the run's first end (cancellation stays small).
    chunk = max(64, int(64 * window_s / step_s))
    j0 = local // chunk * chunk
    j1 = np.minimum(j0 + chunk, n_all[owner]) - 1
    e0 = (k_first[owner] + j0).astype(np.float64) * step_s
    e1 = (k_first[owner] + j1).astype(np.float64) * step_s
    total = len(ends)

    stats = np.full((total, len(names)), np.nan, dtype=np.float64)
    coverage = np.zeros((total, n_roles), dtype=np.float64)
    flagged = np.zeros((total, n_roles), dtype=np.uint16)
    counts = np.zeros((total, n_roles), dtype=np.int64)
    for r, (ts, quality, seg, uts, uvalues, useg) in enumerate(per_role):
        lo, hi = _segment_bounds(ts, seg[owner], seg[owner + 1], ends, window_s)
        padded_q = np.append(quality, np.uint16(0))
        ored = np.bitwise_or.reduceat(padded_q, _interleave(lo, hi))[0::2] if total else lo
        flagged[:, r] = np.where(hi > lo, ored, 0).astype(np.uint16)

        first, stop = useg[owner], useg[owner + 1]
        ulo, uhi = _segment_bounds(uts, first, stop, ends, window_s)
        a = _bisect_right(uts, first, stop, e0 - window_s)
        b = _bisect_right(uts, first, stop, e1)
        count = uhi - ulo
        block = _many_stats(uts, uvalues, ulo, uhi, a, b, e0)
        period = np.array([periods[r] for _, _, periods, *_ in live])[owner]
        counts[:, r] = count
        coverage[:, r] = np.minimum(count / np.maximum(window_s / period, 1.0), 1.0)
        stats[:, r * len(STATS) : (r + 1) * len(STATS)] = block

    keep = np.all(((counts > 0) & (coverage >= min_coverage)) | absent_mask[owner], axis=1)
    X = stats.astype(np.float32)
    for i, (key, *_, k0, k1) in enumerate(live):
        rows = slice(int(c_off[i]), int(c_off[i + 1]))
        kept = keep[rows]
        all_ends = np.arange(k0, k1 + 1, dtype=np.float64) * step_s
        dropped = np.ones(len(all_ends), dtype=bool)
        dropped[local[rows][kept]] = False
        out[key] = Windows(
            ends=ends[rows][kept],
            X=X[rows][kept],
            names=names,
            coverage=coverage[rows][kept],
            flagged=flagged[rows][kept],
            roles=list(roles),
            dropped_ends=all_ends[dropped],
        )
    return {key: out[key] for key in keys}


def _segment_bounds(
    ts: np.ndarray, first: np.ndarray, stop: np.ndarray, ends: np.ndarray, window_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per window, ``searchsorted(ts[first:stop], x, side="right") + first`` for x = end - window_s and end."""
    lows = _bisect_right(ts, first, stop, ends - window_s)
    return lows, _bisect_right(ts, first, stop, ends, at_least=lows)


def _bisect_right(
    ts: np.ndarray, first: np.ndarray, stop: np.ndarray, x: np.ndarray, at_least: np.ndarray | None = None
) -> np.ndarray:
    """``searchsorted(ts[first[i]:stop[i]], x[i], side="right") + first[i]`` for every i. Segments with many
    queries (one asset's long series) use np.searchsorted per segment; many short segments (the scoring
    sweep) one vectorised binary search over all of them, starting at ``at_least`` when the caller knows a
    lower bound of the answer. Both only compare, so the answers are identical."""
    first, stop = first.astype(np.int64), stop.astype(np.int64)
    if len(x) == 0:
        return first
    run = np.flatnonzero(np.r_[True, (first[1:] != first[:-1]) | (stop[1:] != stop[:-1])])
    if len(x) >= _SEARCHSORTED_RUN * len(run):
        out = np.empty(len(x), dtype=np.int64)
        for i0, i1 in zip(run.tolist(), [*run[1:].tolist(), len(x)]):
            lo, hi = int(first[i0]), int(stop[i0])
            out[i0:i1] = np.searchsorted(ts[lo:hi], x[i0:i1], side="right") + lo
        return out
    left, right = (first if at_least is None else at_least.astype(np.int64)), stop
    while True:
        open_ = left < right
        if not open_.any():
            return left
        mid = (left + right) // 2
        below = open_ & (ts[np.where(open_, mid, 0)] <= x)
        left = np.where(below, mid + 1, left)
        right = np.where(open_ & ~below, mid, right)


def _many_stats(
    ts: np.ndarray,
    values: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    origin: np.ndarray,
) -> np.ndarray:
    """The STATS block [n, len(STATS)] for windows of many assets (NaN where a window has no reading); per
    window its chunk's [a, b) and time origin."""
    total = len(lo)
    block = np.full((total, len(STATS)), np.nan)
    count = hi - lo
    if len(ts) == 0 or total == 0:
        return block
    padded = np.append(values, 0.0)
    idx = _interleave(lo, hi)
    block[:, 2] = np.minimum.reduceat(padded, idx)[0::2]
    block[:, 3] = np.maximum.reduceat(padded, idx)[0::2]

    # Chunks: consecutive windows sharing [a, b) and origin; a chunk with b <= a has no reading at all.
    new = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1]) | (origin[1:] != origin[:-1])]
    starts = np.flatnonzero(new)
    of_window = np.cumsum(new) - 1
    ca, cb, corigin = a[starts], b[starts], origin[starts]
    length = cb - ca
    live = np.flatnonzero(length > 0)
    for size in np.unique(length[live]).tolist():
        group = live[length[live] == size]
        rows = np.full(len(starts), -1, dtype=np.int64)
        rows[group] = np.arange(len(group))
        windows = np.flatnonzero(rows[of_window] >= 0)
        row = rows[of_window[windows]]
        cols = ca[group][:, None] + np.arange(size)
        raw = values[cols]
        centre = raw.sum(axis=1) / size  # == values[a:b].mean(): the same pairwise sum per row
        t = ts[cols] - corigin[group][:, None]
        v = raw - centre[:, None]
        sums = [_prefix_rows(x) for x in (v, v * v, t, t * t, t * v)]
        pairs = _prefix_rows((raw[:, 1:] - raw[:, :-1]) ** 2)
        pairs = np.concatenate([pairs, pairs[:, -1:]], axis=1)
        base = ca[of_window[windows]]
        lw, h = lo[windows] - base, hi[windows] - base
        mean, var, slope, diff_rms = _window_moments(
            [x[row, h] - x[row, lw] for x in sums], pairs[row, np.maximum(h - 1, lw)] - pairs[row, lw], lw, h
        )
        block[windows, 0] = mean + centre[row]
        block[windows, 1] = np.sqrt(var)
        block[windows, 4] = slope
        block[windows, 5] = diff_rms
    block[count == 0] = np.nan
    return block


def _prefix_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise prefix sums with a leading 0. NumPy accumulates along axis 1 one column at a time across the
    rows, so a few long rows (one asset, long windows) pay NumPy's loop overhead per element; those rows are
    summed one by one instead. Both are the same sequential additions, so the result is bit-identical."""
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float64)
    out[:, 0] = 0.0
    if x.shape[0] < _FEW_ROWS:
        for row in range(x.shape[0]):
            np.cumsum(x[row], out=out[row, 1:])
    else:
        np.cumsum(x, axis=1, out=out[:, 1:])
    return out
