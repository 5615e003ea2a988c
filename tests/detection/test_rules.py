"""detection.rules.step: the one alert rule engine, tested without Django (no database, no clock)."""

from __future__ import annotations

import numpy as np
import pytest

from detection.rules import (
    ActiveAlert,
    Cleared,
    Hold,
    Opened,
    Resumed,
    RuleParams,
    RuleState,
    Seen,
    Window,
    alert_episodes,
    overlap,
    step,
)

PARAMS = RuleParams(10.0, 5.0, 3, 6)


def walk(seed: int, length: int) -> list[float]:
    """A mean-reverting walk around the band, so it keeps crossing both thresholds."""
    level, out = 6.5, []
    for change in np.random.default_rng(seed).normal(0.0, 2.5, length):
        level += 0.3 * (6.5 - level) + change
        out.append(round(float(level), 2))
    return out


def test_stepping_window_by_window_gives_what_one_step_over_the_series_gives():
    windows = [Window(i, score) for i, score in enumerate(walk(3, 300))]

    whole, whole_transitions = step(RuleState(), windows, PARAMS)
    state, transitions = RuleState(), []
    for window in windows:
        state, more = step(state, [window], PARAMS)
        transitions += more

    assert (state, transitions) == (whole, whole_transitions)
    assert sum(isinstance(t, Cleared) for t in transitions) >= 2


def test_alert_episodes_is_the_fold_of_step():
    scores = walk(5, 300)

    _, transitions = step(RuleState(), [Window(i, s) for i, s in enumerate(scores)], PARAMS)
    episodes = alert_episodes(scores, 10.0, 5.0, 3, 6)

    assert [e.opened for e in episodes] == [t.key for t in transitions if isinstance(t, Opened)]
    assert [e.closed for e in episodes if e.closed is not None] == [
        t.key for t in transitions if isinstance(t, Cleared)
    ]


def test_an_alert_opens_at_the_third_window_above_with_the_earliest_worst_peak_and_updates_after():
    scores = [0, 12, 15, 15, 8, 11]

    state, transitions = step(RuleState(), [Window(i, s) for i, s in enumerate(scores)], PARAMS)

    opened = ActiveAlert(first=1, opened=3, last_seen=3, peak=2, peak_score=15, count=3)
    assert transitions == [Opened(opened, 3), Seen(opened._replace(last_seen=5, count=4), 5, False)]
    assert state.active == opened._replace(last_seen=5, count=4)


def test_an_alert_opened_inside_maintenance_resumes_on_the_first_window_above_after_it():
    windows = [Window(i, 12, in_maintenance=i < 5) for i in range(5)]
    windows += [Window(5, 8), Window(6, 11)]  # inside the band: nothing; above, outside maintenance

    state, transitions = step(RuleState(), windows, PARAMS)

    assert transitions[0].alert.hold == Hold.SUPPRESSED
    assert isinstance(transitions[-1], Resumed) and transitions[-1].key == 6
    assert transitions[-1].hold == Hold.SUPPRESSED and state.active.hold == Hold.NONE
    assert not any(isinstance(t, Resumed) for t in transitions[:-1])


def test_an_expired_snooze_resumes_while_the_score_is_not_below_the_clear_threshold():
    active = ActiveAlert(
        first=0, opened=2, last_seen=2, peak=2, peak_score=12, count=3, hold=Hold.SNOOZE_EXPIRED
    )
    state = RuleState(recent=((0, 12), (1, 12), (2, 12)), active=active)

    quiet, transitions = step(state, [Window(3, 4.0)], PARAMS)
    assert transitions == [] and quiet.active.hold == Hold.SNOOZE_EXPIRED

    _, transitions = step(quiet, [Window(4, 5.0)], PARAMS)
    assert transitions == [Resumed(active._replace(hold=Hold.NONE), 4, Hold.SNOOZE_EXPIRED)]


def test_windows_attributed_to_the_previous_alert_cannot_open_another():
    state = RuleState(recent=((0, 12), (1, 12)), boundary=1)

    _, transitions = step(state, [Window(2, 12), Window(3, 12)], PARAMS)
    assert transitions == []
    _, transitions = step(state, [Window(2, 12), Window(3, 12), Window(4, 12)], PARAMS)
    assert [t.key for t in transitions] == [4]


def test_context_windows_count_in_the_runs_but_fire_no_rule():
    windows = [Window(0, 12, context=True), Window(1, 12, context=True), Window(2, 12, context=True)]

    state, transitions = step(RuleState(), windows, PARAMS)
    assert transitions == [] and state.active is None

    _, transitions = step(state, [Window(3, 12)], PARAMS)
    assert transitions == [Opened(ActiveAlert(1, 3, 3, 1, 12, 3), 3)]


def test_a_lower_is_worse_model_mirrors_every_comparison():
    params = RuleParams(-10.0, -5.0, 3, 6, higher=False)
    scores = [-s for s in walk(7, 200)]

    _, mirrored = step(RuleState(), [Window(i, s) for i, s in enumerate(scores)], params)
    _, plain = step(RuleState(), [Window(i, -s) for i, s in enumerate(scores)], PARAMS)

    assert [(type(t), t.key) for t in mirrored] == [(type(t), t.key) for t in plain]


def test_severity_level_counts_hysteresis_bands_past_the_open_threshold_and_clamps_the_shift():
    from detection.rules import severity_level

    assert [severity_level(peak, 10.0, 5.0) for peak in (11.0, 20.0, 60.0)] == [0, 1, 2]
    assert severity_level(-60.0, -10.0, -5.0, higher=False) == 2
    assert severity_level(60.0, 10.0, 5.0, shift=1) == 3 and severity_level(11.0, 10.0, 5.0, shift=-1) == 0
    assert severity_level(60.0, 10.0, 5.0, shift=5, levels=4) == 3


# --- the clear hysteresis in readings (RuleParams.window_overlap) ------------------------------------------


def test_overlap_counts_the_windows_that_share_readings_with_one_window():
    assert overlap(60.0, 10.0) == 6  # the product's windows
    assert overlap(30.0, 5.0) == 6
    assert overlap(3600.0, 600.0) == 6
    assert overlap(120.0, 10.0) == 12
    assert overlap(25.0, 10.0) == 3  # a window of 2.5 steps touches the next two
    assert overlap(10.0, 10.0) == 1  # back to back: nothing shared
    assert overlap(5.0, 10.0) == 1
    assert overlap(0.3, 0.1) == 3  # 2.9999999999999996 in floating point is still 3 windows
    with pytest.raises(ValueError, match="positive"):
        overlap(0.0, 10.0)


def test_an_alert_clears_only_after_a_window_of_fresh_readings_when_windows_are_long():
    scores = [12, 12, 12] + [1] * 20
    short = alert_episodes(scores, 10.0, 5.0, 3, 3)
    long = alert_episodes(scores, 10.0, 5.0, 3, 3, window_overlap=8)

    assert [e.closed for e in short] == [5]  # 3 windows below
    assert [e.closed for e in long] == [10]  # 8 windows below: the last anomalous one's readings are gone


def test_the_overlap_changes_nothing_when_n_already_covers_a_window():
    scores = walk(7, 400)
    assert alert_episodes(scores, 10.0, 5.0, 3, 6) == alert_episodes(
        scores, 10.0, 5.0, 3, 6, window_overlap=6
    )
    assert alert_episodes(scores, 10.0, 5.0, 3, 6) == alert_episodes(
        scores, 10.0, 5.0, 3, 6, window_overlap=4
    )


def test_excursions_closer_than_a_window_length_are_one_alert_not_a_chattering_one():
    # A spike entering 3 windows every 9: N = 3 windows below clear come between the spikes.
    scores = ([12, 12, 12] + [1] * 6) * 5
    chattering = alert_episodes(scores, 10.0, 5.0, 3, 3)
    held = alert_episodes(scores, 10.0, 5.0, 3, 3, window_overlap=12)

    assert len(chattering) == 5
    assert len(held) == 1 and held[0].opened == 2 and held[0].last_seen == 38
    # Once the spikes stop, it clears after a window length of quiet windows.
    assert held[0].closed is None
    tail = alert_episodes(scores + [1] * 12, 10.0, 5.0, 3, 3, window_overlap=12)
    assert [e.closed for e in tail] == [38 + 12]


def test_stepping_window_by_window_keeps_enough_history_for_the_overlap():
    params = RuleParams(10.0, 5.0, 3, 2, window_overlap=7)
    assert params.depth == 7 and params.clear_run == 7 and params.clear_windows == 2
    windows = [Window(i, s) for i, s in enumerate(walk(11, 300))]
    whole = step(RuleState(), windows, params)
    state, transitions = RuleState(), []
    for window in windows:
        state, more = step(state, [window], params)
        transitions += more
    assert (state, transitions) == whole
