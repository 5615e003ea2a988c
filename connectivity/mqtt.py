"""MQTT client: JSON and Sparkplug B payloads from subscribed topics to samples, acknowledged once stored.

Points are matched by topic filter (``+`` and ``#`` wildcards). A JSON point reads its value (and
optionally its timestamp) at a dotted path of the payload; with ``items_path`` the payload holds a list of
readings and each item gives one sample. A Sparkplug B point names a group, an edge node, an optional
device and a metric: birth certificates (NBIRTH/DBIRTH) bind metric aliases to names, data messages
(NDATA/DDATA) carry values by name or alias, and death certificates (NDEATH/DDEATH) turn every point of
that node or device into a STALE sample.

Sparkplug B sample-and-hold. An edge node publishes a metric only when it changes (report by exception):
a frozen metric sends nothing, while its last value stays valid as long as the node is online. So, with
the OPC UA client's `connectivity.hold.SampleHold`, the last value of each mapped metric is emitted again
at the point's ``sampling_interval_ms`` (the bridge and the mapping export give a point without one its
sensor's sample period, ``connectivity.hold.with_sample_period``; else 1000) while the node is known alive: from the receipt of
its NBIRTH (a device's: of its DBIRTH, while its node is alive) until its NDEATH (the node's MQTT will,
which the broker publishes when the node's connection drops), the device's DDEATH, a new birth (held
afresh from its values) or the end of this connection (`run` raises; a new connection holds a node
from its next birth, which it asks for). Held samples are confirmed up to now every HOLD_TICK_S; none is made up for a time
after a death or without the connection. A node's death is known only once the broker publishes its
will: at once when its connection closes, after 1.5x its keep-alive when the link silently dies.
Nodes born before a connection are asked to be born again as soon as it has subscribed (a rebirth
request to every mapped node), so their values are named and held from then on. A node that does not
answer (offline, or not serving "Node Control/Rebirth") is asked again on a schedule (after
REBIRTH_EVERY_S, doubling up to REBIRTH_RETRY_MAX_S, until its next birth; data by an unknown alias asks on
the same schedule), and each unanswered request is an error on the connection's status naming the node and
what it costs (only the node's NBIRTH answers it; a device's DBIRTH ends the error of that device's data by
alias, not the asking): its data by alias cannot be named (dropped, counted) and its values are not held (a frozen
metric reads as no data); its data by metric name is stored as it comes. An NDEATH whose
``bdSeq`` differs from the node's last NBIRTH's is the late will of an earlier session (the node has
reconnected since) and is left alone (``Router._death_of_this_birth``).

Nothing acknowledged is lost: the session is persistent (a fixed client id, clean_session off) and the
QoS 1 messages are acknowledged by hand, only after the sink has returned for the batch that holds them.
While the sink waits (the database is down) nothing is acknowledged, so the broker stops sending once its
in-flight window is full and keeps the rest queued for this session: that is the back-pressure. A message
that cannot be read is a `PointError` on the status and is acknowledged with its batch (it would never
read better), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import aiomqtt
import orjson
from google.protobuf.message import DecodeError
from paho.mqtt.client import topic_matches_sub

from connectivity import sparkplug_b_pb2
from connectivity.hold import DEFAULT_SAMPLING_MS, SampleHold, parse_sampling_interval
from connectivity.points import (
    FLUSH_MS,
    ConnectionStatus,
    PointError,
    Sample,
    SampleStatus,
    Sink,
    finite,
    flush_seconds,
)
from connectivity.protocols import ConnectionConfig, Confirm, Take, split_endpoint

FORMATS = ("json", "sparkplug")
SPARKPLUG_NAMESPACE = "spBv1.0"
TS_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_MAX_TOPIC = 65535  # bytes, the protocol's limit
DRAIN_S = 5.0  # how long a stopping client may take to store and acknowledge what it received
REBIRTH_EVERY_S = 5.0  # a rebirth request not answered this long is sent again, then at doubling delays
REBIRTH_RETRY_MAX_S = 60.0  # up to this: a node that never answers is asked once a minute
REBIRTH_METRIC = "Node Control/Rebirth"
HOLD_TICK_S = 0.1  # how often the values of live Sparkplug B nodes are held (emitted again)


# --- points and options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttPoint:
    """Where one point's values are found: a JSON path under a topic filter, or a Sparkplug B metric."""

    format: str = "json"
    topic: str = ""  # JSON: a topic filter
    value_path: str = "value"
    ts_path: str = ""  # empty: the time the message was received
    ts_unit: str = "s"  # for numeric timestamps; strings are ISO 8601 with an offset
    items_path: str = ""  # a list of readings in the payload, one sample per item
    group: str = ""  # Sparkplug B
    node: str = ""
    device: str = ""
    metric: str = ""
    sampling_interval_ms: float = DEFAULT_SAMPLING_MS  # Sparkplug B: a value that did not change is held so

    def subscription(self) -> str:
        if self.format == "sparkplug":
            # Node messages (NBIRTH/NDATA/NDEATH) and the device's, in one filter per node.
            return f"{SPARKPLUG_NAMESPACE}/{self.group}/+/{self.node}/#"
        return self.topic

    def address(self) -> str:
        """The point's source address in words, for errors and the mappings list."""
        if self.format == "sparkplug":
            return "/".join(p for p in (self.group, self.node, self.device) if p) + f":{self.metric}"
        return f"{self.topic} {self.items_path + '[].' if self.items_path else ''}{self.value_path}"


def _path(name: str, text: str, required: bool) -> str:
    text = (text or "").strip()
    if not text:
        if required:
            raise ValueError(f"{name} is required")
        return ""
    if any(not part for part in text.split(".")) or len(text) > 200:
        raise ValueError(f"{name} {text[:40]!r} is not a dotted path such as data.value or items.0.v")
    return text


def _topic_filter(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValueError("topic is required")
    if len(text.encode()) > _MAX_TOPIC or "\x00" in text:
        raise ValueError("topic is too long or holds a NUL character")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic {text[:80]!r}: # must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"topic {text[:80]!r}: + must be a whole level")
    return text


def _sparkplug_id(name: str, text: str, required: bool) -> str:
    text = (text or "").strip()
    if required and not text:
        raise ValueError(f"{name} is required for a Sparkplug B point")
    if any(c in text for c in "/+#"):
        raise ValueError(f"{name} {text[:40]!r} may not hold /, + or #")
    return text


def parse_point(fields: Mapping[str, str]) -> MqttPoint:
    """One MQTT point from its address fields (a CSV row, the console form); ValueError naming the
    problem. Fields: format (json | sparkplug); json: topic, value_path, ts_path, ts_unit, items_path;
    sparkplug: group, node, device, metric, sampling_interval_ms (default 1000; the bridge fills in the
    sensor's sample period: the interval at which a metric that did not change is held while its node is
    alive)."""
    fmt = (fields.get("format") or "json").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {fmt[:20]!r})")
    if fmt == "sparkplug":
        return MqttPoint(
            format=fmt,
            group=_sparkplug_id("group", fields.get("group", ""), True),
            node=_sparkplug_id("node", fields.get("node", ""), True),
            device=_sparkplug_id("device", fields.get("device", ""), False),
            metric=(fields.get("metric") or "").strip() or _missing("metric"),
            sampling_interval_ms=parse_sampling_interval(fields),
        )
    unit = (fields.get("ts_unit") or "s").strip()
    if unit not in TS_UNITS:
        raise ValueError(f"ts_unit must be one of {', '.join(TS_UNITS)} (got {unit[:10]!r})")
    return MqttPoint(
        format=fmt,
        topic=_topic_filter(fields.get("topic", "")),
        value_path=_path("value_path", fields.get("value_path") or "value", True),
        ts_path=_path("ts_path", fields.get("ts_path", ""), False),
        ts_unit=unit,
        items_path=_path("items_path", fields.get("items_path", ""), False),
    )


def _missing(name: str) -> str:
    raise ValueError(f"{name} is required for a Sparkplug B point")


OPTION_DEFAULTS: dict[str, Any] = {
    "qos": 1,
    "keepalive_s": 30,
    "batch_max": 5000,
    "max_inflight": 20,
    "flush_ms": FLUSH_MS,
    "writeback_prefix": "vigil",
}


def parse_options(options: Mapping[str, Any]) -> dict:
    """MQTT options: qos (0 or 1; 1 keeps the no-loss promise), keepalive_s (5-3600), batch_max
    (samples stored at once, 1-100000), max_inflight (the broker's in-flight window for this client:
    mosquitto's max_inflight_messages, 20 by default; a batch is stored as soon as that many messages wait
    for their acknowledgement, since the broker sends no more before), flush_ms (the longest a received
    message waits for its batch to be stored, default FLUSH_MS; the connection's interval_s when shorter),
    writeback_prefix (topic prefix of written-back alert states).
    Unknown options are refused, so a typo is not silently ignored."""
    unknown = set(options) - set(OPTION_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown MQTT option(s): {', '.join(sorted(unknown))}")
    parsed = {**OPTION_DEFAULTS, **options}
    bounds = (("qos", 0, 1), ("keepalive_s", 5, 3600), ("batch_max", 1, 100_000), ("max_inflight", 1, 65535))
    for name, low, high in bounds:
        value = parsed[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"option {name} must be a whole number from {low} to {high}")
    flush_seconds(parsed)
    prefix = parsed["writeback_prefix"]
    if not isinstance(prefix, str) or not prefix.strip("/") or any(c in prefix for c in "+#\x00"):
        raise ValueError("option writeback_prefix must be a topic without wildcards, e.g. vigil")
    parsed["writeback_prefix"] = prefix.strip("/")
    return parsed


def parse_endpoint(endpoint: str) -> tuple[bool, str, int]:
    """(TLS?, host, port) of ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""
    scheme, host, port = split_endpoint(endpoint, {"mqtt": 1883, "mqtts": 8883})
    return scheme == "mqtts", host, port


# --- decoding ------------------------------------------------------------------------------------------


def _get(data: Any, path: str | tuple[str, ...]) -> Any:
    """The value at a dotted path (or its parts, split once by the Router) of a JSON document."""
    for part in path.split(".") if isinstance(path, str) else path:
        if isinstance(data, dict):
            data = data.get(part, _MISSING)
        elif isinstance(data, list) and part.lstrip("-").isdecimal() and -len(data) <= int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
        if data is _MISSING:
            return data
    return data


_MISSING = object()


def _timestamp(raw: Any, unit: str) -> float | str:
    """Epoch seconds, or the reason the value is not a timestamp."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return f"unparseable timestamp {raw[:40]!r}"
        if moment.tzinfo is None:
            return f"timestamp {raw[:40]!r} has no UTC offset"
        return moment.timestamp()
    number = finite(raw)
    if number is None:
        return f"timestamp is not a number or an ISO 8601 string: {str(raw)[:40]!r}"
    return number * TS_UNITS[unit]


class Router:
    """Turns one message into samples and errors for the configured points (no I/O, no clock)."""

    def __init__(self, points: Mapping[str, MqttPoint]) -> None:
        # (group, node, device, metric) -> sensor keys; device "" for the node's own metrics
        self.sparkplug_points: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        self.sparkplug_by_device: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.intervals: dict[str, float] = {}  # sensor key -> seconds between held values (Sparkplug B)
        # topic filter -> (sensor key, point, its paths split once): the per-reading path is the hot one
        self.json_points: dict[str, list[tuple[str, MqttPoint, _Paths]]] = defaultdict(list)
        for key, point in points.items():
            if point.format == "sparkplug":
                self.sparkplug_points[(point.group, point.node, point.device, point.metric)].append(key)
                self.sparkplug_by_device[(point.group, point.node, point.device)].append(key)
                self.intervals[key] = point.sampling_interval_ms / 1000.0
            else:
                paths = _Paths(
                    tuple(point.value_path.split(".")),
                    tuple(point.ts_path.split(".")) if point.ts_path else (),
                    TS_UNITS[point.ts_unit],
                )
                self.json_points[point.topic].append((key, point, paths))
        self.exact = {topic for topic in self.json_points if "+" not in topic and "#" not in topic}
        self.wildcards = [topic for topic in self.json_points if topic not in self.exact]
        self.subscriptions = sorted({point.subscription() for point in points.values()})
        # (group, node, device) -> {alias: metric name}, from the last birth certificate
        self.aliases: dict[tuple[str, str, str], dict[int, str]] = {}
        # Nodes to send a rebirth command to (taken by the client), and when each was last asked.
        self.rebirths: list[tuple[str, str]] = []
        self._asked: dict[tuple[str, str], _Asked] = {}
        # The nodes ("spBv1.0/<group>/<node>") whose NBIRTH, and the devices ("…/<node>/<device>") whose
        # DBIRTH, was read since the client last took them: the errors their silence caused are over
        # (ConnectionStatus.born).
        self.births: list[str] = []
        self.unknown_aliases = 0  # metrics received by an alias no birth certificate named
        # (group, node) -> the bdSeq of its last NBIRTH, and the NDEATHs left alone for carrying another one.
        self.birth_seq: dict[tuple[str, str], int] = {}
        self.stale_deaths = 0
        # Sample-and-hold (connectivity.hold) of the metrics of each live node (device ""), or device: since
        # when it is known alive (the receipt of its birth), and its held values. A death, or a birth again,
        # ends it; the bridge's connection with this Router ends it too (a reconnect starts a new one).
        self.alive: dict[tuple[str, str, str], float] = {}
        self.holds: dict[tuple[str, str, str], SampleHold] = {}
        self._held: list[Sample] = []

    def decode(self, topic: str, payload: bytes, received: float) -> tuple[list[Sample], list[PointError]]:
        if topic.startswith(SPARKPLUG_NAMESPACE + "/"):
            return self._sparkplug(topic, payload, received)
        filters = [topic] if topic in self.exact else []
        filters += [f for f in self.wildcards if topic_matches_sub(f, topic)]
        if not filters:
            return [], [PointError("no point is mapped to this topic", source=topic)]
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [], [PointError(f"payload is not JSON ({exc.msg})", source=topic)]
        samples: list[Sample] = []
        errors: list[PointError] = []
        for topic_filter in filters:
            for key, point, paths in self.json_points[topic_filter]:
                items = [data]
                if point.items_path:
                    items = _get(data, point.items_path)
                    if not isinstance(items, list):
                        errors.append(PointError(f"no list at {point.items_path!r}", key, topic))
                        continue
                value_parts, ts_parts, unit = paths
                append = samples.append
                for item in items:
                    # The common case inline (a dict item, a finite float value and timestamp at one-level
                    # paths); anything else takes _json_item, which also says what is wrong.
                    if type(item) is dict and len(value_parts) == 1 and len(ts_parts) < 2:
                        value = item.get(value_parts[0])
                        ts = item.get(ts_parts[0]) if ts_parts else received
                        if (
                            type(value) is float
                            and value - value == 0.0
                            and type(ts) is float
                            and ts - ts == 0.0
                        ):
                            append(Sample(key, ts * unit if ts_parts else ts, value))
                            continue
                    self._json_item(key, point, item, topic, received, samples, errors)
        return samples, errors

    @staticmethod
    def _json_item(
        key: str,
        point: MqttPoint,
        item: Any,
        topic: str,
        received: float,
        samples: list[Sample],
        errors: list[PointError],
    ) -> None:
        raw = _get(item, point.value_path)
        if raw is _MISSING:
            errors.append(PointError(f"no value at {point.value_path!r}", key, topic))
            return
        value = finite(raw)
        if value is None:
            errors.append(PointError(f"value is not a finite number: {str(raw)[:40]!r}", key, topic))
            return
        ts: float | str = received
        if point.ts_path:
            raw_ts = _get(item, point.ts_path)
            ts = (
                f"no timestamp at {point.ts_path!r}"
                if raw_ts is _MISSING
                else _timestamp(raw_ts, point.ts_unit)
            )
        if isinstance(ts, str):
            errors.append(PointError(ts, key, topic))
            return
        samples.append(Sample(key, ts, value))

    def _sparkplug(
        self, topic: str, payload: bytes, received: float
    ) -> tuple[list[Sample], list[PointError]]:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[2] not in _SPARKPLUG_TYPES:
            return [], [PointError("not a Sparkplug B topic", source=topic)]
        _, group, kind, node = parts[:4]
        device = parts[4] if len(parts) == 5 else ""
        if kind in ("STATE", "NCMD", "DCMD"):  # host state and commands to the node (ours too): no data
            return [], []
        try:
            message = sparkplug_b_pb2.Payload.FromString(payload)
        except DecodeError:
            return [], [PointError("payload is not a Sparkplug B protobuf", source=topic)]
        sent = message.timestamp / 1000.0 if message.HasField("timestamp") else received
        if kind == "NDEATH" and not self._death_of_this_birth(group, node, message):
            return [], []
        if kind.endswith("DEATH"):
            return self._death(group, node, device if kind == "DDEATH" else None, sent), []
        if kind == "NBIRTH":
            seq = _bd_seq(message)
            if seq is None:
                self.birth_seq.pop((group, node), None)
            else:
                self.birth_seq[(group, node)] = seq
        where = (group, node, device)
        if kind == "NBIRTH" or (kind == "DBIRTH" and (group, node, "") in self.alive):
            # Known alive from now on, its metrics held afresh from the values of its birth certificate (an
            # NBIRTH also ends its devices' holding: their births follow it).
            self._stop_holding(group, node, None if kind == "NBIRTH" else device)
            self.alive[where] = received
            self.holds[where] = SampleHold(self._hold_put)
        elif kind.endswith("BIRTH"):
            self._stop_holding(group, node, device)  # a device born while its node is not known alive
        if kind.endswith("BIRTH"):
            # A birth certificate restarts the node's (or device's) alias table.
            self.aliases[where] = {m.alias: m.name for m in message.metrics if m.HasField("alias") and m.name}
            if kind == "NBIRTH":
                self._asked.pop((group, node), None)
            # A device's DBIRTH binds its aliases: its data by alias is named again, whether it came after
            # its node's NBIRTH (a rebirth's answer) or alone (the device came back online). It does not
            # answer a rebirth request (Sparkplug B: the node answers with its NBIRTH, then its devices'
            # DBIRTHs), so the node is asked until its NBIRTH, and its own errors wait for that.
            self.births.append(_node_id(group, node, device))
        aliases = self.aliases.get(where, {})
        samples: list[Sample] = []
        errors: list[PointError] = []
        hold, since = self.holds.get(where), self.alive.get(where)
        birth = kind.endswith("BIRTH")
        for metric in message.metrics:
            name = metric.name or (aliases.get(metric.alias) if metric.HasField("alias") else None)
            if not name:
                # The birth was missed (published before the bridge subscribed, or lost): the value cannot
                # be named, so it is counted, and the node is asked to be born again (Sparkplug B's
                # "Node Control/Rebirth" command), on the schedule of its unanswered requests.
                self.unknown_aliases += 1
                self._ask(group, node, received)
                errors.append(
                    PointError(
                        f"metric alias {metric.alias} has no birth certificate (rebirth requested)",
                        source=topic,
                        node=_node_id(group, node, device),
                    )
                )
                continue
            keys = self.sparkplug_points.get((group, node, device, name))
            if not keys:
                continue  # a metric nobody mapped: births carry every metric of the device
            ts = metric.timestamp / 1000.0 if metric.HasField("timestamp") else sent
            items: list[Sample | PointError]
            if metric.is_null:
                items = [Sample(key, ts, None, SampleStatus.BAD) for key in keys]
            else:
                kind_of_value = metric.WhichOneof("value")
                raw = getattr(metric, kind_of_value) if kind_of_value else None
                value = float(raw) if isinstance(raw, bool) else finite(raw)
                items = [
                    Sample(key, ts, value)
                    if value is not None
                    else PointError(
                        f"metric {name!r} has no finite number ({kind_of_value or 'no value'})", key, topic
                    )
                    for key in keys
                ]
            for item in items:
                if hold is not None and item.point is not None:
                    # The value held until this one goes first (in self._held): time order per point.
                    hold.track(item.point, self.intervals[item.point], item, None if birth else since)
                if isinstance(item, Sample):
                    samples.append(item)
                else:
                    errors.append(item)
        return self._take_held() + samples, errors

    def ask_every_node(self, now: float) -> None:
        """Queue a rebirth request to every mapped Sparkplug B node (a new connection: nodes born before it
        are unknown to it, their aliases unbound and their frozen values not held until they are born
        again); each is then awaited and asked again on the schedule of `_ask`."""
        for group, node in sorted({(g, n) for g, n, _, _ in self.sparkplug_points}):
            self._ask(group, node, now)

    def _ask(self, group: str, node: str, now: float) -> bool:
        """Queue a rebirth request to the node unless its last one is still within its time to answer
        (REBIRTH_EVERY_S after the first, doubling up to REBIRTH_RETRY_MAX_S); its birth ends the asking.
        Returns whether one was queued."""
        asked = self._asked.get((group, node))
        if asked is None:
            self._asked[(group, node)] = _Asked(now, now + REBIRTH_EVERY_S)
        elif now < asked.next_at:
            return False
        else:
            asked.count += 1
            asked.next_at = now + min(REBIRTH_EVERY_S * 2.0 ** (asked.count - 1), REBIRTH_RETRY_MAX_S)
        self.rebirths.append((group, node))
        return True

    def next_rebirth_at(self) -> float | None:
        """When the earliest unanswered rebirth request is due to be sent again (epoch seconds), or None."""
        return min((asked.next_at for asked in self._asked.values()), default=None)

    def unanswered(self, now: float) -> list[PointError]:
        """Ask again every node whose rebirth request went unanswered for its time (`_ask`), and say so: one
        error per node, naming it, since when it has been asked and what its silence costs."""
        errors: list[PointError] = []
        for (group, node), asked in sorted(self._asked.items()):
            if now < asked.next_at:
                continue
            first, count = asked.first_at, asked.count
            self._ask(group, node, now)
            metrics = sum(
                len(keys) for (g, n, _), keys in self.sparkplug_by_device.items() if (g, n) == (group, node)
            )
            since = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            requests = f"{count} rebirth request{'s' if count > 1 else ''}"
            held = f"{metrics} mapped metric{'s are' if metrics != 1 else ' is'} not held"
            errors.append(
                PointError(
                    f"no answer to {requests} since {since} (node offline, or no {REBIRTH_METRIC}): its "
                    f"{held} and its data by alias is dropped until it is born; asked again in "
                    f"{asked.next_at - now:.0f} s",
                    source=_node_id(group, node),
                    node=_node_id(group, node),
                )
            )
        return errors

    def _hold_put(self, sample: Sample, now: float) -> None:
        self._held.append(sample)

    def _take_held(self) -> list[Sample]:
        held, self._held = self._held, []
        return held

    @property
    def holding(self) -> bool:
        """Whether any Sparkplug B node or device is known alive (its values are held)."""
        return bool(self.holds)

    def confirm(self, now: float) -> list[Sample]:
        """The held values of every live node and device up to ``now`` (epoch seconds), which the broker
        vouches for while this connection is up and the node sent no death certificate."""
        for where, hold in self.holds.items():
            hold.confirm(now, self.alive[where])
        return self._take_held()

    def _stop_holding(self, group: str, node: str, device: str | None) -> None:
        """No more values are held for the node and its devices (``device`` None) or for the one device."""
        for where in [w for w in self.alive if w[:2] == (group, node) and (device is None or w[2] == device)]:
            del self.alive[where]
            self.holds.pop(where, None)

    def _death_of_this_birth(self, group: str, node: str, message: Any) -> bool:
        """Whether an NDEATH ends the session of the node's last NBIRTH (Sparkplug B's bdSeq rule).

        A node that reconnects (a dropped link, a restart) publishes its NBIRTH on the new session, and the
        broker may publish the OLD session's will, its NDEATH, after it: when the old connection's
        keep-alive runs out, or when the new connection takes over the client id. Taken for a death, that
        late will would turn a live node's points STALE and stop holding its values, which a node
        reporting by exception does not send again until they change: a silent gap. Both certificates
        carry the session's ``bdSeq`` metric, so a death whose bdSeq is not the last birth's is of an
        earlier session and is left alone (counted in ``stale_deaths``). Without a bdSeq on either side
        (a node that does not send it, a birth this connection missed) the death is taken as before.
        """
        born, died = self.birth_seq.get((group, node)), _bd_seq(message)
        if born is None or died is None or born == died:
            return True
        self.stale_deaths += 1
        return False

    def _death(self, group: str, node: str, device: str | None, ts: float) -> list[Sample]:
        """STALE samples for every point of the node (``device`` None) or of the one device, whose values
        are no longer held (the death certificate says they are not valid from now on)."""
        self._stop_holding(group, node, device)
        keys: list[str] = []
        for (g, n, d), device_keys in self.sparkplug_by_device.items():
            if g == group and n == node and (device is None or d == device):
                keys.extend(device_keys)
                self.aliases.pop((g, n, d), None)
        return [Sample(key, ts, None, SampleStatus.STALE) for key in keys]


def _node_id(group: str, node: str, device: str = "") -> str:
    """A Sparkplug B edge node, or one of its devices, as errors name it (``PointError.node``)."""
    return f"{SPARKPLUG_NAMESPACE}/{group}/{node}" + (f"/{device}" if device else "")


@dataclass(slots=True)
class _Asked:
    """A node's unanswered rebirth requests: when the first went, how many, when the next is due."""

    first_at: float
    next_at: float
    count: int = 1


class _Paths(NamedTuple):
    value: tuple[str, ...]
    ts: tuple[str, ...]  # empty: the time of receipt
    unit: float  # seconds per unit of a numeric timestamp


_SPARKPLUG_TYPES = {"NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD", "STATE"}


# --- the client ----------------------------------------------------------------------------------------


def _tls(config: ConnectionConfig) -> aiomqtt.TLSParameters:
    return aiomqtt.TLSParameters(
        ca_certs=config.ca_file or None,
        certfile=config.cert_file or None,
        keyfile=config.key_file or None,
        cert_reqs=ssl.CERT_REQUIRED if config.verify_tls else ssl.CERT_NONE,
    )


def client_for(config: ConnectionConfig, *, persistent: bool) -> aiomqtt.Client:
    """An aiomqtt client for the connection (used by `run` and by write-back publishing)."""
    tls, host, port = parse_endpoint(config.endpoint)
    options = parse_options(config.options)
    return aiomqtt.Client(
        host,
        port,
        identifier=config.client_id or None,
        clean_session=not persistent,
        username=config.username or None,
        password=config.password or None,
        keepalive=options["keepalive_s"],
        tls_params=_tls(config) if tls else None,
        tls_insecure=(not config.verify_tls) if tls else None,
        timeout=10,
    )


async def run(
    config: ConnectionConfig, points: Mapping[str, MqttPoint], sink: Sink, status: ConnectionStatus
) -> None:
    """Subscribe to the points' topics and hand their samples to `sink` in batches until disconnected.

    A batch is stored when it holds ``batch_max`` samples or its first message is ``flush_ms`` old (or
    ``interval_s``, when shorter); its QoS 1 messages are acknowledged after `sink` returns. Raises
    aiomqtt.MqttError on disconnect.
    """
    options = parse_options(config.options)
    router = Router(points)
    client = client_for(config, persistent=True)
    async with client:
        # paho sends PUBACK when told to: after the batch holding the message is stored.
        client._client.manual_ack_set(True)  # noqa: SLF001 (aiomqtt does not expose it)
        status.connected = True
        try:
            for topic in router.subscriptions:
                await client.subscribe(topic, qos=options["qos"])
            # Subscribed: every Sparkplug B node is asked to be born again, so that its values are named and
            # held from now on rather than from its next birth (data by alias before it would be lost).
            router.ask_every_node(time.time())
            await _ask_rebirths(client, router)
            await _consume(
                client,
                router,
                sink,
                status,
                min(config.interval_s, flush_seconds(options)),
                options["batch_max"],
                options["max_inflight"],
            )
        finally:
            status.connected = False


async def _consume(
    client: aiomqtt.Client,
    router: Router,
    sink: Sink,
    status: ConnectionStatus,
    flush_s: float,
    batch_max: int,
    max_inflight: int,
) -> None:
    """Read, decode and batch messages; store each batch while the next one is being read (at most one
    batch in the sink at a time), and acknowledge a batch's messages only once the sink returned for it."""
    messages = client.messages
    queue: asyncio.Queue[aiomqtt.Message] = client._queue  # noqa: SLF001 (what `messages` reads)
    batch: list[Sample] = []
    unacked: list[aiomqtt.Message] = []
    storing: asyncio.Task | None = None  # the previous batch, in the sink
    storing_messages: list[aiomqtt.Message] = []
    storing_count = 0
    first_at = 0.0
    receive: asyncio.Task | None = None

    async def finish_storing() -> None:
        nonlocal storing, storing_messages
        if storing is None:
            return
        await storing  # raises if the sink failed: nothing of that batch is acknowledged
        status.samples += storing_count
        for stored in storing_messages:
            if stored.qos > 0:
                client._client.ack(stored.mid, stored.qos)  # noqa: SLF001 (aiomqtt does not expose it)
        storing, storing_messages = None, []

    def take(message: aiomqtt.Message) -> None:
        nonlocal first_at
        received = time.time()
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = str(payload).encode()
        samples, errors = router.decode(message.topic.value, payload, received)
        status.messages += 1
        status.last_message_at = received
        for error in errors:
            status.error(error, received)
        while router.births:
            status.born(router.births.pop(0), received)
        if not unacked and not batch:
            first_at = time.monotonic()
        batch.extend(samples)
        unacked.append(message)

    def hold() -> None:
        """Add the held values of the live Sparkplug B nodes up to now (they are no messages)."""
        nonlocal first_at
        held = router.confirm(time.time())
        if held and not unacked and not batch:
            first_at = time.monotonic()
        batch.extend(held)

    async def drain() -> None:
        await finish_storing()
        if unacked or batch:
            if batch:
                await sink(batch)
            status.samples += len(batch)
            for message in unacked:
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)  # noqa: SLF001

    try:
        while True:
            if receive is None:
                receive = asyncio.ensure_future(anext(messages))
            waits = unacked or batch
            timeout = max(0.0, first_at + flush_s - time.monotonic()) if waits else None
            if router.holding:  # held values are emitted every HOLD_TICK_S
                timeout = HOLD_TICK_S if timeout is None else min(timeout, HOLD_TICK_S)
            if (due := router.next_rebirth_at()) is not None:  # an unanswered rebirth request
                wait = max(0.0, due - time.time())
                timeout = wait if timeout is None else min(timeout, wait)
            waiting = {receive} if storing is None else {receive, storing}
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if storing is not None and storing.done():
                await finish_storing()
            message = None
            if receive in done:
                message = receive.result()  # raises MqttError when disconnected
                receive = None
                take(message)
                # What is already queued is taken at once (aiomqtt hands out one message per task and wait:
                # a burst of small messages would otherwise cost the event loop more than the decoding).
                while len(messages) and len(batch) < batch_max:
                    message = queue.get_nowait()
                    take(message)
            now = time.time()
            for error in router.unanswered(now):
                status.error(error, now)
            await _ask_rebirths(client, router)
            if router.holding:
                hold()
            if not unacked and not batch:
                continue
            # Store when the batch is full, its first message has waited flush_s, or the broker's window
            # is full of unacknowledged messages and nothing else is queued (it sends no more before acks).
            window_full = len(unacked) + len(storing_messages) >= max_inflight and len(messages) == 0
            due = time.monotonic() - first_at >= flush_s
            if (
                len(batch) >= batch_max
                or window_full
                or due
                or (message is None and not done and not router.holding)
            ):
                await finish_storing()
                storing = asyncio.ensure_future(sink(batch)) if batch else asyncio.ensure_future(_nothing())
                storing_messages, storing_count = unacked, len(batch)
                batch, unacked = [], []
    except asyncio.CancelledError:
        # Stopping (a changed mapping restarts the connection, or the bridge ends): store and acknowledge
        # what was received, within DRAIN_S; whatever stays unacknowledged the broker sends again.
        if receive is not None:
            receive.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(drain(), DRAIN_S)
        raise
    finally:
        for task in (receive, storing):
            if task is not None and not task.done():
                task.cancel()


async def _ask_rebirths(client: aiomqtt.Client, router: Router) -> None:
    """Send the rebirth requests the router queued (Sparkplug B's NCMD "Node Control/Rebirth")."""
    while router.rebirths:
        group, node = router.rebirths.pop(0)
        await client.publish(
            f"{SPARKPLUG_NAMESPACE}/{group}/NCMD/{node}", rebirth_payload(time.time()), qos=0
        )


async def _nothing() -> None:
    return None


async def write_back(
    config: ConnectionConfig, take: Take, confirm: Confirm, status: ConnectionStatus
) -> None:
    """Publish each asset's alert state as a retained QoS 1 message on ``<writeback_prefix>/<key>/alert``
    (any MQTT client subscribing later sees the current state) until disconnected. A state is confirmed
    only after the broker acknowledged it, so an outage delays write-back and never loses it."""
    prefix = parse_options(config.options)["writeback_prefix"]
    publisher = replace(config, client_id=f"{config.client_id}-writeback" if config.client_id else "")
    async with client_for(publisher, persistent=False) as client:
        while True:
            states = await take()
            for state in states:
                await client.publish(
                    f"{prefix}/{state.key}/alert", orjson.dumps(state.payload), qos=1, retain=True
                )
            await confirm([state.id for state in states])


def rebirth_payload(at: float) -> bytes:
    """An NCMD payload asking an edge node to publish its birth certificates again (Sparkplug B 3.0:
    the Boolean metric "Node Control/Rebirth" set to true)."""
    ts_ms = int(at * 1000)
    message = sparkplug_b_pb2.Payload(timestamp=ts_ms)
    message.metrics.add(name=REBIRTH_METRIC, timestamp=ts_ms, datatype=11, boolean_value=True)  # 11: Boolean
    return message.SerializeToString()


def _bd_seq(message: Any) -> int | None:
    """The ``bdSeq`` metric of an NBIRTH or NDEATH (an unsigned integer; any numeric field read), or None."""
    for metric in message.metrics:
        if metric.name == "bdSeq" and not metric.is_null:
            kind_of_value = metric.WhichOneof("value")
            raw = getattr(metric, kind_of_value) if kind_of_value else None
            if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
                return int(raw)
    return None


def sparkplug_payload(
    metrics: Iterable[tuple[str | None, int | None, float | None]], ts_ms: int, seq: int = 0
) -> bytes:
    """A Sparkplug B payload of (name, alias, value) metrics as doubles (None value: is_null); for the
    demo's publisher and the tests."""
    message = sparkplug_b_pb2.Payload(timestamp=ts_ms, seq=seq % 256)
    for name, alias, value in metrics:
        metric = message.metrics.add(timestamp=ts_ms, datatype=10)  # 10: Double
        if name is not None:
            metric.name = name
        if alias is not None:
            metric.alias = alias
        if value is None or (isinstance(value, float) and math.isnan(value)):
            metric.is_null = True
        else:
            metric.double_value = value
    return message.SerializeToString()
