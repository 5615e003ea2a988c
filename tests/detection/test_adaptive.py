"""detection.adaptive on synthetic feature series with known changes: a level shift alerts and stays
alerted (the location is frozen), a slow normal drift does not alert (it does against the fixed robust
calibration), a slow fault ramp alerts within the time its EWMA lag needs to reach the threshold and then
stays alerted, and scoring in one call equals scoring in chunks with the state carried."""

from __future__ import annotations

import numpy as np
import pytest

from detection import adaptive
from detection.baseline import BaselineError, calibrate
from detection.baseline import apply as apply_baseline
from detection.rules import RuleParams, alert_episodes

N_CAL, N_TEST, D = 200, 2000, 3
LEVEL, SIGMA = 100.0, 1.0
# The scorer: mean squared input (a diagonal quadratic form, like the univariate detector); for Gaussian
# inputs it is chi²(3)/3, whose 0.9999 quantile is ~7.1: the open threshold, the 97 % one ~2.9 the clear.
PARAMS = RuleParams(open_threshold=7.0, clear_threshold=3.0, open_windows=3, clear_windows=6)


def _score(Z: np.ndarray) -> np.ndarray:
    return (np.asarray(Z, dtype=np.float64) ** 2).mean(axis=1)


def _series(seed: int = 0, drift=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = LEVEL + SIGMA * rng.standard_normal((N_CAL + N_TEST, D))
    if drift is not None:
        X[N_CAL:] += drift(np.arange(N_TEST))[:, None] * np.array([1.0, 0.0, 0.0])
    return X


def _run(X: np.ndarray, params: RuleParams = PARAMS):
    cal = calibrate(X[:N_CAL])
    _, state = adaptive.start(X[:N_CAL], cal)
    Z, scores, absorbed, state = adaptive.advance(state, X[N_CAL:], cal, _score, params)
    return Z, scores, absorbed, state, alert_episodes(scores, 7.0, 3.0, 3, 6)


def test_start_replays_the_calibration_from_its_median_with_a_span_of_its_length():
    X = _series()
    cal = calibrate(X[:N_CAL])
    Z, state = adaptive.start(X[:N_CAL], cal)
    assert state.span == N_CAL and state.count == N_CAL and state.alpha == pytest.approx(2 / (N_CAL + 1))
    np.testing.assert_array_equal(Z[0], apply_baseline(X[:1], cal)[0])  # the first row: median / scale
    m = cal.location.copy()
    for x in X[:N_CAL]:
        m = m + state.alpha * (x - m)
    np.testing.assert_allclose(state.location, m, rtol=0, atol=1e-12)


def test_a_level_shift_alerts_within_the_open_windows_and_stays_alerted_because_the_location_freezes():
    shift = lambda t: np.where(t >= 500, 6.0 * SIGMA, 0.0)  # noqa: E731
    _, scores, absorbed, state, episodes = _run(_series(drift=shift))
    assert [e.opened for e in episodes if e.opened < 500] == []
    assert episodes[-1].opened <= 500 + 3 and episodes[-1].closed is None
    assert not absorbed[episodes[-1].opened :].any() and state.in_alert


def test_a_slow_normal_drift_does_not_alert_though_it_does_against_the_fixed_calibration():
    # +6 % of the level (6 noise sigmas) over 2000 windows, ten calibration lengths: the EWMA lags it by
    # rate · (span - 1) / 2 ≈ 0.3 σ.
    drift = lambda t: 0.06 * LEVEL * t / N_TEST  # noqa: E731
    X = _series(drift=drift)
    _, scores, absorbed, _, episodes = _run(X)
    assert episodes == []
    assert absorbed.mean() > 0.9
    fixed = _score(apply_baseline(X[N_CAL:], calibrate(X[:N_CAL])))
    assert alert_episodes(fixed, 7.0, 3.0, 3, 6)  # the robust step alone alerts on it


def test_a_slow_fault_ramp_alerts_once_its_lag_reaches_the_threshold_and_then_stays_alerted():
    # A ramp of 0.1 σ per window from window 300: the EWMA's steady lag is 0.1 · (span - 1) / 2 ≈ 10 σ, so
    # feature 0 alone reaches the open threshold (mean z² > 7, i.e. |z| > 4.6) within about
    # span / 2 · ln(1 / (1 - 4.6 / 10)) ≈ 60 windows of lag building plus the 3 opening windows.
    ramp = lambda t: np.where(t >= 300, 0.1 * SIGMA * (t - 300), 0.0)  # noqa: E731
    _, scores, absorbed, state, episodes = _run(_series(drift=ramp))
    assert [e.opened for e in episodes if e.opened < 300] == []
    fault = [e for e in episodes if e.opened >= 300]
    assert len(fault) == 1 and fault[0].opened <= 300 + 80 and fault[0].closed is None
    assert not absorbed[fault[0].opened :].any()


def test_scoring_in_chunks_with_the_state_carried_equals_scoring_in_one_call():
    shift = lambda t: np.where((t >= 700) & (t < 900), 8.0 * SIGMA, 0.0)  # noqa: E731
    X = _series(seed=4, drift=shift)
    cal = calibrate(X[:N_CAL])
    _, first = adaptive.start(X[:N_CAL], cal)
    whole = adaptive.advance(first, X[N_CAL:], cal, _score, PARAMS)
    state, parts = first, []
    for lo, hi in ((0, 1), (1, 650), (650, 703), (703, 1500), (1500, N_TEST)):
        *out, state = adaptive.advance(state, X[N_CAL + lo : N_CAL + hi], cal, _score, PARAMS)
        parts.append(out)
    for k in range(3):
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    np.testing.assert_array_equal(whole[3].location, state.location)
    assert (whole[3].count, whole[3].scored, whole[3].rules) == (state.count, state.scored, state.rules)
    # The state survives its JSON form (the rules' part is the lifecycle's own state).
    back = adaptive.AdaptiveState.from_json(state.to_json(), state.rules)
    np.testing.assert_array_equal(back.location, state.location)
    assert (back.count, back.span, back.scored) == (state.count, state.span, state.scored)


def test_windows_above_the_clear_threshold_and_unusable_windows_do_not_move_the_location():
    X = _series(seed=2)
    cal = calibrate(X[:N_CAL])
    _, state = adaptive.start(X[:N_CAL], cal)
    rows = X[N_CAL : N_CAL + 3].copy()
    rows[1, 0] += 3.5 * SIGMA * np.sqrt(D)  # mean z² > 3: above clear, below open
    usable = np.array([True, True, False])
    _, scores, absorbed, after = adaptive.advance(state, rows, cal, _score, PARAMS, usable)
    assert scores[1] > 3.0 and not after.in_alert
    assert absorbed.tolist() == [True, False, False] and after.count == state.count + 1
    np.testing.assert_allclose(after.location, state.location + state.alpha * (rows[0] - state.location))


def test_a_state_that_is_not_one_is_refused():
    with pytest.raises(BaselineError, match="span"):
        adaptive.AdaptiveState(np.zeros(2), 0, 0.5)
    with pytest.raises(BaselineError, match="not a stored adaptive state"):
        adaptive.AdaptiveState.from_json({"location": [0.0]})
