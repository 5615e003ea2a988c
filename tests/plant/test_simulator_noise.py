"""SimAsset.noise: pumps that differ in healthy noise, with the default asset's signals unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from plant.simulator import ROLES, Fault, FaultSchedule, PlantSimulator, SimAsset

# sha256 of the values below as the simulator produced them before SimAsset had a noise multiplier
# (commit f0feb8c): the default must stay bit for bit what it was.
BEFORE_NOISE = "afb00064e909491a7d0e3fa6f64365c6be0dd35ee33e5e77d37dc27f6ec95060"


def _pump(tag: str, **kwargs) -> SimAsset:
    return SimAsset(tag, {role: f"{tag}.{role}" for role in ROLES}, **kwargs)


def _values(*assets: SimAsset, faults: FaultSchedule | None = None) -> np.ndarray:
    simulator = PlantSimulator(list(assets), seed=7, faults=faults)
    return simulator.step(0.0, 1200.0)[2]


def test_the_default_noise_gives_exactly_the_signals_from_before_the_multiplier():
    assets = [_pump("p-101"), _pump("p-202", size=1.3)]
    values = _values(*assets, faults=FaultSchedule.default([a.tag for a in assets]))
    assert hashlib.sha256(values.tobytes()).hexdigest() == BEFORE_NOISE
    explicit = [_pump("p-101", noise=1.0), _pump("p-202", size=1.3, noise=1.0)]
    assert np.array_equal(values, _values(*explicit, faults=FaultSchedule.default([a.tag for a in explicit])))


def test_noise_scales_the_healthy_noise_linearly_and_leaves_the_signal():
    frames = [
        PlantSimulator([_pump("p-1", noise=k)], seed=3).signals(0.0, 3600.0).values["p-1"]
        for k in (1.0, 2.0, 3.0)
    ]
    # Temperature follows current squared through its lag, so its noise is not linear in the multiplier.
    for role in [role for role in ROLES if role != "temperature"]:
        one, two, three = (frame[role] for frame in frames)
        step = two - one
        assert np.std(step) > 0
        assert np.allclose(three - two, step, rtol=1e-6, atol=1e-9 * np.abs(one).max())
        assert abs(np.mean(step)) < 0.05 * np.std(step) + 1e-9  # zero-mean noise: the signal itself is kept


def test_a_fault_signature_is_not_scaled_by_the_noise():
    fault = FaultSchedule([Fault("bearing_wear", "p-1", None, 600.0, 1200.0, 0.4)])
    quiet = PlantSimulator([_pump("p-1")], seed=3, faults=fault).signals(0.0, 1800.0)
    loud = PlantSimulator([_pump("p-1", noise=4.0)], seed=3, faults=fault).signals(0.0, 1800.0)
    late = quiet.ts >= 1400.0  # wear fully developed
    rise = np.mean(quiet.values["p-1"]["vibration"][late]) - np.mean(quiet.values["p-1"]["vibration"][:500])
    rise_loud = np.mean(loud.values["p-1"]["vibration"][late]) - np.mean(
        loud.values["p-1"]["vibration"][:500]
    )
    assert rise_loud == pytest.approx(rise, rel=0.1)


@pytest.mark.parametrize("noise", [0.0, -1.0, float("nan"), float("inf")])
def test_a_noise_that_is_not_a_positive_number_is_refused(noise):
    with pytest.raises(ValueError, match="noise must be a positive number"):
        _pump("p-1", noise=noise)


def test_the_temperature_gets_noisier_with_the_multiplier_too():
    residual = []
    for k in (1.0, 4.0):
        temperature = (
            PlantSimulator([_pump("p-1", noise=k)], seed=3).signals(0.0, 3600.0).values["p-1"]["temperature"]
        )
        residual.append(np.std(np.diff(temperature)))
    assert residual[1] > 3.0 * residual[0]
