"""Downsampling of time series for charts: pure NumPy, no ORM.

Two methods are offered:

- **min/max per bucket** (the default): the time range is cut into equal buckets and each bucket keeps
  its lowest and highest sample. Every extreme survives by construction, so a one-sample spike in a month
  of 1 Hz data is still on the chart, which is what a maintenance engineer scans for. It is the same
  aggregation the database does in plant.series.load_buckets (GROUP BY bucket: MIN, MAX), so the raw and
  the SQL path draw the same picture, and it is O(n) with vectorised NumPy.
- **LTTB** (largest-triangle-three-buckets): keeps the points that preserve the visual shape best and
  gives smoother lines, but it is sequential over buckets, needs raw points (it cannot run in SQL) and is
  not guaranteed to keep every spike. Available for raw series when shape matters more than extremes.
"""

from __future__ import annotations

import numpy as np


def minmax_indices(t: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted) of at most `max_points` samples: the min and the max of each of max_points/2
    equal-time buckets. Series that already fit are returned whole. NaN values are never chosen."""
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    n_buckets = max(1, max_points // 2)
    span = t[-1] - t[0]
    if span <= 0:
        bucket = np.zeros(n, dtype=np.int64)
    else:
        bucket = np.minimum(((t - t[0]) / span * n_buckets).astype(np.int64), n_buckets - 1)
    # Sort by (bucket, value): the first row of each bucket is its min, the last its max.
    finite = ~np.isnan(y)
    idx = np.flatnonzero(finite)
    order = idx[np.lexsort((y[idx], bucket[idx]))]
    b_sorted = bucket[order]
    starts = np.flatnonzero(np.r_[True, b_sorted[1:] != b_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)] - 1
    return np.unique(np.concatenate([order[starts], order[ends]]))


def lttb_indices(t: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` samples chosen by largest-triangle-three-buckets (Steinarsson
    2013). The first and last samples are always kept."""
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    if max_points < 3:
        return thin_indices(n, max_points)
    edges = np.linspace(1, n - 1, max_points - 1).astype(np.int64)
    chosen = np.empty(max_points, dtype=np.int64)
    chosen[0], chosen[-1] = 0, n - 1
    prev = 0
    for i in range(max_points - 2):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        nxt_lo, nxt_hi = edges[i + 1], edges[i + 2] if i + 2 < len(edges) else n
        nxt_hi = max(nxt_hi, nxt_lo + 1)
        avg_t, avg_y = t[nxt_lo:nxt_hi].mean(), y[nxt_lo:nxt_hi].mean()
        area = np.abs((t[prev] - avg_t) * (y[lo:hi] - y[prev]) - (t[prev] - t[lo:hi]) * (avg_y - y[prev]))
        prev = lo + int(np.argmax(area))
        chosen[i + 1] = prev
    return np.unique(chosen)


def minmax_points(t_mid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-bucket (time, min, max) aggregates into a drawable line: two points per bucket at the
    bucket's time, ordered so the line reaches the extreme nearer to the previous point first (this keeps
    a flat signal flat instead of drawing a zig-zag band)."""
    n = len(t_mid)
    if n == 0:
        return np.empty(0), np.empty(0)
    # Order within bucket i depends on where bucket i-1 ended; decide by comparing with its midpoint,
    # which is vectorisable and close enough to the previous point for drawing.
    prev_level = np.r_[lo[0], (lo[:-1] + hi[:-1]) / 2]
    low_first = np.abs(lo - prev_level) <= np.abs(hi - prev_level)
    first = np.where(low_first, lo, hi)
    second = np.where(low_first, hi, lo)
    x = np.repeat(t_mid, 2)
    y = np.empty(2 * n)
    y[0::2], y[1::2] = first, second
    same = lo == hi
    keep = np.ones(2 * n, dtype=bool)
    keep[1::2] = ~same  # one point is enough where min == max
    return x[keep], y[keep]


def thin_indices(n: int, max_points: int) -> np.ndarray:
    """Evenly spread indices of at most `max_points` out of n (used for flag markers)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).astype(np.int64))
