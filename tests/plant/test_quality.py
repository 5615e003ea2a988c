"""Per-reading quality flags on synthetic series with glitches at known indices."""

from __future__ import annotations

import numpy as np
import pytest

from plant.choices import QualityFlag
from detection.quality import compute_flags, flag_series

RULES = {"spike_mads": 8.0, "stuck_samples": 20, "gap_factor": 3.0, "window": 30}


def noisy_sine(n: int = 2000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.float64)
    values = 50 + 10 * np.sin(2 * np.pi * ts / 120) + rng.normal(0, 0.5, n)
    return ts, values


def flags_of(ts, values, n_context=0, valid_min=0.0, valid_max=100.0, period=1.0):
    return flag_series(
        ts, values, n_context, valid_min=valid_min, valid_max=valid_max, sample_period_s=period, **RULES
    )


def indices_with(flags: np.ndarray, flag: QualityFlag) -> list[int]:
    return np.flatnonzero(flags & flag).tolist()


def test_a_clean_noisy_sine_gets_no_flags():
    ts, values = noisy_sine()
    assert not flags_of(ts, values).any()


def test_values_outside_the_valid_range_are_flagged_out_of_range():
    ts, values = noisy_sine(300)
    values[[40, 41, 200]] = [-1.0, 100.5, 250.0]
    assert indices_with(flags_of(ts, values), QualityFlag.OUT_OF_RANGE) == [40, 41, 200]


def test_a_missing_bound_means_no_limit_on_that_side():
    ts, values = noisy_sine(300)
    values[[10, 20]] = [-500.0, 500.0]
    assert indices_with(flags_of(ts, values, valid_min=None), QualityFlag.OUT_OF_RANGE) == [20]
    assert indices_with(flags_of(ts, values, valid_min=None, valid_max=None), QualityFlag.OUT_OF_RANGE) == []


def test_isolated_glitches_are_flagged_as_spikes_and_their_neighbours_are_not():
    ts, values = noisy_sine()
    glitches = [100, 555, 1234, 1900]
    values[glitches] += [35.0, -40.0, 40.0, -35.0]  # a sensor glitch of 3.5-4x the amplitude
    assert indices_with(flags_of(ts, values), QualityFlag.SPIKE) == glitches


@pytest.mark.parametrize("seed", range(11, 17))
def test_cavitation_like_process_noise_is_not_a_spike_but_isolated_glitches_still_are(seed):
    # Vibration of a pump that starts to cavitate at sample 300: over 30 s the level rises and the noise
    # grows several-fold, so many readings are far beyond 8 of the calm sigmas. That is the process. Being
    # causal, the rule may still flag the very first reading of the onset, never the ones after it.
    rng = np.random.default_rng(seed)
    ts = np.arange(600, dtype=np.float64)
    onset = np.clip((ts - 300) / 30, 0, 1)
    values = 2.0 * (1 + 0.05 * rng.normal(size=600)) + 2.0 * onset * (
        0.8 + 0.6 * np.abs(rng.normal(size=600))
    )
    values[[150, 500]] += [2.0, 12.0]  # glitches: in the calm signal, and one dwarfing the cavitation noise
    spikes = indices_with(flags_of(ts, values, valid_min=0.0, valid_max=50.0), QualityFlag.SPIKE)
    in_onset = [i for i in spikes if 300 <= i < 500]
    assert (np.abs(values[300:500] - 2.0) > 8 * 0.1).sum() > 150, "the stretch must really deviate"
    assert [i for i in spikes if not 300 <= i < 500] == [150, 500]
    assert len(in_onset) <= 1


def test_glitches_a_few_readings_apart_are_each_flagged():
    # The simulator's spike fault at full rate: one glitch per ten readings, three in any window.
    rng = np.random.default_rng(5)
    ts = np.arange(600, dtype=np.float64)
    values = 50 + rng.normal(0, 0.5, 600)
    glitches = list(range(100, 500, 10))
    values[glitches] += 30.0
    assert indices_with(flags_of(ts, values), QualityFlag.SPIKE) == glitches


def test_a_flat_signal_does_not_flag_tiny_noise_as_a_spike_thanks_to_the_floor():
    ts = np.arange(200, dtype=np.float64)
    values = np.full(200, 50.0)
    values[100] = 50.04  # 0.08 % of the level: below the floor of 8 x 0.1 % of the valid range
    values[150] = 60.0
    assert indices_with(flags_of(ts, values), QualityFlag.SPIKE) == [150]


def test_a_coarsely_quantised_signal_changing_level_is_not_a_spike_but_a_big_jump_is():
    # A transmitter with 0.5-unit steps that sits on one level and moves a level or two at a time.
    rng = np.random.default_rng(3)
    ts = np.arange(600, dtype=np.float64)
    values = 20.0 + 0.5 * np.cumsum(rng.choice([0, 0, 0, 0, 0, 0, 1, -1], size=600))
    values[400] += 10.0  # 20 quantisation steps: a real glitch
    spikes = indices_with(flags_of(ts, values, valid_min=None, valid_max=None), QualityFlag.SPIKE)
    # Once its history has shown the steps (a window of values); before, a first level change off a flat
    # start cannot be told from a glitch by the readings before it, which are all the rule may use.
    assert [i for i in spikes if i >= RULES["window"]] == [400]


def test_a_repeated_value_is_flagged_stuck_from_the_nth_sample_of_the_run():
    ts, values = noisy_sine(400)
    values[100:130] = 42.0  # a 30-sample run: samples 20..30 of it are stuck
    flags = flags_of(ts, values)
    assert indices_with(flags, QualityFlag.STUCK) == list(range(119, 130))


def test_a_run_shorter_than_the_threshold_is_not_stuck():
    ts, values = noisy_sine(400)
    values[100:119] = 42.0  # 19 samples
    assert indices_with(flags_of(ts, values), QualityFlag.STUCK) == []


def test_a_stuck_run_that_began_in_the_context_counts():
    ts, values = noisy_sine(100)
    values[50:] = 42.0
    # The batch starts at index 60 with a run of 10 already in the context: 20th sample is batch index 9.
    flags = flags_of(ts, values, n_context=60)
    assert indices_with(flags, QualityFlag.STUCK) == list(range(9, 40))


def test_the_reading_after_a_gap_is_flagged():
    ts, values = noisy_sine(300)
    ts[150:] += 10.0  # 11 s between samples 149 and 150 for a 1 s sensor
    ts[250:] += 2.5  # 3.5 s: still a gap (> 3 periods)
    ts[280:] += 1.9  # 2.9 s: not a gap
    assert indices_with(flags_of(ts, values), QualityFlag.GAP) == [150, 250]


def test_only_the_batch_part_of_the_series_is_returned():
    ts, values = noisy_sine(100)
    values[10] = 200.0  # in the context: not reported
    values[70] = 200.0
    flags = flags_of(ts, values, n_context=50)
    assert len(flags) == 50
    assert indices_with(flags, QualityFlag.OUT_OF_RANGE) == [20]


def test_groups_are_flagged_independently_and_do_not_leak_into_each_other():
    ts_a, values_a = noisy_sine(200, seed=1)
    ts_b = np.arange(200, dtype=np.float64) + 5000.0  # far later: a gap if the groups were joined
    values_b = np.full(200, 7.0)  # a stuck sensor
    group = np.r_[np.zeros(200), np.ones(200)]
    flags = compute_flags(
        group,
        np.r_[ts_a, ts_b],
        np.r_[values_a, values_b],
        valid_min=0.0,
        valid_max=100.0,
        sample_period_s=1.0,
        **RULES,
    )
    assert not flags[:200].any()
    assert indices_with(flags, QualityFlag.GAP) == []
    assert indices_with(flags, QualityFlag.STUCK) == list(range(219, 400))


def steady_with_outage(n: int = 600, outage_at: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A steady 1 s signal whose link is down for five minutes before sample ``outage_at``."""
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.float64)
    ts[outage_at:] += 300.0
    return ts, 40.0 + rng.normal(0, 0.3, n)


def test_readings_after_a_data_link_outage_are_not_spikes_when_the_process_moved_meanwhile():
    # A link (gateway, bridge, PLC connection) is down for five minutes while the pump changes duty: the
    # readings resume at another level. The history before the gap says nothing about a glitch after it,
    # so the resumed readings are the reading after a gap, not spikes ("check the sensor" on a healthy one).
    ts, values = steady_with_outage()
    values[300:] += 8.0
    flags = flags_of(ts, values)
    assert indices_with(flags, QualityFlag.GAP) == [300]
    assert indices_with(flags, QualityFlag.SPIKE) == []


def test_a_glitch_after_a_gap_is_still_a_spike_once_the_new_history_is_there():
    ts, values = steady_with_outage()
    values[300:] += 8.0
    values[[320, 450]] += [30.0, -30.0]
    assert indices_with(flags_of(ts, values), QualityFlag.SPIKE) == [320, 450]


@pytest.mark.parametrize("batch", [1, 3, 7, 50])
def test_a_readings_flags_do_not_depend_on_how_the_stream_was_batched(batch):
    """The edge agent flags each poll's readings, the ingest the agent's forwarded batches: each batch with
    the stored readings before it as context (window + 1 of them, as both callers give). A reading's flags
    must be the same however the stream was cut. Before, the spike floor's resolution was the smallest step
    of the whole call, later readings of the batch included: the readings right after a sensor came unstuck
    were spikes over the whole stream and not when flagged one by one."""
    ts, values = noisy_sine(600)
    values = np.round(values, 1)
    values[200:240] = values[200]  # stuck, then back to the process
    values[[300, 305, 400]] *= 5  # glitches
    ts = np.delete(ts, range(100, 110))  # a gap
    values = np.delete(values, range(100, 110))
    whole = flags_of(ts, values)
    context = RULES["window"] + 1
    cut = np.concatenate(
        [
            flags_of(
                ts[max(0, i - context) : i + batch], values[max(0, i - context) : i + batch], min(i, context)
            )
            for i in range(0, len(ts), batch)
        ]
    )
    assert indices_with(whole, QualityFlag.SPIKE)  # the glitches at least
    np.testing.assert_array_equal(cut, whole)
