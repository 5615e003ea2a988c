"""The protocol clients by name, and the connection settings every one of them is handed.

Each protocol is a module of this package exposing

    parse_point(fields: Mapping[str, str]) -> <its point type>       # ValueError naming the bad field
    parse_options(options: Mapping[str, object]) -> dict             # ValueError naming the bad option
    parse_endpoint(endpoint: str) -> object                           # ValueError naming the problem
    async def run(config: ConnectionConfig, points: Mapping[str, <point>], sink, status) -> None
    async def write_back(config, take, confirm, status) -> None      # optional: alert state to the plant

``points`` maps each Vigil sensor key (what a `Sample` names) to its parsed address. ``parse_point`` and
``parse_options`` are what the console's forms and the CSV import of mappings call, so a configuration
that the bridge would refuse is refused when it is typed. Modules are imported on first use: a site with
only MQTT never loads the OPC UA stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

# name -> module; each protocol's helper adds its line.
PROTOCOLS: dict[str, str] = {
    "mqtt": "connectivity.mqtt",
    # The OPC UA and Modbus clients keep their own calls; their registry faces translate (module:attribute).
    "opcua": "connectivity.ot_sources:OPCUA",
    "modbus": "connectivity.ot_sources:MODBUS",
}


@dataclass(frozen=True)
class ConnectionConfig:
    """Where and how to connect; secrets are already decrypted (or read from the environment)."""

    name: str
    endpoint: str
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_tls: bool = True
    interval_s: float = 1.0  # poll interval (OPC UA, Modbus); longest wait before a batch is stored (MQTT)
    options: Mapping[str, Any] = field(default_factory=dict)
    client_id: str = ""  # a stable identity (MQTT persistent sessions are keyed by it)


@dataclass(frozen=True)
class OutgoingState:
    """One asset's alert state to write back: ``key`` names the asset ("<site>/<asset tag>"), ``payload``
    is the whole state (plant.WriteBack.payload), so writing it twice does no harm."""

    id: int
    key: str
    payload: Mapping[str, Any]


# take() waits for the next states to write; confirm(ids) records them as written.
Take = Callable[[], Awaitable[list[OutgoingState]]]
Confirm = Callable[[list[int]], Awaitable[None]]


def module(protocol: str) -> ModuleType:
    """The client module of `protocol`; ValueError for a protocol Vigil has no client for."""
    try:
        name = PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(sorted(PROTOCOLS))})") from None
    path, _, attribute = name.partition(":")
    loaded = importlib.import_module(path)
    return getattr(loaded, attribute) if attribute else loaded


def parse_point(protocol: str, fields: Mapping[str, str]) -> Any:
    """The parsed address of one point of `protocol` (ValueError naming what is wrong)."""
    return module(protocol).parse_point(fields)


def parse_options(protocol: str, options: Mapping[str, Any]) -> dict:
    """The protocol options, validated and with defaults filled in (ValueError naming the bad option)."""
    if not isinstance(options, Mapping):
        raise ValueError("options must be a JSON object")
    return module(protocol).parse_options(options)


def parse_endpoint(protocol: str, endpoint: str) -> Any:
    """The endpoint as the protocol's client reads it (ValueError naming the problem)."""
    return module(protocol).parse_endpoint(endpoint)


def split_endpoint(endpoint: str, schemes: Mapping[str, int]) -> tuple[str, str, int]:
    """``scheme://host:port`` as (scheme, host, port); `schemes` maps each accepted scheme to its default
    port. ValueError naming the problem otherwise."""
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint[:80]!r} is not a URL: {exc}") from None
    if parts.scheme not in schemes:
        raise ValueError(
            f"endpoint must start with {' or '.join(f'{s}://' for s in schemes)} (got {endpoint[:80]!r})"
        )
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint[:80]!r} names no host")
    return parts.scheme, parts.hostname, port or schemes[parts.scheme]
