"""The agent's local alert state for the plant's HMI (``[publish]``, a retained MQTT message per asset)
after the agent was killed while the broker was away: the alert had opened, its publication never reached
the broker, and the restarted agent — which knew from its saved rule state that the alert was still
active — published nothing, so the HMI showed the pump normal for the rest of the episode."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt
import orjson

from connectivity.points import Sample
from edge.agent import Agent
from edge.sources import LocalPublisher
from tests.brokers import mosquitto  # noqa: F401 (fixture)
from tests.edge.conftest import TRAIN_S, samples_of, simulator, unreachable_server_config

TOPIC = "vigil/edge/north/p-101/alert"


def publisher_of(broker) -> LocalPublisher:
    table = {"protocol": "mqtt", "endpoint": broker.endpoint, "options": {"writeback_prefix": "vigil/edge"}}
    return LocalPublisher({"publish": table}, "north")


async def retained(broker) -> dict | None:
    """The retained state on TOPIC, or None when the broker holds none."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(TOPIC, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    return orjson.loads(message.payload)
    return None


def test_a_restarted_agent_publishes_the_alert_state_the_plant_never_received(bundle, tmp_path, mosquitto):  # noqa: F811
    data = tmp_path / "agent"
    mosquitto.stop()  # the plant's broker is away when the alert opens

    async def first_life() -> list:
        publisher = publisher_of(mosquitto)
        agent = Agent(unreachable_server_config(bundle.path, data), publisher=publisher.publish)
        publishing = asyncio.create_task(publisher.run())
        sim = simulator(fault_at=TRAIN_S + 300)
        offset = time.time() - 700 - TRAIN_S
        opened = []
        for second in range(700):
            t = TRAIN_S + second
            await agent.sink([Sample(s.point, s.ts + offset, s.value) for s in samples_of(sim, t, t + 1.0)])
            opened += [e for e in agent.events if e.kind == "opened" and e not in opened]
        await asyncio.sleep(0.5)
        # SIGKILL: nothing is closed or flushed; the publication waiting for the broker dies with the process.
        publishing.cancel()
        return opened

    opened = asyncio.run(first_life())
    assert len(opened) == 1 and opened[0].asset == "p-101"
    mosquitto.start()
    assert asyncio.run(retained(mosquitto)) is None  # the plant never heard of the alert

    restored_levels = []

    async def second_life() -> dict | None:
        publisher = publisher_of(mosquitto)
        agent = Agent(unreachable_server_config(bundle.path, data), publisher=publisher.publish)
        decider = agent.deciders["p-101"]
        assert decider.in_alert  # the saved rule state: the episode goes on
        restored_levels.append(decider.params.level(decider.state.active.peak_score))
        publishing = asyncio.create_task(publisher.run())
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run([], stop))
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while not publisher.published:
                        await asyncio.sleep(0.05)
            return await retained(mosquitto)
        finally:
            stop.set()
            await running
            publishing.cancel()

    state = asyncio.run(second_life())
    assert state is not None, "the restarted agent left the plant's HMI without the open alert"
    assert state["state"] == "open" and state["asset"] == "p-101" and state["source"] == "edge"
    # The episode's severity as the agent last saved it: its peak went on rising after the opening.
    assert restored_levels[0] >= opened[0].level
    assert state["severity"] == ("low", "medium", "high", "critical")[restored_levels[0]]
    # With what the agent said of it when it opened: where to look and why, as the server's write-back says.
    told = opened[0]
    assert told.category == "machine_fault" and told.reason
    assert (state["category"], state["category_label"]) == (told.category, told.what)
    assert state["top_sensor_text"] == told.reason
