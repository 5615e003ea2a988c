"""The simulator's MQTT devices: some assets publish their readings to a broker instead of the HTTP API.

A JSON device publishes one message per sensor and batch (``{"r": [{"t": epoch s, "v": value}, ...]}``
on ``<prefix>/<site>/<tag>/<role>``); a Sparkplug B device publishes a DBIRTH (metric names and aliases)
and then one DDATA per time step (values by alias), after its node's NBIRTH; the node is born again (NBIRTH,
then every device's DBIRTH) when a host asks it to (NCMD "Node Control/Rebirth", as the bridge does on
connecting and when it meets an alias it cannot name). ``mapping_address`` is the point address the bridge
needs for each of them, so the demo seeds exactly what the simulator publishes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessageInfo

from connectivity import sparkplug_b_pb2
from connectivity.mqtt import REBIRTH_METRIC, parse_endpoint, sparkplug_payload
from plant.simulator_client import SendTotals

JSON_PREFIX = "demo"
SPARKPLUG_NODE = "edge-1"
REBIRTH_S = 60.0


def mapping_address(site_slug: str, tag: str, role: str, sparkplug: bool) -> dict[str, str]:
    """The point address of one simulated sensor (the demo's PointMapping.address)."""
    if sparkplug:
        return {
            "format": "sparkplug",
            "group": site_slug,
            "node": SPARKPLUG_NODE,
            "device": tag,
            "metric": role,
        }
    return {
        "topic": f"{JSON_PREFIX}/{site_slug}/{tag}/{role}",
        "items_path": "r",
        "value_path": "v",
        "ts_path": "t",
    }


class MqttDevices:
    """Publishes the readings of the `json_tags` and `sparkplug_tags` assets; `sensors` maps each sensor key
    to its (tag, role)."""

    def __init__(
        self,
        url: str,
        site_slug: str,
        sensors: dict[str, tuple[str, str]],
        json_tags: set[str],
        sparkplug_tags: set[str],
    ) -> None:
        _, host, port = parse_endpoint(url)
        self.site = site_slug
        self.sensors = {key: ts for key, ts in sensors.items() if ts[0] in json_tags | sparkplug_tags}
        self.sparkplug_tags = sparkplug_tags
        self.aliases: dict[str, dict[str, int]] = {}  # tag -> role -> alias, once its DBIRTH is sent
        self.born_at: dict[str, float] = {}
        # The node is born (NBIRTH) before its first device and again when a host asks for a rebirth.
        self.node_born = False
        self.rebirth_asked = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"vigil-simulator-{site_slug}")
        self.client.on_connect = self._subscribe_commands
        self.client.on_message = self._command
        self.client.connect(host, port)
        self.client.loop_start()
        self.seq = 0

    def handles(self, key: str) -> bool:
        return key in self.sensors

    def send(self, keys: list[str], ts: list[float], values: list[float]) -> int:
        """Publish the readings (QoS 1, waiting for the broker's acknowledgements); the count sent."""
        by_sensor: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for key, t, v in zip(keys, ts, values, strict=True):
            if np.isfinite(v):
                by_sensor[key].append((round(t, 3), round(v, 5)))
        pending: list[MQTTMessageInfo] = []
        sparkplug: dict[str, dict[float, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
        for key, rows in by_sensor.items():
            tag, role = self.sensors[key]
            if tag in self.sparkplug_tags:
                for t, v in rows:
                    sparkplug[tag][t].append((role, v))
                continue
            payload = orjson.dumps({"r": [{"t": t, "v": v} for t, v in rows]})
            topic = mapping_address(self.site, tag, role, False)["topic"]
            pending.append(self.client.publish(topic, payload, qos=1))
        if sparkplug and (not self.node_born or self.rebirth_asked.is_set()):
            self.rebirth_asked.clear()
            pending.append(self._node_birth(min(min(steps) for steps in sparkplug.values())))
        for tag, steps in sparkplug.items():
            pending.extend(self._sparkplug(tag, steps))
        for info in pending:
            info.wait_for_publish(timeout=30)
        return sum(len(rows) for rows in by_sensor.values())

    def _node_topic(self, kind: str) -> str:
        return f"spBv1.0/{self.site}/{kind}/{SPARKPLUG_NODE}"

    def _subscribe_commands(self, client: Client, *_: Any) -> None:
        client.subscribe(self._node_topic("NCMD"), qos=0)

    def _command(self, client: Client, userdata: Any, message: Any) -> None:
        """An NCMD to the node: a rebirth request is answered by the next batch (NBIRTH, then DBIRTHs)."""
        try:
            payload = sparkplug_b_pb2.Payload.FromString(message.payload)
        except Exception:  # noqa: BLE001 - a malformed command is ignored, as a node would
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in payload.metrics):
            self.rebirth_asked.set()

    def _node_birth(self, t: float) -> MQTTMessageInfo:
        """The node's NBIRTH (its Node Control/Rebirth metric and bdSeq); every device is born again after it."""
        self.node_born = True
        self.aliases.clear()
        message = sparkplug_b_pb2.Payload.FromString(sparkplug_payload([("bdSeq", None, 0.0)], int(t * 1000)))
        message.metrics.add(name=REBIRTH_METRIC, timestamp=int(t * 1000), datatype=11, boolean_value=False)
        message.seq = 0
        self.seq = 0
        return self.client.publish(self._node_topic("NBIRTH"), message.SerializeToString(), qos=1)

    def _sparkplug(self, tag: str, steps: dict[float, list[tuple[str, float]]]) -> list[MQTTMessageInfo]:
        topic = f"spBv1.0/{self.site}/{{}}/{SPARKPLUG_NODE}/{tag}"
        out = []
        times = sorted(steps)
        # A birth certificate again every REBIRTH_S: a host that (re)subscribed since learns the aliases.
        if time.monotonic() - self.born_at.get(tag, -REBIRTH_S) >= REBIRTH_S:
            self.aliases.pop(tag, None)
        if tag not in self.aliases:
            self.born_at[tag] = time.monotonic()
            # The birth certificate names every metric with its alias and carries the first values.
            first = times.pop(0)
            roles = sorted(role for role, _ in steps[first])
            self.aliases[tag] = {role: i + 1 for i, role in enumerate(roles)}
            birth = [(role, self.aliases[tag][role], v) for role, v in steps[first]]
            out.append(self.client.publish(topic.format("DBIRTH"), self._payload(birth, first), qos=1))
        for t in times:
            metrics = [(None, self.aliases[tag].get(role), v) for role, v in steps[t]]
            out.append(self.client.publish(topic.format("DDATA"), self._payload(metrics, t), qos=1))
        return out

    def _payload(self, metrics: list, t: float) -> bytes:
        self.seq += 1
        return sparkplug_payload(metrics, int(t * 1000), self.seq)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class SplitSender:
    """The simulator's sender when some assets are devices (MQTT, OPC UA, Modbus): the readings a device
    group handles go to it, the rest through the HTTP sender (whose totals and URL it reports)."""

    def __init__(self, http, *devices) -> None:
        self.http = http
        self.devices = devices
        self.max_per_request = http.max_per_request
        self.published = 0

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def totals(self) -> SendTotals:
        return self.http.totals

    def send(self, keys: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        rest = np.ones(len(keys), dtype=bool)
        names = keys.tolist()
        for devices in self.devices:
            mine = rest & np.fromiter((devices.handles(k) for k in names), dtype=bool, count=len(keys))
            if mine.any():
                self.published += devices.send(keys[mine].tolist(), ts[mine].tolist(), values[mine].tolist())
                rest &= ~mine
        if rest.any():
            self.http.send(keys[rest], ts[rest], values[rest])
