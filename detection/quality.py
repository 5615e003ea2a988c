"""Per-reading data-quality flags, as pure NumPy over time-ordered series (no ORM here): the ingest's
rules (plant.ingest flags every stored reading with them) and the edge agent's (edge.decide flags the
readings it decides on with the same function and the parameters its bundle ships).


Every flag of reading i depends only on reading i and the readings before it in time, so a batch is
flagged by prepending the stored history just before it (its *context*) and computing over the whole:

- OUT_OF_RANGE: the value lies outside the sensor's [valid_min, valid_max] (either bound may be absent).
- SPIKE: |x_i - median(prev K)| > spike_mads x scale, with scale = max(1.4826 x MAD(prev K), floor) and
  floor = max(SPIKE_FLOOR_FRACTION x max(|median(prev K)|, valid_max - valid_min), resolution), where
  resolution is the smallest non-zero step between consecutive values of the previous K values (never later
  readings, so a reading's flags do not depend on how its stream was batched). The floor is what
  keeps a perfectly flat signal (MAD = 0) from flagging the first bit of noise, and a quantised one from
  flagging every change of level: with the defaults a deviation must exceed 8 x 0.1 % of the signal level
  (or of the valid range, when both bounds are known) and 8 quantisation steps. The
  check starts once SPIKE_MIN_HISTORY previous values exist. A genuine step change flags its first few
  samples until the rolling median has moved, which is what a robust spike rule should do.
  A SPIKE is a sensor glitch, so the outlier must also be *isolated*: an otherwise normal signal with one
  reading far off. Process noise (cavitation, turbulence, a rough duty change) is a sustained rise in
  spread in which many readings deviate, and flagging it would send a technician to a healthy transmitter
  (the alert gate files flagged dominant sensors as "check the sensor"). So an outlier is not flagged when
  its previous K values were already restless: more than SPIKE_UNREST_SHARE (10 %) of them lay beyond
  SPIKE_UNREST_SIGMAS (3) robust sigmas of the same median and scale. Values the outlier dwarfs by
  SPIKE_DOMINANCE (4x) or more are not counted, so a huge glitch in noisy-but-sane data is still flagged,
  and so is a series of glitches up to one in ten readings (three in a 30-value window). Limits: being
  causal, the rule cannot tell the very first reading of a sudden process change from a glitch, so that
  one reading may still flag (its successors, unlike a glitch's, keep deviating and are not flagged); and
  a denser storm of similar-sized glitches reads as unrest. Cost: the test only runs on the rare outliers,
  so it adds next to nothing to a batch. The previous K values are those since the last GAP (or fewer):
  after a gap the history restarts, so the readings that resume after a link outage are not spikes however
  far the process moved meanwhile (a glitch among them is flagged once SPIKE_MIN_HISTORY new values exist).
- STUCK: the value equals the previous one exactly for at least `stuck_samples` consecutive samples;
  every sample of the run from the N-th one on is flagged (a run that began in the context counts).
- GAP: more than gap_factor x sample_period_s seconds passed since the previous reading; the reading
  that ends the gap carries the flag. Not when the reading's source stated that it carries the previous
  one on unchanged (`continues_s` equal to the previous reading's time: a report-by-exception value read
  as current, held by the bridge, connectivity.hold): silence of an unchanged value is no missing data.

Out-of-order data: the caller sorts context + batch by time before flagging, and the context contains
the stored readings just before the batch *and* those stored inside the batch's time span, so a late
reading is judged against its true neighbours in time. Flags of readings already stored are never
rewritten: a late reading that fills a gap does not clear the GAP flag of the stored reading after it.

The bits are defined here, the one place the Django-free core and the apps share: ``plant.choices.QualityFlag``
names them for the apps (labels and colours).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

OUT_OF_RANGE = 1
SPIKE = 2
STUCK = 4
GAP = 8  # the reading that ends a gap of missing sample periods
DRIFT = 16
# The source's own verdict (an OPC UA status code; ``SOURCE_FLAGS`` by the status's word): the value is
# kept and shown, but flagged.
SOURCE_UNCERTAIN = 32
SOURCE_BAD = 64
ALL_FLAGS = OUT_OF_RANGE | SPIKE | STUCK | GAP | DRIFT | SOURCE_UNCERTAIN | SOURCE_BAD
SOURCE_FLAGS = {"good": 0, "uncertain": SOURCE_UNCERTAIN, "bad": SOURCE_BAD}
# Readings missing is the data link's doing (availability), every other flag the sensor's.
AVAILABILITY_FLAGS = GAP
SENSOR_FAULT_FLAGS = ALL_FLAGS & ~AVAILABILITY_FLAGS

MAD_TO_SIGMA = 1.4826
SPIKE_FLOOR_FRACTION = 1e-3
SPIKE_MIN_HISTORY = 5
# Isolation test of a SPIKE candidate (see the module docstring): the previous window is restless when more
# than SPIKE_UNREST_SHARE of it lay beyond SPIKE_UNREST_SIGMAS robust sigmas, not counting the values the
# candidate dwarfs by SPIKE_DOMINANCE or more.
SPIKE_UNREST_SIGMAS = 3.0
SPIKE_UNREST_SHARE = 0.1
SPIKE_DOMINANCE = 4.0
TINY = 1e-12


def _as_row_array(value: float | np.ndarray | None, n: int) -> np.ndarray:
    """A per-row float array from a scalar, None (-> NaN, i.e. 'no bound') or an array."""
    if value is None:
        return np.full(n, np.nan)
    arr = np.asarray(value, dtype=np.float64)
    return np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr


def gap_before(ts_s: np.ndarray, period: float | np.ndarray, gap_factor: float) -> np.ndarray:
    """The GAP rule's time test: per reading (times in order), whether more than gap_factor x period seconds
    passed since the previous one (never the first). The ingest's flags and the asset chart's line breaks."""
    ts_s = np.asarray(ts_s, dtype=np.float64)
    gap = np.zeros(len(ts_s), dtype=bool)
    gap[1:] = (ts_s[1:] - ts_s[:-1]) > gap_factor * _as_row_array(period, len(ts_s))[1:]
    return gap


def compute_flags(
    group: np.ndarray,
    ts_s: np.ndarray,
    values: np.ndarray,
    target: np.ndarray | None = None,
    *,
    valid_min: float | np.ndarray | None,
    valid_max: float | np.ndarray | None,
    sample_period_s: float | np.ndarray,
    spike_mads: float,
    stuck_samples: int,
    gap_factor: float,
    window: int = 30,
    continues_s: np.ndarray | None = None,
) -> np.ndarray:
    """Quality bits of many series at once.

    Rows are grouped by `group` (e.g. sensor) and sorted by time within each group; the groups are
    contiguous. Per-sensor settings may be scalars or per-row arrays. `target` marks the rows whose flags
    are wanted (the others are context); flags of non-target rows are returned as 0. `continues_s`: per
    row, the time of the reading it carries on unchanged (NaN: none; see GAP).
    """
    n = len(values)
    flags = np.zeros(n, dtype=np.uint16)
    if n == 0:
        return flags
    values = np.asarray(values, dtype=np.float64)
    ts_s = np.asarray(ts_s, dtype=np.float64)
    group = np.asarray(group)
    target = np.ones(n, dtype=bool) if target is None else np.asarray(target, dtype=bool)
    lo, hi = _as_row_array(valid_min, n), _as_row_array(valid_max, n)
    period = _as_row_array(sample_period_s, n)

    index = np.arange(n)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = group[1:] != group[:-1]

    flags[(values < lo) | (values > hi)] |= OUT_OF_RANGE

    gap = gap_before(ts_s, period, gap_factor)
    if continues_s is not None:
        gap[1:] &= np.asarray(continues_s, dtype=np.float64)[1:] != ts_s[:-1]
    flags[gap & ~new_group] |= GAP

    same = np.zeros(n, dtype=bool)
    same[1:] = values[1:] == values[:-1]
    same &= ~new_group
    run_start = np.maximum.accumulate(np.where(same, 0, index))
    flags[(index - run_start + 1) >= stuck_samples] |= STUCK

    # A spike is judged against the readings since the last gap: across a gap the process may have moved
    # (a link down while the pump changed duty), and the values before it say nothing about a glitch.
    pos = index - np.maximum.accumulate(np.where(new_group | gap, index, 0))
    resolution = _resolution(values, pos, window)
    flags[_spikes(values, pos, target, lo, hi, resolution, spike_mads, window)] |= SPIKE
    flags[~target] = 0
    return flags


def _spikes(
    values: np.ndarray,
    pos: np.ndarray,
    target: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    resolution: np.ndarray,
    spike_mads: float,
    window: int,
) -> np.ndarray:
    """Mask of target rows far from the robust statistics of their previous `window` values; ``pos`` is
    each row's position in its history (since its group's start or its last gap)."""
    n = len(values)
    spike = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(target & (pos >= SPIKE_MIN_HISTORY))
    if len(rows) == 0:
        return spike
    med = np.empty(n)
    mad = np.empty(n)
    if n > window and (pos[rows] >= window).any():
        # Rows window.. as one strided view (no fancy-index copy), centred on the previous value and in
        # float32, where NumPy's SIMD sort is ~10x faster than np.median; the precision lost (~1e-7 of
        # the spread) is far below the spike floor. Rows too close to a group start are redone below.
        ref = values[window - 1 : n - 1]
        centred = (sliding_window_view(values[:-1], window) - ref[:, None]).astype(np.float32)
        m = _row_median(centred)
        med[window:] = ref + m
        mad[window:] = _row_median(np.abs(centred - m[:, None].astype(np.float32)))
    part = rows[pos[rows] < window]
    if len(part):
        # Rows near the start of their group: only the values of the same group count.
        padded = np.concatenate([np.full(window, np.nan), values])
        w = sliding_window_view(padded, window)[part]
        w[np.arange(window)[None, :] < (window - pos[part])[:, None]] = np.nan
        m = np.nanmedian(w, axis=1)
        med[part] = m
        mad[part] = np.nanmedian(np.abs(w - m[:, None]), axis=1)
    span = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
    floor = np.maximum(SPIKE_FLOOR_FRACTION * np.maximum(np.abs(med[rows]), span[rows]), resolution[rows])
    scale = np.maximum(np.maximum(MAD_TO_SIGMA * mad[rows], floor), TINY)
    outlier = np.abs(values[rows] - med[rows]) > spike_mads * scale
    # Outliers are rare, so the isolation test runs on a handful of rows: it costs next to nothing.
    candidates = rows[outlier]
    if len(candidates):
        restless = _restless(values, pos, candidates, med[candidates], scale[outlier], window)
        outlier[np.flatnonzero(outlier)[restless]] = False
    spike[rows] = outlier
    return spike


def _restless(
    values: np.ndarray,
    pos: np.ndarray,
    rows: np.ndarray,
    med: np.ndarray,
    scale: np.ndarray,
    window: int,
) -> np.ndarray:
    """Per candidate row, whether its previous `window` values (same group) were already restless: more
    than SPIKE_UNREST_SHARE of them lie beyond SPIKE_UNREST_SIGMAS x `scale` from `med` and beyond
    1 / SPIKE_DOMINANCE of the candidate's own deviation."""
    offset = np.arange(-window, 0)
    w = values[np.maximum(rows[:, None] + offset, 0)]
    w[offset[None, :] < -pos[rows][:, None]] = np.nan  # before the group's first value: not its history
    deviation = np.abs(values[rows] - med)
    limit = np.maximum(SPIKE_UNREST_SIGMAS * scale, deviation / SPIKE_DOMINANCE)[:, None]
    loud = np.count_nonzero(np.abs(w - med[:, None]) > limit, axis=1)
    available = np.minimum(pos[rows], window)
    return loud > np.floor(SPIKE_UNREST_SHARE * available + 1e-9)


def _resolution(values: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """Per row, the smallest non-zero step between consecutive values of its spike history: the previous
    `window` values since its group's start or last gap (``pos``); 0 if none.

    A coarsely quantised sensor (a transmitter with few levels) has MAD 0 most of the time, so without
    this floor every change of one level would count as a spike. Only the values before the reading count,
    never later ones nor its own step: the flags of a reading must not depend on how the readings were
    batched (the edge agent flags each poll, the ingest the agent's forwarded batches; both must agree).
    """
    n = len(values)
    step = np.full(n, np.inf)
    if n > 1:
        step[1:] = np.abs(np.diff(values))
    step[(step == 0) | ~np.isfinite(step) | (pos == 0)] = np.inf
    # Row i: the steps ending at rows i - window + 1 .. i - 1 (both ends among its previous `window` values)
    # that stay inside its history (after its last restart, row i - pos[i]).
    padded = np.concatenate([np.full(window - 1, np.inf), step[:-1]])
    view = sliding_window_view(padded, window - 1)
    smallest = view.min(axis=1)
    near = np.flatnonzero(pos < window)
    if len(near):
        offset = np.arange(-window + 1, 0)  # the step ending at row i + offset
        w = view[near].copy()
        w[offset[None, :] < -pos[near][:, None] + 1] = np.inf
        smallest[near] = w.min(axis=1)
    return np.where(np.isfinite(smallest), smallest, 0.0)


def _row_median(rows: np.ndarray) -> np.ndarray:
    """Median of each row of a float32 array (a full SIMD sort beats a two-point partition here)."""
    k = rows.shape[1] // 2
    ordered = np.sort(rows, axis=1)
    if rows.shape[1] % 2:
        return ordered[:, k].astype(np.float64)
    return (ordered[:, k - 1].astype(np.float64) + ordered[:, k]) / 2


def flag_series(
    ts_s: np.ndarray,
    values: np.ndarray,
    n_context: int,
    *,
    valid_min: float | None,
    valid_max: float | None,
    sample_period_s: float,
    spike_mads: float,
    stuck_samples: int,
    gap_factor: float,
    window: int = 30,
) -> np.ndarray:
    """Quality bits (uint16) of values[n_context:] of one time-sorted series (the first n_context are
    stored context: they inform the flags but are not returned)."""
    n = len(values)
    target = np.arange(n) >= n_context
    flags = compute_flags(
        np.zeros(n, dtype=np.int64),
        ts_s,
        values,
        target,
        valid_min=valid_min,
        valid_max=valid_max,
        sample_period_s=sample_period_s,
        spike_mads=spike_mads,
        stuck_samples=stuck_samples,
        gap_factor=gap_factor,
        window=window,
    )
    return flags[n_context:]
