"""The pure plant simulator: determinism, physical correlations and the visible effect of each fault."""

from __future__ import annotations

import numpy as np
import pytest

from plant.simulator import ROLES, Fault, FaultSchedule, PlantSimulator, SimAsset

T0 = 1_767_600_000.0  # 2026-01-05 08:00 UTC: the origin faults are relative to
TAGS = ["p-101", "p-102", "p-103"]


def pumps(tags: list[str] = TAGS) -> list[SimAsset]:
    return [SimAsset(tag, {role: f"demo.{tag}.{role}" for role in ROLES}) for tag in tags]


def simulate(*faults: Fault, seed: int = 7, start: float = T0 - 600, end: float = T0 + 1800):
    sim = PlantSimulator(pumps(), seed=seed, faults=FaultSchedule(faults), origin=T0)
    return sim.signals(start, end)


def interval(frame, start_s: float, duration_s: float) -> np.ndarray:
    return (frame.ts >= T0 + start_s) & (frame.ts < T0 + start_s + duration_s)


def test_the_same_seed_gives_the_same_readings_and_another_seed_does_not():
    first = PlantSimulator(pumps(), seed=3).step(T0, T0 + 300)
    again = PlantSimulator(pumps(), seed=3).step(T0, T0 + 300)
    other = PlantSimulator(pumps(), seed=4).step(T0, T0 + 300)

    assert list(first[0]) == list(again[0])
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[2], again[2])
    assert not np.allclose(first[2], other[2])


def test_slicing_time_into_steps_does_not_change_the_readings():
    schedule = FaultSchedule.default(TAGS)
    whole = PlantSimulator(pumps(), seed=1, faults=schedule, origin=T0).signals(T0, T0 + 700)
    sliced = PlantSimulator(pumps(), seed=1, faults=schedule, origin=T0)
    parts = [sliced.signals(T0 + t, T0 + min(t + 37.5, 700)) for t in np.arange(0, 700, 37.5)]

    np.testing.assert_array_equal(np.concatenate([p.ts for p in parts]), whole.ts)
    for tag in TAGS:
        for role in ROLES:
            joined = np.concatenate([p.values[tag][role] for p in parts])
            np.testing.assert_allclose(joined, whole.values[tag][role], rtol=1e-12)


def test_step_returns_one_reading_per_sensor_per_second_inside_the_interval():
    keys, ts, values = PlantSimulator(pumps(), seed=0).step(T0 + 0.5, T0 + 60.5)

    assert len(keys) == len(ts) == len(values) == 60 * len(ROLES) * len(TAGS)
    assert set(keys) == {f"demo.{tag}.{role}" for tag in TAGS for role in ROLES}
    assert ts.min() == T0 + 1 and ts.max() == T0 + 60
    assert np.isfinite(values).all()


def test_an_asset_only_sends_the_roles_it_has_sensors_for():
    asset = SimAsset("p-9", {"flow": "x.p-9.flow", "current": "x.p-9.current"})
    keys, _ts, _values = PlantSimulator([asset]).step(T0, T0 + 10)

    assert set(keys) == {"x.p-9.flow", "x.p-9.current"}


def test_flow_and_current_follow_the_load_and_readings_stay_in_plausible_ranges():
    frame = simulate(start=T0, end=T0 + 3600)

    for tag in TAGS:
        load, values = frame.load[tag], frame.values[tag]
        assert load.std() > 0.05, "the duty cycle should actually change the load"
        assert np.corrcoef(load, values["flow"])[0, 1] > 0.7
        assert np.corrcoef(load, values["current"])[0, 1] > 0.7
        assert np.corrcoef(values["flow"], values["pressure"])[0, 1] > 0.7
        assert 0 < values["vibration"].mean() < 4.5  # mm/s RMS: a healthy pump
        assert 20 < values["temperature"].mean() < 80  # °C
        assert (values["pressure"] > 0).all() and (values["flow"] > 0).all()


def test_bearing_temperature_lags_behind_the_motor_current():
    values = simulate(start=T0, end=T0 + 3600).values["p-101"]
    current, temperature = values["current"], values["temperature"]

    same_time = np.corrcoef(current, temperature)[0, 1]
    five_minutes_later = np.corrcoef(current[:-300], temperature[300:])[0, 1]
    assert five_minutes_later > same_time


def test_a_stuck_sensor_freezes_its_value_only_during_the_fault():
    fault = Fault("stuck_sensor", "p-102", "pressure", start_s=120, duration_s=240)
    frame, clean = simulate(fault), simulate()
    inside = interval(frame, 120, 240)
    pressure = frame.values["p-102"]["pressure"]

    assert inside.sum() == 240
    assert np.ptp(pressure[inside]) == 0.0
    assert pressure[~inside].std() > 0.1
    np.testing.assert_array_equal(pressure[~inside], clean.values["p-102"]["pressure"][~inside])
    np.testing.assert_array_equal(frame.values["p-102"]["flow"], clean.values["p-102"]["flow"])


def test_spikes_are_isolated_huge_values_inside_the_interval_only():
    fault = Fault("spikes", "p-103", "vibration", start_s=300, duration_s=300)
    frame, clean = simulate(fault), simulate()
    inside = interval(frame, 300, 300)
    diff = frame.values["p-103"]["vibration"] - clean.values["p-103"]["vibration"]
    spikes = np.flatnonzero(diff != 0)

    assert len(spikes) >= 5
    assert inside[spikes].all()
    assert np.diff(spikes).min() >= 3, "spikes must be isolated samples, not bursts"
    baseline = clean.values["p-103"]["vibration"][inside]
    assert diff[spikes].min() > 10 * baseline.std()


def test_a_calibration_drift_adds_an_offset_that_grows_then_disappears():
    fault = Fault("calibration_drift", "p-101", "temperature", start_s=200, duration_s=600)
    frame, clean = simulate(fault), simulate()
    inside = interval(frame, 200, 600)
    offset = frame.values["p-101"]["temperature"] - clean.values["p-101"]["temperature"]

    assert (offset[~inside] == 0).all()
    thirds = np.array_split(offset[inside], 3)
    assert 0 < thirds[0].mean() < thirds[1].mean() < thirds[2].mean()
    assert thirds[2].mean() > 5.0  # °C: big enough to notice, small enough to look plausible


def test_bearing_wear_raises_vibration_temperature_and_a_little_current():
    fault = Fault("bearing_wear", "p-101", None, start_s=60, duration_s=900)
    frame, clean = simulate(fault), simulate()
    late = interval(frame, 60 + 600, 300)
    before = frame.ts < T0 + 60
    worn, healthy = frame.values["p-101"], clean.values["p-101"]

    assert worn["vibration"][late].mean() > 2 * healthy["vibration"][late].mean()
    assert worn["temperature"][late].mean() > healthy["temperature"][late].mean() + 8
    ratio = worn["current"][late].mean() / healthy["current"][late].mean()
    assert 1.01 < ratio < 1.1
    for role in ROLES:
        np.testing.assert_array_equal(worn[role][before], healthy[role][before])
    after = frame.ts >= T0 + 960
    assert worn["vibration"][after].mean() == pytest.approx(healthy["vibration"][after].mean())


def test_cavitation_drops_pressure_and_flow_and_makes_them_noisy():
    fault = Fault("cavitation", "p-102", None, start_s=100, duration_s=300)
    frame, clean = simulate(fault), simulate()
    settled = interval(frame, 160, 240)
    after = frame.ts >= T0 + 400
    bad, good = frame.values["p-102"], clean.values["p-102"]

    pressure_drop = bad["pressure"][settled] / good["pressure"][settled]
    assert pressure_drop.mean() < 0.85
    assert (bad["pressure"][settled] - good["pressure"][settled]).std() > 0.2
    assert bad["flow"][settled].mean() < 0.9 * good["flow"][settled].mean()
    assert bad["vibration"][settled].mean() > 1.3 * good["vibration"][settled].mean()
    np.testing.assert_array_equal(bad["pressure"][after], good["pressure"][after])


def test_a_fault_on_one_asset_leaves_the_other_assets_untouched():
    frame = simulate(Fault("bearing_wear", "p-101", None, start_s=0, duration_s=600))
    clean = simulate()

    for tag in ("p-102", "p-103"):
        for role in ROLES:
            np.testing.assert_array_equal(frame.values[tag][role], clean.values[tag][role])


def test_the_default_schedule_puts_each_fault_kind_on_its_own_asset_within_ten_minutes():
    tags = [f"p-{101 + i}" for i in range(6)]
    schedule = FaultSchedule.default(tags)
    occurrences = schedule.occurrences(T0, T0, T0 + 3600)

    kinds = {o.fault.kind for o in occurrences}
    assert kinds == {"bearing_wear", "cavitation", "stuck_sensor", "spikes", "calibration_drift"}
    assert len({o.fault.asset_tag for o in occurrences}) == 5
    assert all(T0 < o.start <= T0 + 600 for o in occurrences)
    assert all(o.end < T0 + 3600 for o in occurrences), "every fault ends again"
    assert len({o.start for o in occurrences}) == 5, "faults are staggered"


def test_the_default_schedule_repeats_every_hour_and_skips_kinds_without_an_asset():
    schedule = FaultSchedule.default(["p-101", "p-102"])
    occurrences = schedule.occurrences(T0, T0 + 3600, T0 + 7200)

    assert sorted(o.fault.kind for o in occurrences) == ["bearing_wear", "cavitation"]
    assert all(T0 + 3600 < o.start < T0 + 4200 for o in occurrences)


def test_a_fault_spec_is_parsed_with_units_and_severity():
    schedule = FaultSchedule.parse("spikes@p-101.vibration:2m:5m:1.5, bearing_wear@p-102:30:1h", TAGS)

    assert schedule.faults == (
        Fault("spikes", "p-101", "vibration", 120.0, 300.0, 1.5),
        Fault("bearing_wear", "p-102", None, 30.0, 3600.0, 1.0),
    )
    assert len(FaultSchedule.parse("none", TAGS)) == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("melting@p-101:0:60", "unknown fault kind 'melting'"),
        ("spikes@p-101:0:60", "needs a sensor role"),
        ("cavitation@p-101.flow:0:60", "do not give a sensor role"),
        ("spikes@p-999.flow:0:60", "no simulated asset 'p-999'"),
        ("spikes p-101", "cannot read fault 'spikes p-101'"),
        ("stuck_sensor@p-101.flow:0:0", "duration must be > 0"),
    ],
)
def test_a_bad_fault_spec_is_refused_with_a_message_naming_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        FaultSchedule.parse(spec, TAGS)


def test_a_fault_for_an_asset_that_is_not_simulated_is_refused():
    with pytest.raises(ValueError, match="not simulated: p-404"):
        PlantSimulator(pumps(), faults=FaultSchedule([Fault("bearing_wear", "p-404", None, 0, 60)]))


def quality_flags(ts: np.ndarray, values: np.ndarray, settings) -> np.ndarray:
    """The quality flags ingest would give one simulated 1 s series, with the settings' thresholds."""
    from detection.quality import flag_series

    return flag_series(
        ts,
        values,
        0,
        valid_min=None,
        valid_max=None,
        sample_period_s=1.0,
        spike_mads=settings.VIGIL_QUALITY_SPIKE_MADS,
        stuck_samples=settings.VIGIL_QUALITY_STUCK_SAMPLES,
        gap_factor=settings.VIGIL_QUALITY_GAP_FACTOR,
    )


def test_healthy_simulated_pumps_raise_no_data_quality_flags(settings):
    # The demo must not show "bad data" on pumps that are fine: duty changes are ramps, not steps.
    frame = simulate(start=T0, end=T0 + 3600)
    for tag in TAGS:
        for role in ROLES:
            flags = quality_flags(frame.ts, frame.values[tag][role], settings)
            assert (flags != 0).sum() <= 2, f"{tag}.{role}"


def test_a_resumed_run_starts_from_the_stored_level_and_fades_to_its_own_signal_however_it_is_sliced():
    from plant.simulator import Seam

    key, seam_ts = "demo.p-101.temperature", T0 + 300.5
    own = PlantSimulator(pumps(), seed=2).signals(T0, T0 + 2400).values["p-101"]["temperature"]
    stored = float(own[300]) + 8.0  # the last run ended 8 °C warmer (a wear it was in the middle of)

    def resumed(step_s: float) -> np.ndarray:
        sim = PlantSimulator(pumps(), seed=2)
        sim.resume({key: Seam(seam_ts, stored)})
        parts = [sim.signals(T0 + t, T0 + min(t + step_s, 2400)) for t in np.arange(0, 2400, step_s)]
        return np.concatenate([part.values["p-101"]["temperature"] for part in parts])

    whole, sliced = resumed(2400), resumed(7)
    np.testing.assert_array_equal(whole, sliced)
    np.testing.assert_array_equal(whole[:301], own[:301])  # before the seam: this run's own (dropped) data
    assert abs(whole[301] - stored) < 0.5  # the first sample after it joins the stored level
    assert abs((whole - own)[1500:].mean()) < 0.3  # 20 min on, the difference has faded
    assert np.abs(np.diff(whole[301:330])).max() < 0.6  # and goes on from there with no step


def test_a_stuck_sensor_of_a_resumed_run_repeats_one_value_exactly_while_the_seam_offset_fades(settings):
    # A demo restart resumes each sensor's stored level with an offset that fades over minutes; a sensor
    # stuck meanwhile must still repeat its value exactly, or the STUCK flag (exact repeats) never fires.
    from plant.choices import QualityFlag
    from plant.simulator import Seam

    key, seam_ts = "demo.p-102.pressure", T0 + 60.5
    own = PlantSimulator(pumps(), seed=2).signals(T0, T0 + 61).values["p-102"]["pressure"]
    fault = Fault("stuck_sensor", "p-102", "pressure", start_s=120, duration_s=240)
    sim = PlantSimulator(pumps(), seed=2, faults=FaultSchedule([fault]), origin=T0)
    sim.resume({key: Seam(seam_ts, float(own[60]) + 0.4)})
    frame = sim.signals(T0, T0 + 600)
    pressure = frame.values["p-102"]["pressure"]
    inside = interval(frame, 120, 240)

    assert np.ptp(pressure[inside]) == 0.0
    flags = quality_flags(frame.ts, pressure, settings)
    stuck = (flags & int(QualityFlag.STUCK)) != 0
    assert stuck[inside].sum() == 240 - settings.VIGIL_QUALITY_STUCK_SAMPLES + 1
    assert not stuck[~inside].any()
