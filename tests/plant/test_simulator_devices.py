"""The simulator's PLCs: pumps served live as an OPC UA server and a Modbus TCP server (OtDevices), read
back by the protocol clients; their backfill goes through the API (a device has no history)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bench.live_server import free_port
from connectivity import modbus, opcua
from connectivity.points import ConnectionStatus
from plant.simulator import ROLES
from plant.simulator_devices import DeviceStartError, OtDevices, modbus_address, start_opcua_device
from tests.connectivity.ot_support import Collector, until


async def modbus_pressure(port: int) -> list[float]:
    """The pressure a Modbus client polls from the device on ``port``."""
    point = modbus.parse_point(
        {
            "point": "pressure",
            "function": "holding_register",
            "address": str(modbus_address("pressure")),
            "data_type": "float32",
        }
    )
    client = modbus._client(modbus.ModbusConfig("127.0.0.1", port))
    assert await client.connect()
    try:
        samples = await modbus.poll(client, modbus.plan_reads([point]), ConnectionStatus())
    finally:
        client.close()
    return [s.value for s in samples]


@pytest.fixture
def devices():
    ports = {"opcua": free_port(), "modbus": free_port()}
    sensors = {f"s.{tag}.{role}": (tag, role) for tag in ("p-103", "p-105", "p-106") for role in ROLES}
    made = OtDevices(sensors, {"p-103": ports["opcua"]}, {"p-105": ports["modbus"]})
    try:
        yield made, ports
    finally:
        made.close()


def test_only_served_pumps_in_the_live_phase_go_to_the_devices(devices):
    made, _ = devices
    assert not made.handles("s.p-103.flow")  # backfill: through the API
    made.live = True
    assert made.handles("s.p-103.flow") and made.handles("s.p-105.flow")
    assert not made.handles("s.p-106.flow")  # not served: through the API


async def test_the_newest_values_reach_both_servers(devices):
    made, ports = devices
    made.live = True
    keys = ["s.p-103.flow", "s.p-103.flow", "s.p-105.pressure"]
    assert made.send(keys, [100.0, 101.0, 101.0], [5.0, 7.5, 6.25]) == 2

    sink, status = Collector(), ConnectionStatus()
    cfg = opcua.OpcUaConfig(f"opc.tcp://127.0.0.1:{ports['opcua']}/vigil/", batch_seconds=0.05)
    task = asyncio.create_task(
        opcua.run(cfg, [opcua.OpcUaPoint("flow", "ns=2;s=p-103.flow", 100)], sink, status)
    )
    try:
        await until(lambda: any(s.value == 7.5 for s in sink.samples), timeout=10, what="the newest flow")
    finally:
        task.cancel()
    assert next(s for s in sink.samples if s.value == 7.5).ts == 101.0  # the sample's own time

    assert await modbus_pressure(ports["modbus"]) == [6.25]


async def test_a_device_listens_only_once_it_has_its_first_live_values(devices):
    # A PLC is reachable once it runs: before the live stream's first values the ports refuse, so a bridge
    # polling during the backfill never reads (and stores) the registers' start-up zeros.
    made, ports = devices
    client = modbus._client(modbus.ModbusConfig("127.0.0.1", ports["modbus"]))
    assert not await client.connect()
    client.close()

    made.live = True
    keys = [f"s.p-105.{role}" for role in ROLES] + ["s.p-103.flow"]
    values = [3.25 + k for k in range(len(ROLES))] + [12.5]
    await asyncio.to_thread(made.send, keys, [50.0] * len(keys), values)

    assert await modbus_pressure(ports["modbus"]) == [3.25 + ROLES.index("pressure")]


def test_a_port_in_use_stops_the_devices_before_anything_is_sent():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            OtDevices({"s.p-105.flow": ("p-105", "flow")}, {}, {"p-105": port})


async def test_an_opcua_device_serves_its_initial_values_with_their_sample_time():
    port = free_port()
    device = await start_opcua_device(port, "p-103", initial={"flow": 12.5, "pressure": 3.0}, initial_ts=50.0)
    try:
        sink, status = Collector(), ConnectionStatus()
        cfg = opcua.OpcUaConfig(f"opc.tcp://127.0.0.1:{port}/vigil/", batch_seconds=0.05)
        task = asyncio.create_task(
            opcua.run(cfg, [opcua.OpcUaPoint("flow", "ns=2;s=p-103.flow", 100)], sink, status)
        )
        try:
            await until(lambda: sink.samples, timeout=10, what="the first flow sample")
        finally:
            task.cancel()
    finally:
        await device.stop()
    assert (sink.samples[0].value, sink.samples[0].ts) == (12.5, 50.0)


def test_a_port_taken_after_the_check_is_a_device_start_error_naming_the_host():
    """pymodbus reports a port it cannot listen on as a RuntimeError, which the simulator did not expect: a
    traceback once its live run had started (two devices on one port, or another program quicker)."""
    port = free_port()
    made = OtDevices({"s.p-105.flow": ("p-105", "flow")}, {}, {"p-105": port})
    made.live = True
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            with pytest.raises(DeviceStartError, match="a simulated PLC cannot listen on 127.0.0.1"):
                made.send(["s.p-105.flow"], [1.0], [3.0])
    finally:
        made.close()
