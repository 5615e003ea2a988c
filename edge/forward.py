"""Store and forward: the local queue's contents go to the server in batches whenever it answers.

Order of a round: alert events first (small, and the board should show an edge alert before the hour of
readings behind it), then readings, then — every ``heartbeat_s`` — a heartbeat with the queue's state and
the drops not yet reported. Each batch leaves the queue only after the server's 200: a crash or a cut in
between sends it again, and the server makes that harmless (readings are unique per sensor and time,
events per idempotency key, drops per (time, first reading)). Rows the server rejects for good (a 200
listing them as rejected: unknown sensor, an event naming a retired asset) are acknowledged too and
counted in ``ForwardStats`` — resending them would block the queue forever; they are logged with the
server's reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectivity.points import backoff_delays
from edge.queue import LocalQueue

logger = logging.getLogger("edge.forward")


class ForwardError(Exception):
    """The server did not take a batch (unreachable, 5xx, 401...): try again later."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# Answers that say the batch itself can never be taken as sent: resending it would block the queue.
PERMANENT = (400, 415, 422)


@dataclass
class ForwardStats:
    readings_sent: int = 0
    readings_rejected: int = 0
    events_sent: int = 0
    events_rejected: int = 0
    heartbeats: int = 0
    failures: int = 0
    last_error: str | None = None
    last_success_at: float | None = None
    rejections: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejections.append(reason)
        del self.rejections[:-20]
        logger.warning("the server rejected: %s", reason)


class Forwarder:
    """See the module docstring. ``heartbeat_extra`` adds the agent's own facts (models, alert rate)."""

    def __init__(
        self,
        queue: LocalQueue,
        server_url: str,
        token: str,
        *,
        readings_batch: int = 5_000,
        events_batch: int = 200,
        heartbeat_s: float = 30.0,
        timeout_s: float = 15.0,
        agent_version: str = "",
        heartbeat_extra: Callable[[], dict[str, Any]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.queue = queue
        self.readings_batch = readings_batch
        self.events_batch = events_batch
        self.heartbeat_s = heartbeat_s
        self.agent_version = agent_version
        self.heartbeat_extra = heartbeat_extra or dict
        self.stats = ForwardStats()
        self._last_heartbeat = -math.inf
        self._client = httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    # --- one round ------------------------------------------------------------------------------------------
    async def forward_once(self) -> int:
        """Send what is queued, batch after batch, until the queue is empty; returns the rows sent. Raises
        ForwardError at the first batch the server does not take (what was sent before stays sent)."""
        sent = 0
        while events := self.queue.events_batch(self.events_batch):
            sent += await self._send_events(events)
        while readings := self.queue.readings_batch(self.readings_batch):
            sent += await self._send_readings(readings)
        if time.monotonic() - self._last_heartbeat >= self.heartbeat_s:
            await self.heartbeat()
        self.stats.last_success_at = time.time()
        return sent

    async def run(self, stop: asyncio.Event, idle_s: float = 1.0) -> None:
        """Forward until ``stop`` is set: right away when there is something, with backoff while the
        server does not answer (doubling up to a minute), ``idle_s`` apart when the queue is empty."""
        delays = backoff_delays(first=1.0, cap=60.0)
        while not stop.is_set():
            try:
                await self.forward_once()
            except ForwardError as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                logger.info("forwarding paused: %s", exc)
                wait = next(delays)
            else:
                delays = backoff_delays(first=1.0, cap=60.0)
                wait = idle_s
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def heartbeat(self) -> None:
        stats = self.queue.stats()
        drops = self.queue.pending_drops()
        payload = {
            "agent_version": self.agent_version,
            "queue": {
                "readings": stats.readings,
                "events": stats.events,
                "oldest_ts": stats.oldest_ts,
                "bytes_used": stats.bytes_used,
                "max_bytes": stats.max_bytes,
                "dropped_total": stats.dropped_total,
            },
            "drops": [
                {"at": d.at, "count": d.count, "first_ts": d.first_ts, "last_ts": d.last_ts} for d in drops
            ],
            **self.heartbeat_extra(),
        }
        await self._post("/api/v1/edge/heartbeat", payload)
        self.queue.ack_drops([d.id for d in drops])
        self.stats.heartbeats += 1
        self._last_heartbeat = time.monotonic()

    # --- batches --------------------------------------------------------------------------------------------
    async def _send_events(self, events: list) -> int:
        body = await self._post("/api/v1/edge/events", {"events": [e.body for e in events]})
        for result in body.get("results", []):
            if result.get("outcome") == "rejected":
                self.stats.events_rejected += 1
                self.stats.reject(f"event {result.get('key')}: {result.get('error')}")
        self.queue.ack_events([e.id for e in events])
        self.stats.events_sent += len(events)
        return len(events)

    async def _send_readings(self, readings: list) -> int:
        # The source's verdict travels with the value (uncertain, or bad with a value): the server stores
        # it flagged as the bridge does (plant.ingest.parse.SOURCE_FLAGS: shown, never scored); so does a
        # held value's statement that it carries an earlier reading on (``continues``: no data gap between
        # them for the server's GAP rule, as for the bridge's). A reading without a value (a stale point)
        # has nothing to send.
        rows = []
        for r in readings:
            if r.value is None or r.status == "stale":
                continue
            row = {"sensor": r.sensor, "ts": r.ts, "value": r.value}
            if r.status != "good":
                row["status"] = r.status
            if r.continues is not None:
                row["continues"] = r.continues
            rows.append(row)
        if rows:
            try:
                body = await self._post("/api/v1/readings", {"readings": rows})
            except ForwardError as exc:
                if exc.status == 413 and self.readings_batch > 1:
                    self.readings_batch = max(1, self.readings_batch // 2)  # the server's limit is lower
                    return 0
                if exc.status not in PERMANENT:
                    raise
                body = {"rejected": [{"error": str(exc)}] * len(rows)}
            rejected = body.get("rejected") or []
            if rejected:
                self.stats.readings_rejected += len(rejected)
                self.stats.reject(f"{len(rejected)} readings, e.g. {rejected[0].get('error')}")
        self.queue.ack_readings(readings[-1].id)
        self.stats.readings_sent += len(rows)
        return len(readings)

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=payload)
        except httpx.HTTPError as exc:
            raise ForwardError(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            try:
                reason = response.json().get("error", "")
            except ValueError:
                reason = response.text[:200]
            raise ForwardError(f"{path}: HTTP {response.status_code} {reason}", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise ForwardError(f"{path}: the answer is not JSON") from None
