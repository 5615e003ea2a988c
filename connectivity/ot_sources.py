"""OPC UA and Modbus TCP as protocols of the registry (``connectivity.protocols``): what the bridge and the
edge agent call for any protocol — ``parse_point`` of a mapping row (the sensor key is the row's own
column, so it is not asked for here), ``parse_options``, ``parse_endpoint``, ``run`` with the shared
``ConnectionConfig`` and ``write_back`` of alert states — translated to the clients' own calls
(``connectivity.opcua``, ``connectivity.modbus``), which stay usable on their own.

Write-back targets are part of the connection's options (``write_targets``: one entry per asset, its
fields those of the client's ``parse_write_target``), since which node or coil shows an asset's alarm is
how the plant's HMI was built, not something Vigil can guess.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

from connectivity import modbus, opcua
from connectivity.points import WRITE, ConnectionStatus, Sink, flush_seconds
from connectivity.protocols import Confirm, ConnectionConfig, Take, split_endpoint
from connectivity.writeback import AlertState

PLACEHOLDER = "-"  # the sensor key a mapping row's point carries until the registry binds it


def _point(client: ModuleType, fields: Mapping[str, str]) -> Any:
    return client.parse_point({**fields, "point": PLACEHOLDER})


def _bind(points: Mapping[str, Any]) -> list[Any]:
    """Each parsed point with its sensor key (the mapping's key) as the point name."""
    return [replace(point, point=key) for key, point in points.items()]


def _targets(client: ModuleType, options: Mapping[str, Any]) -> list[Any]:
    raw = options.get("write_targets", [])
    if not isinstance(raw, list):
        raise ValueError("option write_targets must be a list of objects, one per asset")
    targets = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"write_targets[{i}] must be an object")
        try:
            targets.append(client.parse_write_target({k: str(v) for k, v in item.items()}))
        except ValueError as exc:
            raise ValueError(f"write_targets[{i}]: {exc}") from None
    return targets


def state_of(key: str, payload: Mapping[str, Any]) -> AlertState:
    """The written-back payload (alerts.writeback.asset_state) as the clients' AlertState; ``key`` is
    ``<site>/<asset tag>``."""
    return AlertState(
        asset_tag=str(payload.get("asset") or key.rsplit("/", 1)[-1]),
        state=str(payload.get("state") or "normal"),
        severity=payload.get("severity"),
        category=payload.get("category"),
        category_label=payload.get("category_label"),
        top_sensor=str(payload.get("top_sensor_text") or ""),
        link=str(payload.get("link") or ""),
    )


async def _write_back(
    client: ModuleType, cfg: Any, targets: list[Any], take: Take, confirm: Confirm, status: ConnectionStatus
) -> None:
    while True:
        states = await take()
        errors = await client.write_alert_states(cfg, targets, [state_of(s.key, s.payload) for s in states])
        for error in errors:
            status.error(error, time.time(), resolved_by=WRITE)  # an epoch time, as every other error's
        await confirm([s.id for s in states])


class _Face:
    """The registry's face of one client module: options checked against its names, the client's own
    config from the shared ConnectionConfig (``config``), its points bound to their sensor keys."""

    client: ModuleType
    label: str
    OPTIONS: tuple[str, ...]

    @classmethod
    def parse_point(cls, fields: Mapping[str, str]) -> Any:
        return _point(cls.client, fields)

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict:
        unknown = set(options) - set(cls.OPTIONS)
        if unknown:
            raise ValueError(f"unknown {cls.label} option(s): {', '.join(sorted(unknown))}")
        if "flush_ms" in cls.OPTIONS:
            flush_seconds(options)
        _targets(cls.client, options)
        return dict(options)

    @classmethod
    def config(cls, config: ConnectionConfig) -> Any:
        raise NotImplementedError

    @classmethod
    async def run(
        cls, config: ConnectionConfig, points: Mapping[str, Any], sink: Sink, status: ConnectionStatus
    ) -> None:
        await cls.client.run(cls.config(config), _bind(points), sink, status)

    @classmethod
    async def write_back(
        cls, config: ConnectionConfig, take: Take, confirm: Confirm, status: ConnectionStatus
    ) -> None:
        targets = _targets(cls.client, config.options)
        await _write_back(cls.client, cls.config(config), targets, take, confirm, status)


class _OpcUa(_Face):
    """The registry's face of connectivity.opcua."""

    client, label = opcua, "OPC UA"
    OPTIONS = (
        "security_policy",
        "security_mode",
        "certificate",
        "private_key",
        "server_certificate",
        "publishing_interval_ms",
        "flush_ms",
        "write_targets",
    )

    @staticmethod
    def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
        return split_endpoint(endpoint, {"opc.tcp": 4840})

    @classmethod
    def config(cls, config: ConnectionConfig) -> opcua.OpcUaConfig:
        options = cls.parse_options(config.options)
        extra = {k: v for k, v in options.items() if k not in ("write_targets", "flush_ms")}
        return opcua.OpcUaConfig(
            endpoint=config.endpoint,
            username=config.username,
            password=config.password,
            batch_seconds=flush_seconds(options),
            **extra,
        )


class _Modbus(_Face):
    """The registry's face of connectivity.modbus."""

    client, label = modbus, "Modbus"
    OPTIONS = ("timeout_s", "write_targets")

    @staticmethod
    def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
        return split_endpoint(endpoint, {"modbus": 502, "tcp": 502})

    @classmethod
    def config(cls, config: ConnectionConfig) -> modbus.ModbusConfig:
        _scheme, host, port = cls.parse_endpoint(config.endpoint)
        options = cls.parse_options(config.options)
        return modbus.ModbusConfig(
            host=host, port=port, interval_s=config.interval_s, timeout_s=float(options.get("timeout_s", 1.0))
        )


OPCUA = _OpcUa
MODBUS = _Modbus
