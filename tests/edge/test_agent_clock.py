"""A source whose clock jumps ahead for a few seconds (a PLC or device clock set wrong, then corrected)
must not blind the agent's local decisions: before, the jumped readings became the decider's "latest"
time, every later reading looked old and was trimmed away, and no window was decided until real time
caught up with the jump — an hour without local alerts, and nothing said so."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from connectivity.points import Sample
from edge.agent import MAX_FUTURE_S, Agent
from tests.edge.conftest import TRAIN_S, samples_of, simulator, unreachable_server_config

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
