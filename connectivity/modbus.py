"""Modbus TCP client: polls mapped registers and bits at a fixed interval, and writes alert state back.

Modbus carries no timestamps and no quality: a sample's time is the poll's start, and a poll that gets no
answer produces no samples for that period, so the stored series shows a gap (which the ingest quality
rules flag) and the status says why. Contiguous registers of one unit and function are read together, as
few requests as the protocol's limits allow (125 registers, 2000 bits). An exception response (illegal
address, device failure) is an error of the points it covers; the other reads go on. A lost connection
makes `run` raise `ConnectionError`; the caller reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from connectivity.points import ConnectionStatus, PointError, Sample, Sink, finite, number_field
from connectivity.writeback import AlertState

Function = Literal["holding_register", "input_register", "coil", "discrete_input"]
FUNCTIONS: dict[str, Function] = {
    "holding_register": "holding_register",
    "holding": "holding_register",
    "hr": "holding_register",
    "3": "holding_register",
    "input_register": "input_register",
    "input": "input_register",
    "ir": "input_register",
    "4": "input_register",
    "coil": "coil",
    "1": "coil",
    "discrete_input": "discrete_input",
    "discrete": "discrete_input",
    "di": "discrete_input",
    "2": "discrete_input",
}
BIT_FUNCTIONS = frozenset({"coil", "discrete_input"})
DATA_TYPES = ("int16", "uint16", "int32", "uint32", "float32")
_DATATYPE = ModbusClientMixin.DATATYPE
_CONVERT = {
    "int16": _DATATYPE.INT16,
    "uint16": _DATATYPE.UINT16,
    "int32": _DATATYPE.INT32,
    "uint32": _DATATYPE.UINT32,
    "float32": _DATATYPE.FLOAT32,
}
MAX_REGISTERS_PER_READ = 125  # Modbus application protocol v1.1b3, function codes 3 and 4
MAX_BITS_PER_READ = 2000  # function codes 1 and 2


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    """One mapped value: ``point`` is the Vigil sensor key; value = raw * scale + offset."""

    point: str
    unit_id: int
    function: Function
    address: int
    data_type: str = "uint16"  # "bool" for coils and discrete inputs
    word_order: Literal["big", "little"] = "big"  # which register holds the high word of a 32-bit value
    byte_order: Literal["big", "little"] = "big"  # byte order inside each register
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        """Registers (or bits) this point spans."""
        return 1 if self.data_type in ("bool", "int16", "uint16") else 2

    @property
    def source(self) -> str:
        return f"unit {self.unit_id} {self.function} {self.address}"

    def decode(self, words: Sequence[int]) -> float:
        """The scaled value of this point's registers (``width`` of them, as read from the device)."""
        if self.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        raw = ModbusClientMixin.convert_from_registers(
            list(words), _CONVERT[self.data_type], word_order=self.word_order
        )
        return float(raw) * self.scale + self.offset  # type: ignore[arg-type]

    def encode(self, value: float) -> list[int]:
        """The registers a device holds for the scaled ``value`` (the inverse of `decode`, for tests/devices)."""
        raw = (value - self.offset) / self.scale
        if self.data_type != "float32":
            raw = round(raw)
        words = ModbusClientMixin.convert_to_registers(
            raw, _CONVERT[self.data_type], word_order=self.word_order
        )
        if self.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        return words


def _integer(fields: Mapping[str, str], name: str, low: int, high: int, default: int | None = None) -> int:
    raw = (fields.get(name) or "").strip()
    if not raw:
        if default is None:
            raise ValueError(f"{name} is required")
        return default
    try:
        value = int(raw, 0)  # 40001-style and 0x10 addresses both occur in device manuals
    except ValueError:
        raise ValueError(f"{name} {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}-{high}, got {value}")
    return value


def _order(fields: Mapping[str, str], name: str) -> Literal["big", "little"]:
    raw = (fields.get(name) or "big").strip().lower()
    if raw not in ("big", "little"):
        raise ValueError(f"{name} must be big or little, got {raw!r}")
    return "big" if raw == "big" else "little"


def parse_point(fields: Mapping[str, str]) -> ModbusPoint:
    """A `ModbusPoint` from a mapping row: ``point``, ``unit_id`` (0-255, default 1), ``function``
    (holding_register, input_register, coil, discrete_input; or 3, 4, 1, 2), ``address`` (0-65535, the
    protocol address: register 40001 is address 0), ``data_type`` (int16, uint16, int32, uint32, float32;
    ignored for bits), ``word_order`` and ``byte_order`` (big/little), ``scale`` (default 1, not 0) and
    ``offset`` (default 0). Raises ValueError naming the field and the problem."""
    point = (fields.get("point") or "").strip()
    if not point:
        raise ValueError("point (the Vigil sensor key) is required")
    unit_id = _integer(fields, "unit_id", 0, 255, default=1)
    raw_function = (fields.get("function") or "").strip().lower()
    if raw_function not in FUNCTIONS:
        raise ValueError(
            f"function {raw_function!r} is not one of holding_register, input_register, coil, discrete_input"
        )
    function = FUNCTIONS[raw_function]
    address = _integer(fields, "address", 0, 0xFFFF)
    if function in BIT_FUNCTIONS:
        data_type = "bool"
    else:
        data_type = (fields.get("data_type") or "uint16").strip().lower()
        if data_type not in DATA_TYPES:
            raise ValueError(f"data_type {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    scale = number_field(fields, "scale", 1.0)
    if scale == 0:
        raise ValueError("scale must not be 0")
    parsed = ModbusPoint(
        point=point,
        unit_id=unit_id,
        function=function,
        address=address,
        data_type=data_type,
        word_order=_order(fields, "word_order"),
        byte_order=_order(fields, "byte_order"),
        scale=scale,
        offset=number_field(fields, "offset", 0.0),
    )
    if address + parsed.width - 1 > 0xFFFF:
        raise ValueError(f"a {data_type} at address {address} runs past the last address 65535")
    return parsed


@dataclass(frozen=True)
class ModbusConfig:
    """One Modbus TCP connection: where, how often, how long to wait for an answer."""

    host: str
    port: int = 502
    interval_s: float = 1.0
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("Modbus: host is required")
        if not 0 < self.port < 65536:
            raise ValueError(f"Modbus: port must be 1-65535, got {self.port}")
        for name in ("interval_s", "timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Modbus: {name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Read:
    """One request: a run of contiguous addresses of one unit and function, and the points inside it."""

    unit_id: int
    function: Function
    address: int
    count: int
    points: tuple[ModbusPoint, ...]


def plan_reads(points: Sequence[ModbusPoint]) -> list[Read]:
    """The fewest requests that cover the points: per unit and function, points whose addresses touch or
    overlap are read together, up to the protocol's per-request limit. Gaps are never read across (an
    unmapped address may not exist on the device and would fail the whole request)."""
    keyed: dict[tuple[int, str], list[ModbusPoint]] = {}
    for point in points:
        keyed.setdefault((point.unit_id, point.function), []).append(point)
    reads: list[Read] = []
    for (unit_id, function), group in sorted(keyed.items()):
        limit = MAX_BITS_PER_READ if function in BIT_FUNCTIONS else MAX_REGISTERS_PER_READ
        group.sort(key=lambda p: (p.address, p.width))
        start, end, members = group[0].address, group[0].address + group[0].width, [group[0]]
        for point in group[1:]:
            new_end = max(end, point.address + point.width)
            if point.address <= end and new_end - start <= limit:
                end = new_end
                members.append(point)
                continue
            reads.append(Read(unit_id, function, start, end - start, tuple(members)))  # type: ignore[arg-type]
            start, end, members = point.address, point.address + point.width, [point]
        reads.append(Read(unit_id, function, start, end - start, tuple(members)))  # type: ignore[arg-type]
    return reads


def _client(cfg: ModbusConfig) -> AsyncModbusTcpClient:
    # No retries and no automatic reconnect: a missed poll is a gap, and reconnecting is the caller's job.
    return AsyncModbusTcpClient(
        cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0
    )


async def _request(client: AsyncModbusTcpClient, read: Read) -> ModbusPDU:
    call = {
        "holding_register": client.read_holding_registers,
        "input_register": client.read_input_registers,
        "coil": client.read_coils,
        "discrete_input": client.read_discrete_inputs,
    }[read.function]
    return await call(read.address, count=read.count, device_id=read.unit_id)


def decode_read(read: Read, response: ModbusPDU, ts: float) -> list[Sample | PointError]:
    """Samples of one answered request, or one error per point for an exception response."""
    if response.isError():
        reason = f"exception response {getattr(response, 'exception_code', '?')} to {read.function} read"
        return [PointError(reason, point=p.point, source=p.source) for p in read.points]
    out: list[Sample | PointError] = []
    for point in read.points:
        at = point.address - read.address
        if point.function in BIT_FUNCTIONS:
            out.append(Sample(point.point, ts, float(bool(response.bits[at])) * point.scale + point.offset))
            continue
        value = finite(point.decode(response.registers[at : at + point.width]))
        if value is None:
            out.append(PointError("not a finite number", point=point.point, source=point.source))
        else:
            out.append(Sample(point.point, ts, value))
    return out


async def poll(client: AsyncModbusTcpClient, reads: Sequence[Read], status: ConnectionStatus) -> list[Sample]:
    """One poll of every read, time-stamped with the poll's start. A read with no answer yields nothing (a
    gap) and is reported; a dropped connection raises ConnectionError."""
    ts = time.time()
    samples: list[Sample] = []
    for read in reads:
        try:
            response = await _request(client, read)
        except ModbusException as exc:
            if not client.connected:
                raise ConnectionError(f"Modbus connection lost: {exc}") from exc
            status.error(PointError(f"no answer: {exc}", source=f"unit {read.unit_id} {read.function}"), ts)
            continue
        status.messages += 1
        status.last_message_at = time.time()
        for item in decode_read(read, response, ts):
            if isinstance(item, PointError):
                status.error(item, ts)
            else:
                samples.append(item)
    return samples


async def run(cfg: ModbusConfig, points: Sequence[ModbusPoint], sink: Sink, status: ConnectionStatus) -> None:
    """Poll every ``cfg.interval_s`` and hand each poll's samples to the sink, until the connection is
    lost (ConnectionError). A poll that overruns its period skips the missed periods (and says so)."""
    reads = plan_reads(points)
    client = _client(cfg)
    if not await client.connect():
        raise ConnectionError(f"Modbus: cannot connect to {cfg.host}:{cfg.port}")
    status.connected = True
    try:
        tick = time.monotonic()
        while True:
            samples = await poll(client, reads, status)
            if samples:
                await sink(samples)
                status.samples += len(samples)
            tick += cfg.interval_s
            late = time.monotonic() - tick
            if late > 0:
                skipped = math.ceil(late / cfg.interval_s)
                status.error(PointError(f"poll overran: {skipped} period(s) skipped"), time.time())
                tick += skipped * cfg.interval_s
            await asyncio.sleep(tick - time.monotonic())
    finally:
        status.connected = False
        client.close()


# -- write-back ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModbusWriteTarget:
    """Where an asset's alert state goes: a coil for the alarm bit and/or a holding register for the
    severity code (0 none … 4 critical), on one unit."""

    asset_tag: str
    unit_id: int = 1
    alarm_coil: int | None = None
    severity_register: int | None = None


def parse_write_target(fields: Mapping[str, str]) -> ModbusWriteTarget:
    """A `ModbusWriteTarget` from ``asset_tag``, ``unit_id`` and at least one of ``alarm_coil``,
    ``severity_register`` (addresses 0-65535). Raises ValueError naming the field."""
    tag = (fields.get("asset_tag") or "").strip()
    if not tag:
        raise ValueError("asset_tag is required")
    unit_id = _integer(fields, "unit_id", 0, 255, default=1)
    coil = _integer(fields, "alarm_coil", 0, 0xFFFF, default=-1)
    register = _integer(fields, "severity_register", 0, 0xFFFF, default=-1)
    if coil < 0 and register < 0:
        raise ValueError(f"{tag}: give alarm_coil, severity_register or both")
    return ModbusWriteTarget(
        tag,
        unit_id,
        alarm_coil=coil if coil >= 0 else None,
        severity_register=register if register >= 0 else None,
    )


async def write_alert_states(
    cfg: ModbusConfig, targets: Sequence[ModbusWriteTarget], states: Sequence[AlertState]
) -> list[PointError]:
    """Set each asset's alarm coil and severity register; return the writes the device refused (exception
    responses), each with its reason. States of assets without a target are skipped. The whole state is
    written each time, so repeating a call is harmless. Raises ConnectionError when the device cannot be
    reached or stops answering (the caller retries)."""
    by_tag = {target.asset_tag: target for target in targets}
    todo = [(by_tag[s.asset_tag], s) for s in states if s.asset_tag in by_tag]
    if not todo:
        return []
    client = _client(cfg)
    if not await client.connect():
        raise ConnectionError(f"Modbus: cannot connect to {cfg.host}:{cfg.port}")
    errors: list[PointError] = []
    try:
        for target, state in todo:
            writes: list[tuple[str, Callable[[], Awaitable[ModbusPDU]]]] = []
            if target.alarm_coil is not None:
                writes.append(
                    (
                        f"coil {target.alarm_coil}",
                        partial(client.write_coil, target.alarm_coil, state.alarm, device_id=target.unit_id),
                    )
                )
            if target.severity_register is not None:
                writes.append(
                    (
                        f"holding_register {target.severity_register}",
                        partial(
                            client.write_register,
                            target.severity_register,
                            state.severity_code,
                            device_id=target.unit_id,
                        ),
                    )
                )
            for what, call in writes:
                try:
                    response = await call()
                except ModbusException as exc:
                    raise ConnectionError(
                        f"Modbus write-back to {cfg.host}:{cfg.port} failed: {exc}"
                    ) from exc
                if response.isError():
                    code = getattr(response, "exception_code", "?")
                    source = f"unit {target.unit_id} {what}"
                    errors.append(PointError(f"write refused: exception response {code}", source=source))
    finally:
        client.close()
    return errors
