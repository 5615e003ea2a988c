"""The Edge page's "Local alerts (24 h)" is the agent's heartbeat figure. It was a list in the agent's memory,
so a restart (a kill, a power blip, an update) reported 0 beside an alert the agent had opened an hour
before. It is now counted from the local queue's log of openings, which forwarding does not empty."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from connectivity.points import Sample
from edge.agent import LOCAL_ALERTS_S, Agent
from edge.queue import LocalQueue
from tests.edge.conftest import STEP_S, TRAIN_S, samples_of, simulator, unreachable_server_config

FAULT_AFTER_S = 300  # the alert opens ~250 s after the fault starts
RUN_S = 650


def test_a_restarted_agent_reports_the_alerts_it_opened_before_and_forgets_them_after_24_h(
    bundle, tmp_path, monkeypatch
):
    async def scenario() -> None:
        config = unreachable_server_config(bundle.path, tmp_path / "data")
        first = Agent(config)
        sim = simulator(fault_at=TRAIN_S + FAULT_AFTER_S)
        offset = time.time() - 1.0 - TRAIN_S - RUN_S  # live readings: the last one a second ago
        offset -= offset % STEP_S
        for second in range(RUN_S):
            t = TRAIN_S + second
            await first.sink([Sample(s.point, s.ts + offset, s.value) for s in samples_of(sim, t, t + 1.0)])
        assert [e.kind for e in first.events] == ["opened"]
        assert first._heartbeat_extra()["local_alerts_24h"] == 1
        # The server got the event (forwarded and acknowledged): the count does not come from the queue.
        first.queue.ack_events([event.id for event in first.queue.events_batch(100)])
        assert first._heartbeat_extra()["local_alerts_24h"] == 1

        again = Agent(config)  # the first is abandoned as a SIGKILL leaves it
        assert again.deciders["p-101"].in_alert
        assert again._heartbeat_extra()["local_alerts_24h"] == 1, "was 0: the count lived in memory"
        opened_at = time.time()
        monkeypatch.setattr(again.clock, "now", lambda: opened_at + LOCAL_ALERTS_S - 600)
        assert again._heartbeat_extra()["local_alerts_24h"] == 1
        monkeypatch.setattr(again.clock, "now", lambda: opened_at + LOCAL_ALERTS_S + 60)
        assert again._heartbeat_extra()["local_alerts_24h"] == 0
        for life in (first, again):
            await life.forwarder.close()
            life.queue.close()

    asyncio.run(scenario())


def test_an_opening_logged_again_counts_once_and_a_clock_jump_keeps_each_alert_s_age(tmp_path: Path):
    queue = LocalQueue(tmp_path / "q.sqlite3", 1 << 20)
    now = 1_800_000_000.0
    queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=now - 3600)
    queue.put_event("p-101/ab/2/1/cleared", {"kind": "cleared"})  # not an opening
    queue.ack_events([event.id for event in queue.events_batch(10)])
    # Decided again after a restart, resent under the same key: one alert.
    queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=now - 60)
    queue.put_event("p-101/ab/3/2/opened", {"kind": "opened"}, opened_at=now - LOCAL_ALERTS_S - 1)
    assert queue.opened_since(now - LOCAL_ALERTS_S) == 1
    # The gateway's clock is set two days ahead: the hour-old alert is still an hour old.
    queue.shift_opened(2 * 86_400)
    assert queue.opened_since(now + 2 * 86_400 - 7200) == 1
    assert queue.opened_since(now + 2 * 86_400 - 1800) == 0
    assert queue.opened_since(0.0) == 2  # counting forgets nothing
    queue.forget_opened(now + 2 * 86_400 - 1800)
    queue.close()
    assert LocalQueue(tmp_path / "q.sqlite3", 1 << 20).opened_since(0.0) == 0  # the older ones forgotten


@pytest.mark.parametrize("delta", [3 * 86_400.0, -3 * 86_400.0])
def test_a_jump_of_the_gateway_clock_neither_ages_nor_rejuvenates_the_agents_alerts(
    bundle, tmp_path, monkeypatch, delta
):
    async def scenario() -> None:
        agent = Agent(unreachable_server_config(bundle.path, tmp_path / "data"))
        now = time.time()
        agent.queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=now - 3600)
        agent._clock_jumped(delta)
        monkeypatch.setattr(agent.clock, "now", lambda: now + delta)
        assert agent._heartbeat_extra()["local_alerts_24h"] == 1
        monkeypatch.setattr(agent.clock, "now", lambda: now + delta + LOCAL_ALERTS_S)
        assert agent._heartbeat_extra()["local_alerts_24h"] == 0
        await agent.forwarder.close()
        agent.queue.close()

    asyncio.run(scenario())


def test_a_heartbeat_between_a_clock_jump_and_the_batch_that_shows_it_loses_no_alert(
    bundle, tmp_path, monkeypatch
):
    """The heartbeat runs on its own timer; the jump is seen by the next batch (``sink``), maybe minutes later
    when the sources are quiet. A count asked in between once forgot the openings the jump was to move."""

    async def scenario() -> None:
        agent = Agent(unreachable_server_config(bundle.path, tmp_path / "data"))
        now = time.time()
        agent.queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=now - 3600)
        delta = 3 * 86_400.0
        monkeypatch.setattr(agent.clock, "now", lambda: now + delta)
        agent._heartbeat_extra()  # the clock is 3 days ahead, no batch has shown it yet
        agent._clock_jumped(delta)  # the next batch's check finds the jump
        assert agent._heartbeat_extra()["local_alerts_24h"] == 1, "was 0: the heartbeat had forgotten it"
        await agent.forwarder.close()
        agent.queue.close()

    asyncio.run(scenario())


def test_the_agent_forgets_openings_older_than_a_day_after_a_batch(bundle, tmp_path):
    async def scenario() -> None:
        agent = Agent(unreachable_server_config(bundle.path, tmp_path / "data"))
        now = time.time()
        agent.queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=now - LOCAL_ALERTS_S - 60)
        agent.queue.put_event("p-101/ab/2/1/opened", {"kind": "opened"}, opened_at=now - 60)
        agent._saved_at = -float("inf")  # a state save is due with the next batch
        await agent.sink([Sample("p-101.temp", now - 1.0, 20.0)])
        assert agent.queue.opened_since(0.0) == 1
        await agent.forwarder.close()
        agent.queue.close()

    asyncio.run(scenario())


def test_a_clock_set_back_at_start_moves_the_logged_openings_once_however_often_the_agent_restarts(
    bundle, tmp_path
):
    """The clock is found a day behind the saved state at start; the agent is restarted again before any
    reading arrives (a watchdog, sources not up yet). The deciders start from their saved state each time,
    moved anew; the log of openings was moved again on each start, so an hour-old alert fell out of the
    count after the second."""
    now = time.time()
    ahead = now + 86_400.0
    data = tmp_path / "data"
    queue = LocalQueue(data / "queue.sqlite3", 64 << 20)
    queue.put_readings([], recent=[("p-101.unknown", ahead, 1.0, "good")], keep_s=600.0)
    queue.put_event("p-101/ab/1/1/opened", {"kind": "opened"}, opened_at=ahead - 3600)
    queue.close()

    async def life() -> int:
        agent = Agent(unreachable_server_config(bundle.path, data))
        count = agent._heartbeat_extra()["local_alerts_24h"]
        await agent.forwarder.close()
        agent.queue.close()
        return count

    assert [asyncio.run(life()) for _ in range(3)] == [1, 1, 1]
