"""Per-reading data-quality flags, as pure NumPy over time-ordered series (no ORM here).


Every flag of reading i depends only on reading i and the readings before it in time, so a batch is
flagged by prepending the stored history just before it (its *context*) and computing over the whole:

- OUT_OF_RANGE: the value lies outside the sensor's [valid_min, valid_max] (either bound may be absent).
- SPIKE: |x_i - median(prev K)| > spike_mads x scale, with scale = max(1.4826 x MAD(prev K), floor) and
  floor = max(SPIKE_FLOOR_FRACTION x max(|median(prev K)|, valid_max - valid_min), resolution), where
  resolution is the smallest non-zero step between consecutive values of the series. The floor is what
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
- DRIFT (``find_drift`` / ``drift_scores``) is a property of a sensor over minutes, not of one reading, and it
needs the asset's other sensors on a common time grid, so it is computed where all of an asset's readings
are at hand (``alerts.services.sensor_faults``, once per DRIFT_BIN_S of scored windows), not per ingest
batch; ingest's cost is unchanged.

Statistic. The readings of each sensor of one asset are reduced to medians over DRIFT_BIN_S bins. For
sensor j, a least-squares model predicts its bin medians from the other sensors' bin medians and their
first-order lags (time constant DRIFT_LAG_S), fitted on the *reference* bins (every bin before the last
DRIFT_RECENT_BINS, readings already flagged DRIFT left out), gives the residual r = x_j - prediction.
Over the recent bins, two statistics: the residual's steady move (least-squares slope x
span) and its level (mean of the last third, against the reference median). Each is scaled by its own
spread over the reference, computed window by window (1.4826 MAD of the same statistic over every window
of the reference), because model errors are autocorrelated (a lag the model gets slightly wrong moves
steadily for a while) and a per-bin sigma would overstate both; each scale is floored at
DRIFT_FLOOR_FRACTION of the sensor's level. z_j = min(move / its scale, level / its scale) when both have the same sign, else 0: the residual has moved *steadily* away (a ramp or a shift), not wiggled.
Two physical checks zero z_j: a move faster than DRIFT_MAX_RATE of the sensor's level per minute, and a
within-bin spread (median absolute deviation) that changed by more than DRIFT_MAX_SPREAD_RATIO either way
against the reference: a calibration moves the reading, not the process's noise, nor at that speed.
A sensor drifts when z_j > DRIFT_Z and z_j is at least DRIFT_DOMINANCE x every other sensor's residual
level (its level statistic, scaled as above) from models refitted without sensor j: a drifting sensor
would otherwise leak its drift into the others' predictions wherever it is a good predictor of them. Readings flagged out of range, spike or stuck are left out of
the bins; a sensor without data in every recent bin is left out of the others' models.

Why it generalises. A sensor's calibration drift is the one change its own physics cannot explain: the
other sensors of a machine measure the same operating point (load, speed, flow), so a drift shows up as a
residual of that one sensor only. A real process change moves every signal along the machine's relation
(the model predicts it: no residual) or, off the reference operating range, leaves residuals in several
sensors at once (the dominance test refuses it). A stationary noisy sensor has no steady residual. With no
other sensor, the model is the intercept alone: the sensor's own long-run level.

Parameters. DRIFT_BIN_S = 30 s: 30 samples at the demo's 1 Hz, so a bin median's noise is ~1/5 of a
reading's and the bin is short against the drifts we look for (minutes). DRIFT_RECENT_BINS = 8 (4 min):
the alert must come within 5 minutes of a drift's start (issue 14), and 8 points fit a slope. Reference:
at least DRIFT_MIN_REFERENCE_BINS = 20 bins (10 min, two of the simulator's duty changes) and at most the
hour read. DRIFT_LAG_S = 300 s: the thermal time constant of a pump's motor and casing (the simulator's
temperature lag, tau 5 min); a faster sensor's lagged column is nearly its plain one and costs nothing.
DRIFT_Z = 6: were the statistics Gaussian, a 6-sigma steady move would have a false rate of ~1e-9 per
evaluation; model errors are heavier-tailed, which 6 (rather than 3-4) leaves room for. DRIFT_DOMINANCE = 2: "while the machine's other signals do not" — the
drifting sensor's steady move must be at least twice any other sensor's residual level (with the suspect
left out, nothing of its drift leaks there); a process change moves several residuals alike.
DRIFT_MAX_RATE = 10 %/min: instrument drift (ageing, fouling, the electronics' temperature coefficient)
runs at fractions of a percent per day; even the demo's deliberately fast drift is 2.5 %/min of nominal;
a faster steady move is a process event (a fault's onset, a ramp). DRIFT_MAX_SPREAD_RATIO = 2: a gain
drift of +-25 % changes the noise by that much only; turbulence, cavitation or a loose mount multiply it.
Linear terms only: adding squares (the affinity laws) tripled the false hits on healthy simulated pumps.

Measured on the simulator (seeds 0-2 x 4 start times x 5 pumps, the demo's calibration drift on P-105
only, one evaluation per 30 s over 75 min, 5,400 evaluations): the drift is found 60-480 s after its
start (10 of 12 within 300 s, median 150 s) and 7 single evaluations flag elsewhere, all but one on
temperature at duty changes (23 with a per-bin sigma instead of the windowed scales and without the
refit; 37 with lagged squares as extra regressors; 5 at DRIFT_Z 7 but with one drift missed). An alert
needs persistent findings on top (config/settings.py VIGIL_SENSOR_FAULT_PERSISTENT_SHARE). A machine
fault that moves one signal alone and steadily (the first minutes of the simulator's bearing wear) is
the same thing as a drift for this rule; the noise and rate checks refuse most such cases, not all.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from plant.choices import QualityFlag

MAD_TO_SIGMA = 1.4826
SPIKE_FLOOR_FRACTION = 1e-3
SPIKE_MIN_HISTORY = 5
# Isolation test of a SPIKE candidate (see the module docstring): the previous window is restless when more
# than SPIKE_UNREST_SHARE of it lay beyond SPIKE_UNREST_SIGMAS robust sigmas, not counting the values the
# candidate dwarfs by SPIKE_DOMINANCE or more.
SPIKE_UNREST_SIGMAS = 3.0
SPIKE_UNREST_SHARE = 0.1
SPIKE_DOMINANCE = 4.0
_TINY = 1e-12


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

    flags[(values < lo) | (values > hi)] |= int(QualityFlag.OUT_OF_RANGE)

    gap = gap_before(ts_s, period, gap_factor)
    if continues_s is not None:
        gap[1:] &= np.asarray(continues_s, dtype=np.float64)[1:] != ts_s[:-1]
    flags[gap & ~new_group] |= int(QualityFlag.GAP)

    same = np.zeros(n, dtype=bool)
    same[1:] = values[1:] == values[:-1]
    same &= ~new_group
    run_start = np.maximum.accumulate(np.where(same, 0, index))
    flags[(index - run_start + 1) >= stuck_samples] |= int(QualityFlag.STUCK)

    # A spike is judged against the readings since the last gap: across a gap the process may have moved
    # (a link down while the pump changed duty), and the values before it say nothing about a glitch.
    pos = index - np.maximum.accumulate(np.where(new_group | gap, index, 0))
    resolution = _resolution(values, new_group)
    flags[_spikes(values, pos, target, lo, hi, resolution, spike_mads, window)] |= int(QualityFlag.SPIKE)
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
    scale = np.maximum(np.maximum(MAD_TO_SIGMA * mad[rows], floor), _TINY)
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


def _resolution(values: np.ndarray, new_group: np.ndarray) -> np.ndarray:
    """Per row, the smallest non-zero step between consecutive values of its group (0 if none).

    A coarsely quantised sensor (a transmitter with few levels) has MAD 0 most of the time, so without
    this floor every change of one level would count as a spike.
    """
    n = len(values)
    group_id = np.cumsum(new_group) - 1
    step = np.abs(np.diff(values))
    step[(step == 0) | new_group[1:] | ~np.isfinite(step)] = np.inf
    smallest = np.full(group_id[-1] + 1, np.inf)
    if n > 1:
        np.minimum.at(smallest, group_id[1:], step)
    per_row = smallest[group_id]
    return np.where(np.isfinite(per_row), per_row, 0.0)


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


# --- calibration drift: a sensor leaving its relation to the asset's other sensors ----------------------

# The statistic and how each parameter was fixed: the module docstring (DRIFT).
DRIFT_BIN_S = 30.0
DRIFT_RECENT_BINS = 8
DRIFT_MIN_REFERENCE_BINS = 20
DRIFT_LAG_S = 300.0
DRIFT_Z = 6.0
DRIFT_DOMINANCE = 2.0
DRIFT_FLOOR_FRACTION = 1e-3
DRIFT_MAX_RATE = 0.10
DRIFT_MAX_SPREAD_RATIO = 2.0
# The readings must reach back this far for any sensor to have its recent and reference bins.
DRIFT_MIN_SPAN_S = (DRIFT_RECENT_BINS + DRIFT_MIN_REFERENCE_BINS - 1) * DRIFT_BIN_S


def _lagged(x: np.ndarray, alpha: float) -> np.ndarray:
    """First-order lag of each column (NaN rows carry the previous state)."""
    out = np.empty_like(x)
    state = np.where(np.isfinite(x[0]), x[0], np.nan)
    for i in range(len(x)):
        row = x[i]
        state = np.where(np.isfinite(state), state, row)
        state = np.where(np.isfinite(row), state + alpha * (row - state), state)
        out[i] = state
    return out


def drift_scores(
    bins: np.ndarray,
    *,
    recent: int = DRIFT_RECENT_BINS,
    lag_bins: float = DRIFT_LAG_S / DRIFT_BIN_S,
    min_reference: int = DRIFT_MIN_REFERENCE_BINS,
    reference_mask: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    bin_s: float = DRIFT_BIN_S,
    exclude: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sensor (column of ``bins``, shape (n_bins, n_sensors), bin medians, NaN = no data), the steady
    residual move z over the last ``recent`` bins and the residual's level there (|mean of the last third|
    / sigma), both in reference sigmas (see the module docstring); NaN where they cannot be computed. A
    sensor without data in every recent bin (stuck, silent) is left out of the others' models.
    ``reference_mask`` (same shape, bool) marks bins allowed in the reference (default: all finite);
    ``spread`` (same shape) is each bin's within-bin spread, for the noise test; column ``exclude`` is left
    out of every model (a suspect, so that its drift does not leak into the others' residuals)."""
    bins = np.asarray(bins, dtype=np.float64)
    n, m = bins.shape
    z, level = np.full(m, np.nan), np.full(m, np.nan)
    if n < recent + min_reference or recent < 3:
        return z, level
    lagged = _lagged(bins, 1.0 - np.exp(-1.0 / max(lag_bins, 1e-9)))
    allowed = np.isfinite(bins) if reference_mask is None else (reference_mask & np.isfinite(bins))
    allowed[n - recent :] = False
    t = np.arange(recent, dtype=np.float64)
    t -= t.mean()
    usable = np.isfinite(bins[n - recent :]).all(axis=0)
    for j in range(m):
        others = [k for k in range(m) if k != j and k != exclude and usable[k]]
        design = np.column_stack([bins[:, others], lagged[:, others]]) if others else np.empty((n, 0))
        rows = allowed[:, j] & np.isfinite(design).all(axis=1)
        recent_ok = np.isfinite(bins[n - recent :, j]) & np.isfinite(design[n - recent :]).all(axis=1)
        if rows.sum() < min_reference or not recent_ok.all():
            continue
        mean, std = design[rows].mean(axis=0), design[rows].std(axis=0)
        keep = std > _TINY
        scaled = (design[:, keep] - mean[keep]) / std[keep]
        design = np.column_stack([np.ones(n), scaled])
        coef, *_ = np.linalg.lstsq(design[rows], bins[rows, j], rcond=1e-8)
        residual = bins[:, j] - design @ coef
        ref = residual[rows]
        typical = np.median(np.abs(bins[rows, j]))
        floor = max(DRIFT_FLOOR_FRACTION * typical, _TINY)
        # The null of both statistics is their own spread over the reference, window by window: model
        # errors are autocorrelated (a lag the model gets slightly wrong), and so move steadily for a while.
        tail = max(recent // 3, 1)
        moves = sliding_window_view(ref, recent) @ t / (t @ t) * (recent - 1) if len(ref) >= recent else ref
        means = sliding_window_view(ref, tail).mean(axis=1) - np.median(ref)
        sigma_move = max(MAD_TO_SIGMA * np.median(np.abs(moves - np.median(moves))), floor)
        sigma = max(MAD_TO_SIGMA * np.median(np.abs(means)), floor)
        r = residual[n - recent :]
        moved = float(t @ r / (t @ t)) * (recent - 1)
        last = float(r[-tail:].mean() - np.median(ref))
        z[j] = min(abs(moved) / sigma_move, abs(last) / sigma) if moved * last > 0 else 0.0
        level[j] = abs(last) / sigma
        per_minute = abs(moved) / ((recent - 1) * bin_s / 60.0) / max(typical, _TINY)
        if per_minute > DRIFT_MAX_RATE:
            z[j] = 0.0  # far too fast for a calibration: a process event
        if spread is not None:
            before, now = np.nanmedian(spread[rows, j]), np.nanmedian(spread[n - recent :, j])
            if np.isfinite(before) and np.isfinite(now) and before > 0:
                if not 1.0 / DRIFT_MAX_SPREAD_RATIO <= now / before <= DRIFT_MAX_SPREAD_RATIO:
                    z[j] = 0.0  # the noise changed too: the process, not the instrument
    return z, level


def find_drift(
    bins: np.ndarray,
    *,
    reference_mask: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    threshold: float = DRIFT_Z,
    dominance: float = DRIFT_DOMINANCE,
) -> np.ndarray:
    """Mask of the drifting sensors (columns of ``bins``): a steady move z above ``threshold`` while every
    other sensor's residual level, from models without the suspect, stays below z / ``dominance`` (the
    machine's other signals do not move). See the module docstring."""
    options = {"reference_mask": reference_mask, "spread": spread}
    z, _ = drift_scores(bins, **options)
    z = np.where(np.isfinite(z), z, 0.0)
    out = np.zeros(len(z), dtype=bool)
    for j in np.flatnonzero(z > threshold):  # rare: the common case costs one pass
        _, level = drift_scores(bins, exclude=j, **options)
        others = np.delete(np.where(np.isfinite(level), level, 0.0), j)
        out[j] = not len(others) or z[j] >= dominance * others.max()
    return out


def bin_medians(
    series: list[tuple[np.ndarray, np.ndarray, np.ndarray]], start_s: float, end_s: float, bin_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Medians over bins (start_s + k bin_s, start_s + (k+1) bin_s] of several (ts, values, quality) series,
    as (medians, any-DRIFT-flag, spread) arrays of shape (n_bins, n_series), spread being the median absolute
    deviation within the bin; NaN where a bin has no usable reading.
    Readings flagged out of range, spike or stuck are left out: they say nothing of the relation."""
    n = max(int(np.floor((end_s - start_s) / bin_s + 1e-9)), 0)
    med = np.full((n, len(series)), np.nan)
    drift = np.zeros((n, len(series)), dtype=bool)
    spread = np.full((n, len(series)), np.nan)
    for j, (ts, values, quality) in enumerate(series):
        ts, values = np.asarray(ts, dtype=np.float64), np.asarray(values, dtype=np.float64)
        quality = np.asarray(quality).astype(np.int64)
        k = np.ceil((ts - start_s) / bin_s - 1e-9).astype(np.int64) - 1
        ok = (k >= 0) & (k < n) & np.isfinite(values)
        ok &= (quality & int(QualityFlag.OUT_OF_RANGE | QualityFlag.SPIKE | QualityFlag.STUCK)) == 0
        drifted = ok & ((quality & int(QualityFlag.DRIFT)) != 0)
        np.logical_or.at(drift[:, j], k[drifted], True)
        if not ok.any():
            continue
        k, v = k[ok], values[ok]
        order = np.lexsort((v, k))
        k, v = k[order], v[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        ends = np.r_[starts[1:], len(k)]
        lo, hi = (starts + ends - 1) // 2, (starts + ends) // 2
        middle = (v[lo] + v[hi]) / 2
        med[k[starts], j] = middle
        # Deviations sorted within each bin: the same lexsort trick gives their medians.
        deviation = np.abs(v - np.repeat(middle, ends - starts))
        deviation = deviation[np.lexsort((deviation, k))]
        spread[k[starts], j] = (deviation[lo] + deviation[hi]) / 2
    return med, drift, spread
