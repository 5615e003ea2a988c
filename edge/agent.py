"""The edge agent: local sources → durable queue → local decisions → local publication, and the forwarder.

``Agent.sink`` is the sink every source client is given (``connectivity.points.Sink``): it stores the
batch in the local queue first (durable: a source acknowledges its protocol only after the sink returned),
then feeds each asset's ``AssetDecider`` and decides at once, so a reading's decision takes one scoring of
the new windows, whether or not the server is reachable. Each decided event is queued for the server (in
the same moment as the decider's saved state, so a restart neither loses nor repeats it) and handed to the
local publisher (MQTT retained topic / OPC UA node / Modbus coil through the protocol clients' write-back,
or any async callable); a publisher failure is logged and never blocks the decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from connectivity.points import Sample
from detection.bundle import load_bundle
from edge.config import AgentConfig
from edge.decide import AlertEvent, AssetDecider
from edge.forward import Forwarder
from edge.model import EdgeModel
from edge.queue import LocalQueue

logger = logging.getLogger("edge.agent")

AGENT_VERSION = "1"
Publisher = Callable[[AlertEvent], Awaitable[None]]
Source = Callable[[Callable[[list[Sample]], Awaitable[None]]], Awaitable[None]]
# The decider's state is saved with every event and at least this often, so a restart resumes close to
# where the agent stopped (the readings after that are still in the queue's future, not lost).
STATE_EVERY_S = 30.0


class Agent:
    """See the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        publisher: Publisher | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.config = config
        self.queue = LocalQueue(Path(config.data_dir) / "queue.sqlite3", config.queue_max_bytes)
        self.deciders: dict[str, AssetDecider] = {}
        for asset in config.assets:
            bundle = load_bundle(str(asset.bundle))
            model = EdgeModel(bundle)
            sensors = dict(bundle.spec.get("sensors") or {})
            decider = AssetDecider(asset.tag, model, sensors)
            decider.restore(self.queue.load_state(f"decider:{asset.tag}"))
            self.deciders[asset.tag] = decider
        self.publisher = publisher
        self.forwarder = forwarder or Forwarder(
            self.queue,
            config.server_url,
            config.token,
            heartbeat_s=config.heartbeat_s,
            agent_version=AGENT_VERSION,
            heartbeat_extra=self._heartbeat_extra,
        )
        self.decision_latencies: list[float] = []  # seconds from a batch's arrival to its decisions
        self.events: list[AlertEvent] = []
        self._saved_at = 0.0
        self._recent_opened: list[float] = []

    # --- the sink of every source ---------------------------------------------------------------------------
    async def sink(self, samples: list[Sample]) -> None:
        arrived = time.perf_counter()
        self.queue.put_readings((s.point, s.ts, s.value, s.status.value) for s in samples)
        events: list[AlertEvent] = []
        for decider in self.deciders.values():
            if decider.add(samples):
                events += decider.decide()
        self.decision_latencies.append(time.perf_counter() - arrived)
        del self.decision_latencies[:-10_000]
        if events or time.monotonic() - self._saved_at >= STATE_EVERY_S:
            for event in events:
                self.queue.put_event(event.key, event.body())
            self._save_states()
        for event in events:
            self.events.append(event)
            if event.kind == "opened":
                self._recent_opened.append(time.time())
            await self._publish(event)

    def _save_states(self) -> None:
        for tag, decider in self.deciders.items():
            self.queue.save_state(f"decider:{tag}", decider.state_json())
        self._saved_at = time.monotonic()

    async def _publish(self, event: AlertEvent) -> None:
        if self.publisher is None:
            return
        try:
            await self.publisher(event)
        except Exception:  # the plant's own display failing must not stop the decisions
            logger.exception("publishing %s locally failed", event.key)

    def _heartbeat_extra(self) -> dict:
        day_ago = time.time() - 86_400
        self._recent_opened = [t for t in self._recent_opened if t >= day_ago]
        return {
            "models": {tag: d.sha256 for tag, d in self.deciders.items()},
            "local_alerts_24h": len(self._recent_opened),
        }

    # --- running --------------------------------------------------------------------------------------------
    async def run(self, sources: Sequence[Source], stop: asyncio.Event) -> None:
        """Run the sources and the forwarder until ``stop`` is set; then save the state and close."""
        tasks = [asyncio.create_task(source(self.sink)) for source in sources]
        tasks.append(asyncio.create_task(self.forwarder.run(stop)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._save_states()
            await self.forwarder.close()
            self.queue.close()
