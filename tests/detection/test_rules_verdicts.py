"""detection.rules: what a verdict does to the episode (judge, the in-work latch, escalation), pure."""

from __future__ import annotations

from detection.rules import (
    ActiveAlert,
    Cleared,
    Judgement,
    Opened,
    Reopened,
    RuleParams,
    RuleState,
    Seen,
    Window,
    judge,
    step,
)

# open 10, clear 5 (band 5): severity levels at excess 2 and 8 bands, i.e. scores 20 and 50.
PARAMS = RuleParams(10.0, 5.0, 3, 6, escalation_factor=1.5)


def run(scores: list[float], state: RuleState = RuleState(), start: int = 0):
    return step(state, [Window(start + i, s) for i, s in enumerate(scores)], PARAMS)


def judged_state(in_work: bool) -> RuleState:
    """An alert opened on windows 0..2 (peak 12), then judged."""
    state, transitions = run([11.0, 12.0, 11.0])
    assert isinstance(transitions[0], Opened)
    return RuleState(state.recent, judge(state.active, PARAMS, in_work=in_work), state.boundary)


def test_judge_records_the_peak_and_its_severity_level_at_the_verdict():
    state = judged_state(in_work=True)
    assert state.active.judged == Judgement(in_work=True, peak_score=12.0, level=0)


def test_a_judged_episode_absorbs_the_ongoing_condition_without_a_new_alert():
    state, transitions = run([13.0, 14.0, 11.0, 12.0], judged_state(in_work=False), start=3)
    assert all(isinstance(t, Seen) for t in transitions) and len(transitions) == 4
    assert state.active.count == 7 and state.active.judged is not None


def test_a_judged_episode_ends_after_n_windows_below_clear_and_a_return_opens_a_new_alert():
    state, transitions = run([4.0] * 6 + [11.0, 11.0, 11.0], judged_state(in_work=False), start=3)
    assert [type(t) for t in transitions] == [Cleared, Opened]
    assert transitions[0].key == 8 and transitions[1].key == 11
    assert transitions[1].alert.judged is None


def test_in_work_latches_through_a_clear_until_the_repair_is_recorded():
    state, transitions = run([4.0] * 8 + [11.0, 11.0, 11.0], judged_state(in_work=True), start=3)
    assert [type(t) for t in transitions] == [Seen, Seen, Seen]  # the return attaches, no new alert
    repaired = RuleState(state.recent, judge(state.active, PARAMS, in_work=False), state.boundary)
    state, transitions = run([4.0] * 6, repaired, start=14)
    assert [type(t) for t in transitions] == [Cleared] and transitions[0].key == 19


def test_escalation_by_the_factor_on_m_windows_reopens_with_a_new_alert():
    # 1.5 × 12 = 18: one stray window past it is only seen, M = 3 in a row re-open.
    state, transitions = run([18.5, 17.0, 18.5, 19.5, 18.2], judged_state(in_work=False), start=3)
    assert [type(t) for t in transitions] == [Seen, Seen, Seen, Seen, Reopened]
    reopened = transitions[-1]
    assert reopened.previous.judged is not None and reopened.previous.last_seen == 6
    assert reopened.alert == ActiveAlert(first=5, opened=7, last_seen=7, peak=6, peak_score=19.5, count=3)
    assert state.active.judged is None


def test_escalation_by_a_severity_level_even_below_the_factor():
    params = RuleParams(10.0, 5.0, 3, 6, escalation_factor=10.0)
    state, _ = step(RuleState(), [Window(i, s) for i, s in enumerate([11.0, 19.0, 11.0])], params)
    judged = RuleState(state.recent, judge(state.active, params, in_work=False), state.boundary)
    assert judged.active.judged.level == 0
    windows = [Window(3, 19.5), Window(4, 20.5), Window(5, 21.0), Window(6, 20.2)]  # level 1 from 20
    _, transitions = step(judged, windows, params)
    assert [type(t) for t in transitions] == [Seen, Seen, Seen, Reopened]


def test_a_lower_is_worse_model_escalates_below_the_peak_divided_by_the_factor():
    params = RuleParams(10.0, 15.0, 3, 6, higher=False, escalation_factor=2.0)
    state, _ = step(RuleState(), [Window(i, s) for i, s in enumerate([9.0, 8.0, 9.0])], params)
    judged = RuleState(state.recent, judge(state.active, params, in_work=False), state.boundary)
    windows = [Window(3, 4.5), Window(4, 3.9), Window(5, 3.5), Window(6, 3.8)]  # 8 / 2 = 4
    _, transitions = step(judged, windows, params)
    assert [type(t) for t in transitions] == [Seen, Seen, Seen, Reopened]


def test_without_a_verdict_nothing_changes_an_alert_above_the_factor_is_just_seen():
    state, _ = run([11.0, 12.0, 11.0])
    _, transitions = run([30.0, 60.0], state, start=3)
    assert [type(t) for t in transitions] == [Seen, Seen]


def test_in_work_absorbs_even_an_escalation_until_the_repair_is_recorded():
    state, transitions = run([40.0, 60.0, 55.0, 4.0, 45.0], judged_state(in_work=True), start=3)
    assert all(isinstance(t, Seen) for t in transitions) and state.active.judged.in_work
    repaired = RuleState(state.recent, judge(state.active, PARAMS, in_work=False), state.boundary)
    assert repaired.active.judged.peak_score == 60.0  # judged again at the peak when repaired
