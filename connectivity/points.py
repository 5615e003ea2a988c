"""What every protocol client produces and reports, whatever the protocol.

A `Sample` is one value of one mapped point with its source time and status; a `PointError` is one
message or value that could not become a sample, with the reason (counted and shown per connection,
never raised: the rest of the stream goes on). A client is driven by its caller:

    async def run(points, sink, status) -> None

where ``sink(samples)`` is awaited for each batch and returns only when the batch is safely stored (a
client acknowledges its protocol's delivery, e.g. MQTT QoS 1, only after that), and ``status`` is a
`ConnectionStatus` the client updates. ``run`` returns or raises when the connection is lost; the caller
reconnects with backoff (`backoff_delays`).
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class SampleStatus(enum.Enum):
    """The source's own verdict on a value (OPC UA status codes, Sparkplug stale, Modbus gaps)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"  # kept as a value, flagged
    BAD = "bad"  # the source says the value is not valid: stored flagged (never scored) when it sent one
    STALE = "stale"  # the source went away (MQTT NDEATH/DDEATH, a dropped subscription)


class Sample(NamedTuple):
    """One value of one mapped point. ``point`` is the mapping's key (the Vigil sensor key it feeds).
    Immutable; a NamedTuple rather than a frozen dataclass because the bridge makes one per reading
    (tens of thousands a second) and a tuple is built ~3x faster."""

    point: str
    ts: float  # UTC epoch seconds: the source's timestamp when the protocol carries one, else receipt time
    value: float | None  # None when STALE, or BAD without a value
    status: SampleStatus = SampleStatus.GOOD
    # The time of this point's earlier sample this one carries on unchanged, as the source stated (a value
    # a report-by-exception source read as current since then: `connectivity.hold`): readings missing
    # between the two are no data gap. None: no such statement.
    continues: float | None = None


@dataclass(frozen=True, slots=True)
class PointError:
    """A message or value that could not become a sample, and why (shown on the connection's status)."""

    reason: str
    point: str | None = None  # the mapped point, when known
    source: str | None = None  # the topic / node id / register address it came from
    # The Sparkplug B node ("spBv1.0/<group>/<node>"), or device ("…/<node>/<device>"), whose birth ends
    # this error (a node's rebirth requests unanswered, the data by an alias no birth bound): its birth, or
    # for a device's error also its node's (the device's births follow it), ends it; ConnectionStatus.error
    # records it as BIRTH.
    node: str | None = None


Sink = Callable[[list[Sample]], Awaitable[None]]

# A subscription source (MQTT, OPC UA) stores what it received when its batch is full or when its first
# sample has waited this long (the connection option ``flush_ms``): a lone value is stored within ~0.15 s
# while a burst still makes few, large batches.
FLUSH_MS = 150.0
MAX_FLUSH_MS = 60_000.0


def flush_seconds(options: Mapping[str, Any]) -> float:
    """The ``flush_ms`` option (default FLUSH_MS) in seconds; ValueError when it is not a number in
    (0, MAX_FLUSH_MS]."""
    raw = options.get("flush_ms", FLUSH_MS)
    value = None if isinstance(raw, bool) else finite(raw)
    if value is None or not 0 < value <= MAX_FLUSH_MS:
        raise ValueError(f"option flush_ms must be a number of milliseconds in (0, {MAX_FLUSH_MS:.0f}]")
    return value / 1000.0


# What a later success must be for an error to be over (ConnectionStatus.error's ``resolved_by``).
CONNECT = "connect"
WRITE = "write"
BIRTH = "birth"


@dataclass
class ConnectionStatus:
    """Live status of one connection, updated by its client and read by the bridge's status reporter.
    ``connects`` counts the times the client reached its server (set ``connected`` True), so that its caller
    can tell a try that never got through (a device not up yet) from a lost connection; ``connected_at`` is
    the (epoch) time of the last of them and ``written_at`` of the last alert state written back: the
    successes that tell an earlier ``last_error`` from a current one (plant.models.ConnectionState)."""

    _connected: bool = field(default=False, repr=False)
    connects: int = 0
    connected_at: float | None = None
    written_at: float | None = None
    last_message_at: float | None = None
    messages: int = 0
    samples: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    # What success would show the last error is over: CONNECT (a failed connection try, over once it
    # connects again), WRITE (a write-back failed or refused, over after a clean write-back), BIRTH (a
    # Sparkplug B node's error, PointError.node: over once that node is born), "" (a point's error: no
    # later success of the connection says anything about it).
    last_error_resolved_by: str = ""
    # When the success that ends the last error came, for a BIRTH error (``born``); None while current.
    # (A CONNECT or WRITE error is over from ``connected_at`` / ``written_at``, when after it.)
    last_error_resolved_at: float | None = None
    _last_error_node: str | None = field(default=None, repr=False)
    recent_errors: list[PointError] = field(default_factory=list)

    MAX_RECENT = 20

    @property
    def connected(self) -> bool:
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value and not self._connected:
            self.connects += 1
            self.connected_at = time.time()
        self._connected = value

    def error(self, err: PointError, at: float, *, resolved_by: str = "") -> None:
        """Count an error; ``resolved_by``: CONNECT, WRITE or "" (see ``last_error_resolved_by``); an
        error naming its Sparkplug B node (``PointError.node``) is BIRTH."""
        self.errors += 1
        self.last_error = err.reason if err.source is None else f"{err.source}: {err.reason}"
        self.last_error_at = at
        self.last_error_resolved_by = BIRTH if err.node is not None else resolved_by
        self.last_error_resolved_at = None
        self._last_error_node = err.node
        self.recent_errors.append(err)
        del self.recent_errors[: -self.MAX_RECENT]

    def born(self, node: str, at: float) -> None:
        """Sparkplug B ``node`` (or device, ``PointError.node``) was born at ``at``: the last error, if that
        birth ends it, is over — the error's own node's or device's, or a device's error's node's. A birth
        at the error's own moment is the message that caused it (a birth certificate with a metric by an
        alias and no name): it ends nothing, and the node's next birth still can."""
        erred = self._last_error_node
        if (
            erred is not None
            and (node == erred or erred.startswith(node + "/"))
            and self.last_error_resolved_at is None
            and self.last_error_at is not None
            and at > self.last_error_at
        ):
            self.last_error_resolved_at = at


# The longest wait between reconnection tries. A PLC, OPC UA server or broker sends nothing while the
# client waits, so a device that is back is read again only at the next try: up to this many seconds of its
# readings are lost after every outage (flagged as a gap). A try every 10 s costs a down device one TCP
# connect; the 60 s this was cost up to a minute of data after each PLC restart (measured: Modbus read again
# 12 s after its device was back, on the 4th try of a run).
RECONNECT_CAP_S = 10.0


def backoff_delays(first: float = 1.0, cap: float = RECONNECT_CAP_S, jitter: float = 0.2) -> Iterator[float]:
    """Reconnect delays: doubling from ``first`` up to ``cap`` seconds, each ±``jitter`` so that many
    connections to one server do not reconnect in step. Endless; the caller resets it after a success."""
    delay = first
    while True:
        yield delay * (1.0 + random.uniform(-jitter, jitter))
        delay = min(cap, delay * 2.0)


def failed_try(exc: BaseException, reached: bool) -> str:
    """One line on a client's try that ended with ``exc``: "not reachable: ..." when it never reached its
    server (``reached``: the status's ``connects`` went up during the try; a PLC still booting after a power
    cut, a broker not up yet), else "connection lost: ...". The bridge's status and log and the edge agent's
    log say it alike, one line per try."""
    return f"{'connection lost' if reached else 'not reachable'}: {type(exc).__name__}: {exc}"


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite number (bools are not numbers here), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number_field(fields: Mapping[str, str], name: str, default: float) -> float:
    """The finite number in address field ``name`` of a mapping row (``default`` when empty); ValueError
    naming the field otherwise."""
    raw = (fields.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} {raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {raw[:40]}")
    return value


async def run_until_stopped(stop: asyncio.Event, tasks: Iterable[asyncio.Task]) -> None:
    """Wait for ``stop``, then cancel ``tasks`` and wait for them to end (the edge agent's sources and
    forwarder): what a SIGTERM means to a long-running protocol process."""
    running = list(tasks)
    try:
        await stop.wait()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
