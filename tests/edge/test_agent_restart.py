"""An agent restarted after a kill (a power blip on the gateway, a watchdog) decides the next window at
once, on the readings it had already received, and goes on with the alert it had open. Before, the rule
state was saved but the readings of the window being filled lived only in memory: local decisions paused
for about half a window (until a fresh window held enough readings) plus the downtime."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from connectivity.points import Sample
from bench.live_server import ROOT
from edge.agent import Agent
from tests.edge.conftest import STEP_S, TRAIN_S, WINDOW_S, samples_of, simulator, unreachable_server_config
from tests.edge.test_agent_kill import queued, wait_for
from tests.edge.test_main import write_config

FAULT_AFTER_S = 300  # the alert opens ~250 s after the fault starts
KILL_AT = 700  # second of the run at which the agent dies (in the alert), restarted DOWN_S seconds later
DOWN_S = 3
RUN_S = 900


def run(bundle, data: Path, offset: float, kill: bool) -> tuple[list, list[int]]:
    """The pump with its fault, second by second, through one agent — or two: the first dropped at KILL_AT
    without a stop (nothing closed, nothing saved beyond what the sink saved), the second started on the same
    data directory. The DOWN_S seconds after KILL_AT reach neither run (the source could not deliver them).
    Returns the events of both lives and the seconds at which windows were decided."""

    async def scenario() -> tuple[list, list[int]]:
        config = unreachable_server_config(bundle.path, data)
        agent = Agent(config)
        sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)
        events, deciding = [], []
        for second in range(RUN_S):
            t = TRAIN_S + second
            samples = [Sample(s.point, s.ts + offset, s.value) for s in samples_of(sim, t, t + 1.0)]
            if KILL_AT <= second < KILL_AT + DOWN_S:
                continue
            if second == KILL_AT + DOWN_S and kill:
                events += agent.events
                agent = Agent(config)  # the first agent is abandoned as a SIGKILL leaves it
                assert agent.deciders["p-101"].in_alert
            await agent.sink(samples)
            if agent.deciders["p-101"].last_scored:
                deciding.append(second)
        events += agent.events
        await agent.forwarder.close()
        agent.queue.close()
        return events, deciding

    return asyncio.run(scenario())


def test_a_restarted_agent_decides_what_an_agent_that_never_stopped_decides(bundle, tmp_path):
    # The readings are live: the kill comes at the present moment (second KILL_AT is one second ago).
    offset = time.time() - 1.0 - TRAIN_S - KILL_AT
    offset -= offset % STEP_S  # both runs on the same window grid
    steady, steady_deciding = run(bundle, tmp_path / "steady", offset, kill=False)
    assert [e.kind for e in steady] == ["opened"]

    restarted, deciding = run(bundle, tmp_path / "restarted", offset, kill=True)
    # The first window ending after the restart is decided as soon as a reading reaches it, every window after
    # it too, and the open alert goes on: not opened again, not lost.
    assert deciding == steady_deciding
    assert [(e.key, e.at) for e in restarted] == [(e.key, e.at) for e in steady]


def test_readings_too_old_for_the_window_are_not_restored(bundle, tmp_path):
    """The kept readings are those of the windows being filled: restarted at once, the agent decides the
    next window on them; restarted an hour later, they fill no window worth deciding any more (the windows
    before the stop were decided then) and the agent starts its windows afresh."""

    async def scenario(down_s: float) -> list[float]:
        data = tmp_path / f"down-{down_s:.0f}"
        config = unreachable_server_config(bundle.path, data)
        first = Agent(config)
        sim = simulator()
        offset = time.time() - down_s - TRAIN_S - 200
        offset -= offset % STEP_S
        for second in range(200):
            t = TRAIN_S + second
            await first.sink([Sample(s.point, s.ts + offset, s.value) for s in samples_of(sim, t, t + 1.0)])
        decided_before = first.deciders["p-101"].last_end
        again = Agent(config)  # started ``down_s`` after the last reading it had
        ends: list[float] = []
        for second in range(200, 200 + int(STEP_S)):  # the next readings, dated now
            t = TRAIN_S + second
            live = [Sample(s.point, s.ts + offset + down_s, s.value) for s in samples_of(sim, t, t + 1.0)]
            await again.sink(live)
            ends += [end for end, _ in again.deciders["p-101"].last_scored]
        for life in (first, again):
            await life.forwarder.close()
            life.queue.close()
        # Windows after the last saved state are decided again on the same readings (same events).
        return [end for end in ends if end > decided_before]

    assert len(asyncio.run(scenario(down_s=0.0))) == 1  # the next window, as if the agent had not stopped
    assert asyncio.run(scenario(down_s=3600.0)) == []  # no window of the hour-old readings


def saved_state(data: Path) -> dict:
    db = sqlite3.connect(f"file:{data / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return json.loads(db.execute("SELECT body FROM state WHERE name = 'decider:p-101'").fetchone()[0])
    finally:
        db.close()


def newest_reading(data: Path) -> float:
    if not (data / "queue.sqlite3").exists():
        return 0.0
    db = sqlite3.connect(f"file:{data / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT MAX(ts) FROM readings").fetchone()[0] or 0.0
    except sqlite3.OperationalError:  # the agent created the file and not yet its tables
        return 0.0
    finally:
        db.close()


def start(config: Path, log: Path) -> subprocess.Popen:
    """``python -m edge`` as tests.edge.test_main runs it, its output in ``log`` (a pipe nobody reads
    would fill up and stall the agent over a minute of forwarding errors)."""
    env = {**os.environ, "EDGE_TEST_TOKEN": "vgl_x"}
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def test_the_agent_process_killed_with_sigkill_decides_again_within_one_reading(devices, tmp_path):
    """`python -m edge` reading the simulated pump's Modbus device (a reading every 0.5 s), its server out
    of reach: killed with SIGKILL once its window is full, restarted at once on the same data directory. The
    first window ending after the restart is decided by the time the first reading past its end is stored
    (the sink decides before it stores), with the state saved at the stop showing it."""
    config = write_config(tmp_path, "http://127.0.0.1:9", devices)
    data, log = tmp_path / "data", tmp_path / "agent.log"
    proc = start(config, log)
    try:
        started = time.time()
        full = started + WINDOW_S + STEP_S
        wait_for("a full window of readings", lambda: newest_reading(data) > full, proc, timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = newest_reading(data)

        proc = start(config, log)
        first = wait_for(
            "a reading after the restart", lambda: (t := newest_reading(data)) > killed_at and t, proc
        )
        window_end = math.ceil(first / STEP_S) * STEP_S
        wait_for("a reading past the next window's end", lambda: newest_reading(data) >= window_end, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # a failed wait: the agent must not outlive the test
            proc.kill()
            proc.wait(timeout=10)
    out = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    last_end = saved_state(data)["last_end"]
    assert last_end is not None and last_end >= window_end, (
        last_end,
        window_end,
        first - killed_at,
        out[-2000:],
    )
    assert "reading(s) of the windows being decided restored" in out
    assert queued(data)[1] == 0  # the pump is healthy: no alert was opened, before or after the kill
