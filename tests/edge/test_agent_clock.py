"""A source whose clock jumps ahead for a few seconds (a PLC or device clock set wrong, then corrected)
must not blind the agent's local decisions: before, the jumped readings became the decider's "latest"
time, every later reading looked old and was trimmed away, and no window was decided until real time
caught up with the jump — an hour without local alerts, and nothing said so."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from connectivity.points import Sample
from edge.agent import MAX_FUTURE_S, Agent
from tests.edge.conftest import STEP_S, TRAIN_S, WINDOW_S, samples_of, simulator, unreachable_server_config

RUN_S = 1500
FAULT_AFTER_S = 300  # the simulated bearing wear opens an alert ~250 s after it starts (seen: 550 s)
JUMP = range(200, 205)  # seconds of the run whose readings are dated an hour ahead


def run_agent(bundle, data_dir: Path, offset: float, jump_s: float) -> tuple[list, int, int]:
    async def scenario() -> tuple[list, int, int]:
        config = unreachable_server_config(bundle.path, data_dir)
        events: list = []

        async def publisher(event) -> None:
            events.append(event)

        agent = Agent(config, publisher=publisher)
        sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)
        windows = 0
        for second in range(RUN_S):
            t = TRAIN_S + second
            shift = offset + (jump_s if second in JUMP else 0.0)
            await agent.sink([Sample(s.point, s.ts + shift, s.value) for s in samples_of(sim, t, t + 1.0)])
            windows += len(agent.deciders["p-101"].last_scored)
        queued = agent.queue.stats().readings
        await agent.forwarder.close()
        agent.queue.close()
        return events, windows, queued

    return asyncio.run(scenario())


def test_readings_dated_ahead_by_a_clock_jump_do_not_stop_the_local_decisions(bundle, tmp_path, caplog):
    # Both runs on the same times (windows end on multiples of the step), ending 5-65 s ago: live readings.
    offset = (time.time() - RUN_S - TRAIN_S - 5.0) // 60 * 60
    steady, steady_windows, _ = run_agent(bundle, tmp_path / "steady", offset, 0.0)
    assert [e.kind for e in steady] == ["opened"]  # the fault's alert, without a jump

    with caplog.at_level(logging.WARNING, logger="edge.agent"):
        jumped, windows, queued = run_agent(bundle, tmp_path / "jumped", offset, 3600.0)
    assert [(e.kind, e.at) for e in jumped] == [(e.kind, e.at) for e in steady]
    assert windows >= steady_windows - 6  # at most the windows holding the jumped seconds
    # The jumped readings are still queued for the server (whose ingest judges and counts them) and the
    # agent said why it left them out of its decisions.
    assert queued == RUN_S * 5
    assert any(
        f"ahead of this gateway's clock by more than {MAX_FUTURE_S:.0f} s" in r.message
        for r in caplog.records
    )


# --- the gateway's own clock jumps (an NTP step after a long offline stretch, an operator setting the time) ---

GATEWAY_JUMP_AT = 400  # second of the run at which the gateway's clock jumps (before the alert opens)


def run_gateway_jump(
    bundle, data_dir: Path, monkeypatch, offset: float, jump_s: float, dated_by_gateway: bool
) -> tuple[list, list[int], float]:
    """RUN_S seconds of the pump with the fault, fed second by second; at GATEWAY_JUMP_AT the gateway's wall
    clock (``time.time``, as the agent reads it) jumps by ``jump_s``. A source that dates its readings by the
    gateway's clock (Modbus, MQTT without a time in the payload) moves with it; one with its own clock (OPC UA
    source timestamps) does not. The last second before the jump is delivered after it. Returns the events, the seconds of the run at which windows were decided
    and the wall-clock shift in force at the end."""
    real_time = time.time
    shift = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + shift[0])

    async def scenario() -> tuple[list, list[int]]:
        agent = Agent(unreachable_server_config(bundle.path, data_dir))
        sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)
        deciding: list[int] = []
        held: list[Sample] = []
        for second in range(RUN_S):
            if second == GATEWAY_JUMP_AT:
                shift[0] = jump_s
            dated = offset + (shift[0] if dated_by_gateway else 0.0)
            t = TRAIN_S + second
            batch = [Sample(s.point, s.ts + dated, s.value) for s in samples_of(sim, t, t + 1.0)]
            if second == GATEWAY_JUMP_AT - 1:
                held = batch  # read before the jump, delivered after it (behind the first readings after it)
                continue
            await agent.sink(batch + held)
            held = []
            if agent.deciders["p-101"].last_scored:
                deciding.append(second)
        events = list(agent.events)
        # What a restart would continue from is on the same time line as the decider (the kept readings
        # were rewritten when it followed the jump).
        kept = agent.queue.recent_readings()
        assert max(r.ts for r in kept) == max(ts for _, ts, _, _ in agent.deciders["p-101"].window_rows())
        assert kept[0].ts >= agent.deciders["p-101"].last_end - 200
        await agent.forwarder.close()
        agent.queue.close()
        return events, deciding

    try:
        events, deciding = asyncio.run(scenario())
    finally:
        monkeypatch.setattr(time, "time", real_time)
    return events, deciding, shift[0]


@pytest.mark.parametrize(
    "jump_s, dated_by_gateway",
    [
        (
            -3600.0,
            True,
        ),  # set back an hour, Modbus readings dated by it: they fell behind the windows decided
        (3600.0, True),  # set forward an hour: the window being filled emptied, ~30 s without a decision
        (-3600.0, False),  # set back, readings with their own (right) clock: all "ahead of the clock"
    ],
)
def test_a_jump_of_the_gateways_clock_keeps_the_local_decisions_coming(
    bundle, tmp_path, monkeypatch, caplog, jump_s, dated_by_gateway
):
    offset = (time.time() - RUN_S - TRAIN_S - 5.0) // 60 * 60
    steady, steady_deciding, _ = run_gateway_jump(bundle, tmp_path / "steady", monkeypatch, offset, 0.0, True)
    assert [e.kind for e in steady] == ["opened"] and max(np.diff(steady_deciding)) <= STEP_S

    with caplog.at_level(logging.WARNING, logger="edge"):
        jumped, deciding, _ = run_gateway_jump(
            bundle, tmp_path / "jumped", monkeypatch, offset, jump_s, dated_by_gateway
        )
    # A window every step, across the jump as before it: no pause.
    assert deciding[-1] >= RUN_S - STEP_S and max(np.diff(deciding)) <= STEP_S, deciding
    # The same alert, at the same moment of the pump's run — in the time the readings were dated by.
    moved = jump_s if dated_by_gateway else 0.0
    assert [(e.kind, e.at) for e in jumped] == [(e.kind, e.at + moved) for e in steady]
    direction = "forward" if jump_s > 0 else "back"
    assert any(f"clock jumped {direction} by {abs(jump_s):.1f} s" in r.message for r in caplog.records), [
        r.message for r in caplog.records
    ]


STOP_AT = 700  # second of the run at which the agent stops (in the alert), restarted a few seconds later


@pytest.mark.parametrize("shift_s", [-86_400.0, 3 * 365 * 86_400.0])
def test_a_clock_set_while_the_agent_was_stopped_does_not_stop_the_local_decisions(
    bundle, tmp_path, monkeypatch, caplog, shift_s
):
    """The gateway restarts with its clock a day behind (a flat RTC battery, NTP not yet answering) or three
    years ahead, and its readings dated by it. Before, a clock set back left every reading behind the saved
    last window (no decision until the clock caught up), and one set far forward asked for more windows than
    one call may build (an error on every batch)."""
    data = tmp_path / "agent"
    offset = time.time() - 1.0 - TRAIN_S - STOP_AT
    offset -= offset % STEP_S
    sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)

    def batch(second: int, shift: float) -> list[Sample]:
        t = TRAIN_S + second
        return [Sample(s.point, s.ts + offset + shift, s.value) for s in samples_of(sim, t, t + 1.0)]

    async def first_life() -> list:
        agent = Agent(unreachable_server_config(bundle.path, data))
        for second in range(STOP_AT):
            await agent.sink(batch(second, 0.0))
        return agent.events  # stopped as a power cut stops it: nothing closed

    async def second_life() -> tuple[list, list[int], bool]:
        agent = Agent(unreachable_server_config(bundle.path, data))
        deciding = []
        for second in range(STOP_AT + 3, RUN_S):
            await agent.sink(batch(second, shift_s))
            if agent.deciders["p-101"].last_scored:
                deciding.append(second)
        in_alert = agent.deciders["p-101"].in_alert
        await agent.forwarder.close()
        agent.queue.close()
        return agent.events, deciding, in_alert

    before = asyncio.run(first_life())
    assert [e.kind for e in before] == ["opened"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + shift_s)
    with caplog.at_level(logging.WARNING, logger="edge"):
        after, deciding, in_alert = asyncio.run(second_life())
    monkeypatch.setattr(time, "time", real_time)
    # Decisions again once a window holds enough readings, then every step; the alert goes on, not reopened.
    assert deciding and deciding[0] <= STOP_AT + 3 + WINDOW_S and max(np.diff(deciding)) <= STEP_S, deciding
    assert after == [] and in_alert
    if shift_s < 0:
        assert any("behind the saved state" in r.message for r in caplog.records)
