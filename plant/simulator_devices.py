"""Simulated plant devices on loopback: pumps served over OPC UA (asyncua) and over Modbus TCP (pymodbus),
fed from the plant simulator, with the nodes / coil / register that alert write-back sets. The simulator
(`manage.py simulate --opcua-device / --modbus-device`, `OtDevices`), `python -m demo.devices` and the
connectivity tests start them; nothing here is used in production.

OPC UA: namespace ``urn:vigil:demo`` (index 2), one variable per role, node id ``ns=2;s=<TAG>.<role>``
(Double, source timestamp = the simulator's sample time), and writable ``<TAG>.alert_text`` (String),
``<TAG>.alert_severity`` (Int32), ``<TAG>.alarm`` (Boolean).
Modbus TCP: unit 1; each role a float32 (big-endian words and bytes) in holding registers 2*i, 2*i+1 in
`ROLES` order (vibration at 0, temperature at 2, current 4, pressure 6, flow 8); coil 0 = alarm,
holding register 100 = severity code (0 none … 4 critical).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from plant.simulator import ROLES, PlantSimulator

OPCUA_NAMESPACE = "urn:vigil:demo"
MODBUS_UNIT = 1
MODBUS_ALARM_COIL = 0
MODBUS_SEVERITY_REGISTER = 100
MODBUS_REGISTERS = 200  # holding and input registers 0..199 exist; reading past them is an exception
MODBUS_BITS = 64  # coils and discrete inputs 0..63

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeviceStartError(RuntimeError):
    """A simulated device could not start listening; the message names it and why."""


def _check_port(host: str, port: int) -> None:
    """OSError when ``host:port`` cannot be listened on (in use, not allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def modbus_address(role: str) -> int:
    """The first holding register of a role's float32."""
    return 2 * ROLES.index(role)


@dataclass
class OpcUaDevice:
    """A running asyncua server with one pump's variables."""

    server: Server
    namespace: int
    tag: str
    endpoint: str
    variables: dict[str, Node] = field(default_factory=dict)

    def node_id(self, name: str) -> str:
        return f"ns={self.namespace};s={self.tag}.{name}"

    async def set(
        self, role: str, value: float, ts: float | None = None, code: int = ua.StatusCodes.Good
    ) -> None:
        """Write a value as the device would: with its own source timestamp and status code."""
        stamp = datetime.fromtimestamp(ts if ts is not None else time.time(), UTC)
        await self.variables[role].write_value(
            ua.DataValue(
                ua.Variant(value, ua.VariantType.Double),
                StatusCode=ua.StatusCode(code),
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
        )

    async def read(self, name: str) -> object:
        return await self.variables[name].read_value()

    async def stop(self) -> None:
        await self.server.stop()


class _Passwords(UserManager):
    """Username/password log-in for a secured demo device (asyncua's default lets anyone in)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


async def start_opcua_device(
    port: int,
    tag: str = "P-101",
    host: str = "127.0.0.1",
    roles: Sequence[str] = ROLES,
    certificate: Path | None = None,
    private_key: Path | None = None,
    users: Mapping[str, str] | None = None,
    initial: Mapping[str, float] | None = None,
    initial_ts: float | None = None,
) -> OpcUaDevice:
    """Start an OPC UA server on ``host:port`` exposing ``tag``'s sensors and its write-back nodes.
    With ``certificate`` and ``private_key`` (DER / PEM files) it accepts only Basic256Sha256
    SignAndEncrypt; with ``users`` only those usernames and passwords. ``initial`` (role -> value, source
    time ``initial_ts``) is written before the server listens, so no client reads the placeholder 0 a
    variable is created with (a running PLC has a value from its first scan)."""
    server = Server(user_manager=_Passwords(users) if users is not None else None)
    await server.init()
    endpoint = f"opc.tcp://{host}:{port}/vigil/"
    server.set_endpoint(endpoint)
    server.set_server_name(f"Vigil demo device {tag}")
    if certificate is not None and private_key is not None:
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.load_certificate(str(certificate))
        await server.load_private_key(str(private_key))
    namespace = await server.register_namespace(OPCUA_NAMESPACE)
    device = OpcUaDevice(server, namespace, tag, endpoint)
    pump = await server.nodes.objects.add_object(ua.NodeId(tag, namespace), tag)
    for role in roles:
        device.variables[role] = await pump.add_variable(
            ua.NodeId(f"{tag}.{role}", namespace), role, 0.0, ua.VariantType.Double
        )
    for name, start, kind in (
        ("alert_text", f"{tag} normal", ua.VariantType.String),
        ("alert_severity", 0, ua.VariantType.Int32),
        ("alarm", False, ua.VariantType.Boolean),
    ):
        variable = await pump.add_variable(ua.NodeId(f"{tag}.{name}", namespace), name, start, kind)
        await variable.set_writable()
        device.variables[name] = variable
    for role, value in (initial or {}).items():
        await device.set(role, value, ts=initial_ts)
    await server.start()
    return device


@dataclass
class ModbusDevice:
    """A running pymodbus server with one pump's registers and alarm coil."""

    server: ModbusTcpServer
    host: str
    port: int
    tag: str
    unit: int = MODBUS_UNIT

    async def set_registers(self, address: int, registers: list[int], input_registers: bool = False) -> None:
        await self.server.async_setValues(self.unit, 4 if input_registers else 16, address, registers)

    async def set_float(self, role: str, value: float) -> None:
        registers = ModbusClientMixin.convert_to_registers(value, ModbusClientMixin.DATATYPE.FLOAT32)
        await self.set_registers(modbus_address(role), registers)

    async def set_bits(self, address: int, bits: list[bool], discrete: bool = False) -> None:
        await self.server.async_setValues(self.unit, 2 if discrete else 15, address, bits)

    async def registers(self, address: int, count: int = 1) -> list[int]:
        return list(await self.server.async_getValues(self.unit, 3, address, count))

    async def coil(self, address: int) -> bool:
        return bool((await self.server.async_getValues(self.unit, 1, address, 1))[0])

    async def stop(self) -> None:
        await self.server.shutdown()


async def start_modbus_device(
    port: int,
    tag: str = "P-101",
    host: str = "127.0.0.1",
    unit: int = MODBUS_UNIT,
    action: SimAction | None = None,
    registers: int = MODBUS_REGISTERS,
    initial: Mapping[str, float] | None = None,
    **server_options: object,
) -> ModbusDevice:
    """Start a Modbus TCP server on ``host:port``: unit ``unit`` with ``registers`` (200) holding and input
    registers and 64 coils and discrete inputs. ``action`` is pymodbus's hook called on every access (a test's slow or
    failing device); ``server_options`` go to pymodbus's server, e.g. ``trace_pdu``. ``initial`` (role ->
    value) is written to the roles' registers before the server listens, so no client reads the zeros the
    registers start with."""

    def bits() -> list[SimData]:
        return [SimData(0, count=MODBUS_BITS, values=False, datatype=DataType.BITS)]

    def block() -> list[SimData]:
        return [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)]

    simdevice = SimDevice(
        unit, simdata=(bits(), bits(), block(), block()), use_bit_addressing=True, action=action
    )
    server = ModbusTcpServer([simdevice], address=(host, port), **server_options)  # type: ignore[arg-type]
    device = ModbusDevice(server, host, port, tag, unit)
    for role, value in (initial or {}).items():
        await device.set_float(role, value)
    await server.serve_forever(background=True)
    return device


async def feed(
    simulator: PlantSimulator,
    opcua: OpcUaDevice | None,
    modbus: ModbusDevice | None,
    period_s: float = 1.0,
) -> None:
    """Write the simulator's samples to the devices as time passes, one sample per role each period."""
    while True:
        t = math.floor(time.time() / period_s) * period_s
        frame = simulator.signals(t, t + period_s)
        for device in (opcua, modbus):
            if device is None or device.tag not in frame.values:
                continue
            for role, series in frame.values[device.tag].items():
                if len(series):
                    if isinstance(device, OpcUaDevice):
                        await device.set(role, float(series[0]), ts=float(frame.ts[0]))
                    else:
                        await device.set_float(role, float(series[0]))
        await asyncio.sleep(max(0.0, t + period_s - time.time()))


class OtDevices:
    """The simulator's OPC UA and Modbus TCP devices: some pumps are served as a PLC would serve them
    instead of posting to the API. The servers run on an event loop of their own thread; ``send`` writes
    each served sensor's newest value (OPC UA with its sample time as the source timestamp). A device has
    no history, so the backfill of these pumps still goes through the API (``live`` is set when the live
    stream starts). ``opcua`` / ``modbus`` map a pump's tag to the port its server listens on; ``sensors``
    maps each sensor key to its (tag, role).

    A device starts listening with the first live values it is sent, written before it accepts a client, as
    a PLC is reachable only once it runs its program: a device listening from the start would serve its
    registers' start-up zeros to a bridge polling during the backfill, stored as readings (flagged as
    spikes, the pump's data health degraded). Until then a client is refused, which the bridge reports and
    retries. The ports are checked when the devices are made, so one already in use stops the simulator
    before it sends anything."""

    def __init__(
        self,
        sensors: Mapping[str, tuple[str, str]],
        opcua: Mapping[str, int],
        modbus: Mapping[str, int],
        host: str = "127.0.0.1",
    ) -> None:
        for port in (*opcua.values(), *modbus.values()):
            _check_port(host, port)
        served = set(opcua) | set(modbus)
        self.sensors = {key: tr for key, tr in sensors.items() if tr[0] in served}
        self.ports = {"opcua": dict(opcua), "modbus": dict(modbus)}
        self.host = host
        self.live = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim-ot-devices", daemon=True)
        self.thread.start()
        self.opcua: dict[str, OpcUaDevice] = {}
        self.modbus: dict[str, ModbusDevice] = {}

    def _call(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def handles(self, key: str) -> bool:
        return self.live and key in self.sensors

    def send(self, keys: list[str], ts: list[float], values: list[float]) -> int:
        newest: dict[str, tuple[float, float]] = {}
        for key, t, v in zip(keys, ts, values, strict=True):
            if math.isfinite(v) and (key not in newest or t >= newest[key][0]):
                newest[key] = (t, v)

        async def write() -> None:
            await self._start(newest)
            for key, (t, v) in newest.items():
                tag, role = self.sensors[key]
                if tag in self.opcua:
                    await self.opcua[tag].set(role, v, ts=t)
                if tag in self.modbus:
                    await self.modbus[tag].set_float(role, v)

        self._call(write())
        return len(newest)

    async def _start(self, newest: Mapping[str, tuple[float, float]]) -> None:
        """Start every device not running yet that has values in ``newest``, serving them from the start."""
        first: dict[str, dict[str, float]] = {}
        stamps: dict[str, float] = {}
        for key, (t, v) in newest.items():
            tag, role = self.sensors[key]
            first.setdefault(tag, {})[role] = v
            stamps[tag] = max(t, stamps.get(tag, t))
        try:
            for tag, port in self.ports["opcua"].items():
                if tag in first and tag not in self.opcua:
                    self.opcua[tag] = await start_opcua_device(
                        port, tag, self.host, initial=first[tag], initial_ts=stamps[tag]
                    )
            for tag, port in self.ports["modbus"].items():
                if tag in first and tag not in self.modbus:
                    self.modbus[tag] = await start_modbus_device(port, tag, self.host, initial=first[tag])
        except (OSError, RuntimeError) as exc:  # pymodbus says "Could not start listen" as a RuntimeError
            raise DeviceStartError(f"a simulated PLC cannot listen on {self.host}: {exc}") from None

    def close(self) -> None:
        async def stop() -> None:
            for device in [*self.opcua.values(), *self.modbus.values()]:
                with contextlib.suppress(Exception):
                    await device.stop()

        with contextlib.suppress(Exception):
            self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
