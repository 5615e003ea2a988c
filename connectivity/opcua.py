"""OPC UA client: a subscription with one monitored item per mapped node, and alert write-back.

The server's own timestamps and status codes are kept: a sample's time is the value's SourceTimestamp
(else its ServerTimestamp, else the time it was received), Good values are GOOD, Uncertain values are
kept but flagged UNCERTAIN, and Bad values become a BAD sample carrying the value the server sent with
the status, if any (the bridge stores it flagged, so it is shown but never scored). After every (re)connect
the current value of every node is read once (a catch-up read), so a reconnect leaves no silent gap: the
outage shows as a gap ending at a fresh value; the read counts as the subscription's first answer and
states each value current since its source time, so a value steady since before the connection is held on
from its read with no gap between them (connectivity.hold, ``continues``). A lost connection makes `run` raise `ConnectionError`;
the caller reconnects with backoff (`connectivity.points.backoff_delays`).

Sample-and-hold. A data-change subscription reports changes only: a value that stays the same (a frozen
transmitter) sends nothing, and without more the reader would see a silent point, a gap, where the plant
has a stuck sensor. So, as OPC UA clients do, the last value of each monitored item is held and emitted
again at the item's sampling interval (connectivity.hold.SampleHold, shared with Sparkplug B; same value
and status; times on the grid of its last value: source time + k x interval), but only for times the server has vouched for. A publish response (data or
keep-alive, asked for at least every KEEPALIVE_S) received at t says the server had queued no change
sampled before t - interval: held samples are emitted up to then, and when a change comes, up to the new
value's time. Answers count only while they come without a missed keep-alive (at most CHAIN_KEEPALIVES
keep-alive periods apart): when keep-alives stop or the session drops nothing more is held, and the time
until answers resume (or until the reconnect: holding starts afresh with each connection) is never filled
in afterwards, so an outage stays a gap and no held value is made up for it. A subscription silent for
STALE_KEEPALIVES keep-alive periods ends `run` (the caller reconnects). A point whose last word carries no
value (Bad without a value, not a number) is not held. Held times are in the source's clock, bounded by
the client's and kept behind it by the lag of the point's last change (how long after its source time a
change arrived), so a held time is never one a real value can still come with; a point that has not
changed since the connect has no lag known, so OPC UA's synchronised clocks are assumed for it. The
bridge stores held samples like any other, so the ingest's stuck rule (detection.quality, STUCK) flags a
frozen value, and the edge agent gets them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.uaerrors import UaStringParsingError

from connectivity.hold import DEFAULT_SAMPLING_MS, SampleHold, parse_sampling_interval
from connectivity.points import (
    FLUSH_MS,
    ConnectionStatus,
    PointError,
    Sample,
    SampleStatus,
    Sink,
    finite,
)
from connectivity.writeback import AlertState

MAX_QUEUE = 100  # samples a server keeps per monitored item between two publishes
DRAIN_S = 5.0  # how long a stopping client may take to store what it received
# The server answers a publish request at least this often when nothing changed (a keep-alive): the
# longest a held value waits before it is emitted, and the pace at which a dead subscription is noticed.
KEEPALIVE_S = 1.0
STALE_KEEPALIVES = 5  # keep-alive periods without any publish response: the subscription is dead
CHAIN_KEEPALIVES = 3  # answers further apart than this many keep-alive periods: a keep-alive was missed
LIFETIME_COUNT = 10_000  # publishing intervals without a publish request before the server drops it
MAX_NOTIFICATIONS = 10_000  # per publish response
SECURITY_POLICIES = (
    "Basic128Rsa15",
    "Basic256",
    "Basic256Sha256",
    "Aes128Sha256RsaOaep",
    "Aes256Sha256RsaPss",
)
SECURITY_MODES = ("Sign", "SignAndEncrypt")


@dataclass(frozen=True, slots=True)
class OpcUaPoint:
    """One mapped node: ``point`` is the Vigil sensor key its samples feed."""

    point: str
    node_id: str
    sampling_interval_ms: float = DEFAULT_SAMPLING_MS


@dataclass(frozen=True)
class OpcUaConfig:
    """One OPC UA connection. Security is off unless ``security_policy`` is given (then the client
    certificate and key are required; the server certificate is fetched from its endpoint if absent)."""

    endpoint: str
    username: str | None = None
    password: str | None = None
    security_policy: str | None = None
    security_mode: str = "SignAndEncrypt"
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None
    publishing_interval_ms: float = 500.0
    batch_size: int = 1000  # samples handed to the sink at once at most
    batch_seconds: float = FLUSH_MS / 1000.0  # a sample waits at most this long for its batch
    max_pending: int = (
        100_000  # samples held while the sink is slow; beyond it, new ones are dropped and counted
    )
    timeout_s: float = 4.0
    watchdog_s: float = 1.0  # how often the client probes the server: the bound on noticing a dead link

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"OPC UA endpoint must start with opc.tcp://, got {self.endpoint!r}")
        if self.password and not self.username:
            raise ValueError("OPC UA: a password needs a username")
        if self.security_policy is not None:
            if self.security_policy not in SECURITY_POLICIES:
                raise ValueError(
                    f"OPC UA: unknown security policy {self.security_policy!r}; "
                    f"known: {', '.join(SECURITY_POLICIES)}"
                )
            if self.security_mode not in SECURITY_MODES:
                raise ValueError(f"OPC UA: security mode must be one of {', '.join(SECURITY_MODES)}")
            if not (self.certificate and self.private_key):
                raise ValueError("OPC UA: a security policy needs the client certificate and private key")
        for name in ("publishing_interval_ms", "batch_seconds", "timeout_s", "watchdog_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"OPC UA: {name} must be a positive number, got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"OPC UA: batch_size must be at least 1, got {self.batch_size}")
        if self.max_pending < self.batch_size:
            raise ValueError(f"OPC UA: max_pending must be at least batch_size ({self.batch_size})")


def parse_node_id(text: str) -> ua.NodeId:
    """The node id in OPC UA's string syntax (``ns=2;s=P-101.vibration``, ``i=2258``, ``ns=3;g=<guid>``,
    ``ns=1;b=<base64>``), or ValueError saying what is wrong with it."""
    text = text.strip()
    if not text:
        raise ValueError("node id is empty")
    if text.startswith("nsu="):
        raise ValueError(f"node id {text!r}: give the namespace index (ns=N;...), not its URI")
    try:
        node_id = ua.NodeId.from_string(text)
    except (UaStringParsingError, ValueError) as exc:
        raise ValueError(
            f"node id {text!r} is not OPC UA node id syntax (e.g. ns=2;s=P-101.vibration or i=2258)"
        ) from exc
    if not 0 <= node_id.NamespaceIndex <= 0xFFFF:
        raise ValueError(f"node id {text!r}: namespace index must be 0-65535")
    if node_id.NodeIdType in (ua.NodeIdType.Numeric, ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte):
        if not 0 <= int(node_id.Identifier) <= 0xFFFFFFFF:
            raise ValueError(f"node id {text!r}: numeric identifier must be 0-4294967295")
    elif node_id.Identifier in ("", b"", None):
        raise ValueError(f"node id {text!r} has an empty identifier")
    return node_id


def parse_point(fields: Mapping[str, str]) -> OpcUaPoint:
    """An `OpcUaPoint` from a mapping row: ``point`` (the Vigil sensor key), ``node_id`` and optional
    ``sampling_interval_ms`` (default 1000; the bridge fills in the sensor's sample period). Raises ValueError naming the field and the problem."""
    point = (fields.get("point") or "").strip()
    if not point:
        raise ValueError("point (the Vigil sensor key) is required")
    raw_node = fields.get("node_id") or ""
    parse_node_id(raw_node)
    interval = parse_sampling_interval(fields)
    return OpcUaPoint(point=point, node_id=raw_node.strip(), sampling_interval_ms=interval)


def _epoch(stamp: datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:  # OPC UA DateTime is UTC; asyncua may hand it over naive
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def to_sample(point: OpcUaPoint, value: ua.DataValue, received: float) -> Sample | PointError:
    """One DataValue as a Sample (server time and status kept), or a PointError for a non-number."""
    ts = _epoch(value.SourceTimestamp) or _epoch(value.ServerTimestamp) or received
    code = value.StatusCode if value.StatusCode is not None else ua.StatusCode(ua.StatusCodes.Good)
    variant = value.Value
    raw = variant.Value if variant is not None else None
    if variant is not None and variant.VariantType == ua.VariantType.Boolean and isinstance(raw, bool):
        number: float | None = float(raw)  # a typed digital value (running, tripped) is 0/1
    else:
        number = finite(raw)
    if code.is_bad():
        # The value the server sent with its Bad status (often its last raw value), or None: kept as the
        # server's, flagged, never replaced by an invented one.
        return Sample(point.point, ts, number, SampleStatus.BAD)
    if number is None:
        return PointError(f"not a finite number: {raw!r}", point=point.point, source=point.node_id)
    status = SampleStatus.UNCERTAIN if code.is_uncertain() else SampleStatus.GOOD
    return Sample(point.point, ts, number, status)


class SampleBatcher:
    """Collects samples and hands them to the sink in batches of at most ``size``, none waiting longer
    than ``seconds``. Repeats of the last sample of a point (same time, value and status: the catch-up
    read and a monitored item's first notification report the same value) are dropped. While the sink is
    slow, at most ``max_pending`` samples wait; newer ones are dropped, each counted as an error of its
    point (the memory stays bounded and the loss is visible on the status, never silent)."""

    def __init__(
        self, sink: Sink, status: ConnectionStatus, size: int, seconds: float, max_pending: int = 100_000
    ) -> None:
        self.sink, self.status, self.size, self.seconds = sink, status, size, seconds
        self.max_pending = max_pending
        self._pending: list[Sample] = []
        self._last: dict[str, Sample] = {}
        self._wake = asyncio.Event()

    def add(self, item: Sample | PointError, now: float) -> None:
        """One value the server sent (a notification or a read), or the error it became."""
        self.status.messages += 1
        self.status.last_message_at = now
        if isinstance(item, PointError):
            self.status.error(item, now)
            return
        if self._last.get(item.point) == item:
            return
        self.put(item, now)

    def put(self, item: Sample, now: float) -> None:
        """Queue one sample for the sink (a held one comes here directly: it is no message)."""
        if len(self._pending) >= self.max_pending:
            self.status.error(PointError("dropped: the sink is not keeping up", point=item.point), now)
            return
        self._last[item.point] = item
        self._pending.append(item)
        if len(self._pending) >= self.size:
            self._wake.set()

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.size]
            await self.sink(batch)  # a batch leaves the buffer only once the sink has stored it
            del self._pending[: len(batch)]
            self.status.samples += len(batch)

    async def run(self) -> None:
        """Flush forever: as soon as a batch is full, else every ``seconds``. Raises what the sink raises."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.seconds)
            self._wake.clear()
            await self.flush()


class _Subscription(Subscription):
    """asyncua's subscription, noting what the server vouched for: ``answered_at`` is when it last
    answered a publish request (data or keep-alive; monotonic seconds), ``since`` when its current run of
    answers began, each at most CHAIN_KEEPALIVES keep-alive periods after the one before. A status change
    alone (the server's, or the one asyncua makes up when the connection is lost) vouches for nothing."""

    keepalive_s = KEEPALIVE_S  # the server's, once it has granted one
    answered_at: float | None = None
    since: float | None = None

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        data = publish_result.NotificationMessage.NotificationData
        vouches = not data or not all(isinstance(n, ua.StatusChangeNotification) for n in data)
        now = time.monotonic()
        # Schedules the handler's calls (as tasks), so they are queued before the answer is noted.
        await super().publish_callback(publish_result)
        if vouches:
            self.answered(now)

    def answered(self, now: float) -> None:
        """The server answered at ``now`` (monotonic): a publish response, or the catch-up read, which
        states every item's current value and so vouches for the session as a keep-alive would."""
        if self.answered_at is None or now - self.answered_at > CHAIN_KEEPALIVES * self.keepalive_s:
            self.since = now
        self.answered_at = max(now, self.answered_at or now)


class _Handler:
    """asyncua subscription callbacks: each notification becomes a sample (or an error) in the batcher,
    and the value held for its point."""

    def __init__(
        self, batcher: SampleBatcher, points: dict[ua.NodeId, list[OpcUaPoint]], hold: SampleHold
    ) -> None:
        self.batcher = batcher
        self.points = points  # by node id: several Vigil points may read one node
        self.hold = hold
        self.subscription: _Subscription | None = None

    def take(self, point: OpcUaPoint, value: ua.DataValue, now: float, read: bool = False) -> None:
        """One value of ``point`` received at ``now``; ``read``: the catch-up read's, which the server
        states is the node's current value (held on from its own time, `connectivity.hold`)."""
        item = to_sample(point, value, now)
        since = self.subscription.since if self.subscription is not None else None
        # The value held until this one goes first: the point's samples stay in time order.
        self.hold.track(
            point.point,
            point.sampling_interval_ms / 1000.0,
            item,
            None if since is None else since + now - time.monotonic(),
            stated_at=now if read else None,
        )
        self.batcher.add(item, now)

    def datachange_notification(self, node: Node, val: object, data: DataChangeNotif) -> None:
        now = time.time()
        value = data.monitored_item.Value
        for point in self.points.get(node.nodeid, ()):
            self.take(point, value, now)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self.batcher.status.error(PointError(f"subscription status {status.Status.name}"), time.time())


async def _client(cfg: OpcUaConfig) -> Client:
    client = Client(cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.watchdog_s)
    if cfg.username:
        client.set_user(cfg.username)
    if cfg.password:
        client.set_password(cfg.password)
    if cfg.security_policy:
        parts = [cfg.security_policy, cfg.security_mode, cfg.certificate, cfg.private_key]
        if cfg.server_certificate:
            parts.append(cfg.server_certificate)
        await client.set_security_string(",".join(p for p in parts if p))
    return client


async def _subscribe(
    client: Client,
    sub: Subscription,
    points: Sequence[OpcUaPoint],
    status: ConnectionStatus,
    publishing_ms: float,
) -> dict[ua.NodeId, list[OpcUaPoint]]:
    """One monitored item per node at its sampling interval; unknown nodes are reported, the rest run."""
    by_node: dict[ua.NodeId, list[OpcUaPoint]] = {}
    for point in points:
        by_node.setdefault(parse_node_id(point.node_id), []).append(point)
    by_interval: dict[float, list[ua.NodeId]] = {}
    for node_id, mapped in by_node.items():
        by_interval.setdefault(min(p.sampling_interval_ms for p in mapped), []).append(node_id)
    live: dict[ua.NodeId, list[OpcUaPoint]] = {}
    for interval, node_ids in by_interval.items():
        nodes = [client.get_node(node_id) for node_id in node_ids]
        # The server queues every sample taken between two publishes, not only the last one.
        queue = min(MAX_QUEUE, max(1, math.ceil(publishing_ms / interval)) + 1)
        results = await sub.subscribe_data_change(nodes, queuesize=queue, sampling_interval=interval)
        for node_id, result in zip(node_ids, results, strict=True):
            if isinstance(result, ua.StatusCode):
                for point in by_node[node_id]:
                    status.error(
                        PointError(f"not subscribed: {result.name}", point.point, point.node_id), time.time()
                    )
            else:
                live[node_id] = by_node[node_id]
    return live


async def _catch_up(client: Client, live: dict[ua.NodeId, list[OpcUaPoint]], handler: _Handler) -> None:
    """Read every subscribed node's current value once, so that (re)connecting leaves no silent gap."""
    if not live:
        return
    values = await client.read_attributes([client.get_node(n) for n in live], ua.AttributeIds.Value)
    now = time.time()
    if handler.subscription is not None:
        handler.subscription.answered(time.monotonic())
    for group, value in zip(live.values(), values, strict=True):
        for point in group:
            handler.take(point, value, now, read=True)


async def _create_subscription(client: Client, cfg: OpcUaConfig, handler: _Handler) -> _Subscription:
    """A subscription that answers at least every KEEPALIVE_S when nothing changes (asyncua's own
    keep-alive is 75 % of the session timeout: minutes of silence that say nothing about the link). Made
    here rather than by ``client.create_subscription`` so that its answers are noted (`_Subscription`) and
    so that asyncua's stale-subscription watchdog leaves it alone: a silent one ends `run` instead."""
    keepalive_count = max(1, math.ceil(KEEPALIVE_S * 1000.0 / cfg.publishing_interval_ms))
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=cfg.publishing_interval_ms,
        RequestedLifetimeCount=max(LIFETIME_COUNT, 3 * keepalive_count),
        RequestedMaxKeepAliveCount=keepalive_count,
        MaxNotificationsPerPublish=MAX_NOTIFICATIONS,
        PublishingEnabled=True,
        Priority=0,
    )
    sub = _Subscription(client.uaclient.session, params, handler)
    granted = await sub.init()
    sub.keepalive_s = granted.RevisedPublishingInterval / 1000.0 * max(1, granted.RevisedMaxKeepAliveCount)
    return sub


async def _hold_values(sub: _Subscription, hold: SampleHold, status: ConnectionStatus, poll_s: float) -> None:
    """Confirm the held values at each answer of ``sub`` (data or keep-alive); raise ConnectionError when
    none came for STALE_KEEPALIVES keep-alive periods (the server dropped the subscription or stopped
    answering: nothing more may be held, and a reconnect makes a new one)."""
    stale_s = STALE_KEEPALIVES * sub.keepalive_s + poll_s
    seen: float | None = None
    started = time.monotonic()
    while True:
        await asyncio.sleep(poll_s)
        answered, since = sub.answered_at, sub.since
        if answered is None or since is None or answered == seen:
            if time.monotonic() - (seen or started) > stale_s:
                raise ConnectionError(f"no publish response (data or keep-alive) for {stale_s:.1f} s")
            continue
        seen = answered
        # The answer's notifications were handed to the handler in tasks queued before the answer was
        # noted: yielding once lets them run, so a change is tracked before its time is confirmed.
        await asyncio.sleep(0)
        offset = time.time() - time.monotonic()
        status.last_message_at = max(status.last_message_at or 0.0, answered + offset)
        hold.confirm(answered + offset, since + offset)


async def run(cfg: OpcUaConfig, points: Sequence[OpcUaPoint], sink: Sink, status: ConnectionStatus) -> None:
    """Subscribe to every point's node and feed the sink until the connection is lost (then raise
    ConnectionError, after handing over what was received). Cancelling it disconnects cleanly."""
    client = await _client(cfg)
    lost = asyncio.Event()

    async def on_lost(exc: Exception) -> None:
        lost.set()

    client.connection_lost_callback = on_lost
    batcher = SampleBatcher(sink, status, cfg.batch_size, cfg.batch_seconds, cfg.max_pending)
    hold = SampleHold(batcher.put)
    await client.connect()
    flusher: asyncio.Task[None] | None = None
    holder: asyncio.Task[None] | None = None
    try:
        status.connected = True
        live: dict[ua.NodeId, list[OpcUaPoint]] = {}
        handler = _Handler(batcher, live, hold)
        sub = handler.subscription = await _create_subscription(client, cfg, handler)
        live.update(await _subscribe(client, sub, points, status, cfg.publishing_interval_ms))
        await _catch_up(client, live, handler)
        flusher = asyncio.create_task(batcher.run())
        poll_s = min(0.1, cfg.publishing_interval_ms / 2000.0)
        holder = asyncio.create_task(_hold_values(sub, hold, status, poll_s))
        waiter = asyncio.create_task(lost.wait())
        done, _ = await asyncio.wait({flusher, holder, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if flusher in done:
            flusher.result()  # the sink failed: raise its error
        holder.cancel()
        await batcher.flush()  # hand over what arrived before the loss
        if holder in done:
            holder.result()  # the subscription went silent: raise why
        raise ConnectionError(f"OPC UA connection to {cfg.endpoint} lost")
    except asyncio.CancelledError:
        # Stopping (a changed mapping restarts the connection, or the bridge ends): the server has already
        # handed these samples over, so they are stored before the client goes (within DRAIN_S).
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        with contextlib.suppress(Exception):
            await asyncio.wait_for(batcher.flush(), DRAIN_S)
        raise
    finally:
        status.connected = False
        for task in (holder, flusher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await _disconnect(client)


async def _disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


# -- write-back ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpcUaWriteTarget:
    """The nodes an asset's alert state is written to (each optional): a String for the state text, an
    integer for the severity code (0 none … 4 critical), a Boolean for the alarm."""

    asset_tag: str
    text_node: str | None = None
    severity_node: str | None = None
    alarm_node: str | None = None


def parse_write_target(fields: Mapping[str, str]) -> OpcUaWriteTarget:
    """An `OpcUaWriteTarget` from ``asset_tag`` and at least one of ``text_node``, ``severity_node``,
    ``alarm_node`` (node id syntax). Raises ValueError naming the field."""
    tag = (fields.get("asset_tag") or "").strip()
    if not tag:
        raise ValueError("asset_tag is required")
    nodes: dict[str, str | None] = {}
    for name in ("text_node", "severity_node", "alarm_node"):
        raw = (fields.get(name) or "").strip()
        if raw:
            try:
                parse_node_id(raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        nodes[name] = raw or None
    if not any(nodes.values()):
        raise ValueError(f"{tag}: give at least one of text_node, severity_node, alarm_node")
    return OpcUaWriteTarget(asset_tag=tag, **nodes)


async def write_alert_states(
    cfg: OpcUaConfig, targets: Sequence[OpcUaWriteTarget], states: Sequence[AlertState]
) -> list[PointError]:
    """Write each state to its asset's configured nodes in one Write call; return the nodes the server
    refused (wrong type, not writable, unknown), each with its reason. States of assets without a target
    are skipped. The whole state is written each time, so repeating a call is harmless. Raises OSError /
    ConnectionError / TimeoutError when the server cannot be reached (the caller retries)."""
    by_tag = {target.asset_tag: target for target in targets}
    writes: list[tuple[str, ua.Variant]] = []
    for state in states:
        target = by_tag.get(state.asset_tag)
        if target is None:
            continue
        if target.text_node:
            writes.append((target.text_node, ua.Variant(state.text, ua.VariantType.String)))
        if target.severity_node:
            writes.append((target.severity_node, ua.Variant(state.severity_code, ua.VariantType.Int32)))
        if target.alarm_node:
            writes.append((target.alarm_node, ua.Variant(state.alarm, ua.VariantType.Boolean)))
    if not writes:
        return []
    client = await _client(cfg)
    await client.connect()
    try:
        params = ua.WriteParameters()
        for node_id, variant in writes:
            item = ua.WriteValue()
            item.NodeId = parse_node_id(node_id)
            item.AttributeId = ua.AttributeIds.Value
            item.Value = ua.DataValue(variant)  # no timestamps: servers may refuse client-set ones
            params.NodesToWrite.append(item)
        codes = await client.uaclient.write(params)
    finally:
        await _disconnect(client)
    return [
        PointError(f"write refused: {code.name}", source=node_id)
        for (node_id, _), code in zip(writes, codes, strict=True)
        if not code.is_good()
    ]
