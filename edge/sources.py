"""The agent's local sources and its local publication, from the config file's ``[[sources]]`` and
``[publish]`` tables, through the protocol registry (``connectivity.protocols``: MQTT, OPC UA, Modbus):

    [[sources]]
    name = "pump skid"
    protocol = "opcua"                       # mqtt | opcua | modbus
    endpoint = "opc.tcp://10.0.0.5:4840/"
    points = "points-skid.csv"               # the mapping CSV exported from the server's console
    interval_s = 1.0
    username = "vigil"                       # optional; password from password_env
    password_env = "SKID_PASSWORD"
    options = {}                             # the protocol's options, as on the server

    [publish]                                # optional: local alert state for the HMI
    protocol = "mqtt"
    endpoint = "mqtt://127.0.0.1:1883"
    options = { writeback_prefix = "vigil/edge" }

A source runs its client until the connection drops, then reconnects with backoff; its samples go to the
agent's sink (durable queue first, then the local decision). Every configuration mistake is a
``ConfigError`` naming the source and the problem, before anything starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from connectivity import protocols
from connectivity.mapping_csv import MappingFileError, read_mapping_csv
from connectivity.points import ConnectionStatus, backoff_delays, failed_try
from connectivity.protocols import ConnectionConfig, OutgoingState
from edge.config import ConfigError
from edge.decide import AlertEvent

logger = logging.getLogger("edge.sources")


def _connection(table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> ConnectionConfig:
    protocol = table.get("protocol")
    try:
        protocols.module(str(protocol))
        protocols.parse_endpoint(str(protocol), str(table.get("endpoint", "")))
        options = protocols.parse_options(str(protocol), table.get("options") or {})
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    password = None
    if table.get("password_env"):
        password = environ.get(str(table["password_env"]))
        if not password:
            raise ConfigError(f"{where}: the environment variable {table['password_env']} is empty")
    interval = table.get("interval_s", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError(f"{where}.interval_s must be a positive number")
    return ConnectionConfig(
        name=str(table.get("name") or where),
        endpoint=str(table["endpoint"]),
        username=table.get("username"),
        password=password,
        ca_file=table.get("ca_file"),
        cert_file=table.get("cert_file"),
        key_file=table.get("key_file"),
        verify_tls=bool(table.get("verify_tls", True)),
        interval_s=float(interval),
        options=options,
        client_id=f"vigil-edge-{table.get('name') or where}".replace(" ", "-")[:64],
    )


Source = Callable[[Callable[[list], Awaitable[None]]], Awaitable[None]]


def build_sources(
    raw: Mapping[str, Any], base: Path, environ: Mapping[str, str] | None = None
) -> list[Source]:
    """One coroutine factory per ``[[sources]]`` entry (checked now, run by the agent)."""
    environ = dict(os.environ if environ is None else environ)
    tables = raw.get("sources", [])
    if not isinstance(tables, list):
        raise ConfigError("[[sources]] must be a list of tables")
    sources = []
    for i, table in enumerate(tables):
        where = f"sources[{i}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        config = _connection(table, where, environ)
        path = base / str(table.get("points", ""))
        try:
            checked = read_mapping_csv(str(table["protocol"]), path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{where}.points: cannot read {path}: {exc.strerror}") from None
        except MappingFileError as exc:
            raise ConfigError(f"{where}.points: {exc}") from None
        if checked.errors:
            shown = "; ".join(f"line {line}: {reason}" for line, reason in checked.errors[:5])
            raise ConfigError(f"{where}.points ({path.name}): {len(checked.errors)} bad row(s): {shown}")
        points = {key: point for key, (_line, _fields, point) in checked.rows.items()}
        sources.append(_runner(str(table["protocol"]), config, points))
    return sources


def _runner(protocol: str, config: ConnectionConfig, points: Mapping[str, Any]) -> Source:
    client = protocols.module(protocol)

    async def run(sink: Callable[[list], Awaitable[None]]) -> None:
        delays = backoff_delays()
        while True:
            status = ConnectionStatus()
            try:
                await client.run(config, points, sink, status)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost or refused connection: reconnect, never give up
                logger.warning("source %s: %s", config.name, failed_try(exc, status.connects > 0))
            else:
                delays = backoff_delays()
            await asyncio.sleep(next(delays))

    return run


class LocalPublisher:
    """The agent's local alert state (``[publish]``) through the protocol's write-back: each event is the
    asset's new state, written like the server's write-back (MQTT retained topic, OPC UA nodes, Modbus
    coil and register). Runs as a task; ``publish`` never waits on the network."""

    def __init__(self, raw: Mapping[str, Any], site: str, environ: Mapping[str, str] | None = None) -> None:
        table = raw.get("publish")
        if not isinstance(table, Mapping):
            raise ConfigError("[publish] must be a table")
        self.protocol = str(table.get("protocol"))
        self.config = _connection(table, "publish", dict(os.environ if environ is None else environ))
        self.site = site
        self._pending: asyncio.Queue[OutgoingState] = asyncio.Queue()
        self._unconfirmed: dict[int, OutgoingState] = {}
        self._next = 0
        self.published: list[int] = []

    async def publish(self, event: AlertEvent) -> None:
        self._next += 1
        state = "open" if event.kind == "opened" else "normal"
        payload = {
            "site": self.site,
            "asset": event.asset,
            "state": state,
            "severity": LEVELS[min(event.level, len(LEVELS) - 1)] if state == "open" else None,
            "severity_code": (min(event.level, len(LEVELS) - 1) + 1) if state == "open" else 0,
            "at": event.at,
            "source": "edge",
        }
        if state == "open" and event.category:
            # Where to look first, as the server's write-back says it (alerts.writeback.alert_words): the
            # quality gate's category and its words (detection.gate), e.g. "Vibration RMS sensor alert".
            payload["category"] = event.category
            if event.what:
                payload |= {
                    "category_label": event.what,
                    "text": f"{event.asset} {event.what} alert, {payload['severity']}",
                }
        if state == "open" and event.reason:
            # The sensor that opened the alert and the board's sentence about it, said at the edge
            # (connectivity.ot_sources.state_of reads them).
            payload |= {"top_sensor": event.sensor, "top_sensor_text": event.reason}
        self._pending.put_nowait(OutgoingState(self._next, f"{self.site}/{event.asset}", payload))

    async def run(self) -> None:
        client = protocols.module(self.protocol)

        async def take() -> list[OutgoingState]:
            first = await self._pending.get()
            more = [first]
            while not self._pending.empty():
                more.append(self._pending.get_nowait())
            self._unconfirmed.update((state.id, state) for state in more)
            return more

        async def confirm(ids: list[int]) -> None:
            for pk in ids:
                self._unconfirmed.pop(pk, None)
            self.published.extend(ids)

        delays = backoff_delays(first=1.0, cap=30.0)
        while True:
            try:
                await client.write_back(self.config, take, confirm, ConnectionStatus())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("local publication: %s: %s", type(exc).__name__, exc)
            # What was taken but not confirmed is written again after the reconnect, in order.
            for pk in sorted(self._unconfirmed):
                self._pending.put_nowait(self._unconfirmed.pop(pk))
            await asyncio.sleep(next(delays))


# The rule engine's severity levels (detection.rules.severity_level), in the server's words.
LEVELS = ("low", "medium", "high", "critical")
