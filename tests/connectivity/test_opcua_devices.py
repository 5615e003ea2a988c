"""`python -m demo.devices`: the simulated pump served over OPC UA and Modbus TCP, read by the clients."""

from __future__ import annotations

import asyncio
import subprocess
import sys


from connectivity import modbus, opcua
from connectivity.modbus import ModbusConfig, parse_point
from connectivity.points import ConnectionStatus
from plant.simulator_devices import modbus_address
from plant.simulator import ROLES
from tests.connectivity.ot_support import Collector, until
from bench.live_server import ROOT


async def test_the_devices_command_serves_the_simulated_pump_over_both_protocols(devices):
    (opcua_port, modbus_port), proc = devices
    line = await asyncio.to_thread(proc.stdout.readline)  # printed once both servers listen
    assert line.startswith(f"OPC UA P-101 at opc.tcp://127.0.0.1:{opcua_port}/vigil/"), line

    sink, status = Collector(), ConnectionStatus()
    cfg = opcua.OpcUaConfig(f"opc.tcp://127.0.0.1:{opcua_port}/vigil/", batch_seconds=0.05)
    # Sampled at the device's own period (a shorter interval would hold each value between its changes).
    points = [opcua.OpcUaPoint(f"P-101.{role}", f"ns=2;s=P-101.{role}", 1000) for role in ROLES]
    task = asyncio.create_task(opcua.run(cfg, points, sink, status))
    try:
        # The simulator writes every role once a second, each with its own sample time.
        await until(lambda: len({s.ts for s in sink.samples if s.value}) >= 2, timeout=10, what="two seconds")
    finally:
        task.cancel()
    fresh = [s for s in sink.samples if s.value]
    assert {s.point for s in fresh} == {f"P-101.{role}" for role in ROLES}
    assert all(s.ts == int(s.ts) for s in fresh)  # the simulator's 1 s grid, not the time of receipt

    mapped = [
        parse_point(
            {"point": role, "function": "hr", "address": str(modbus_address(role)), "data_type": "float32"}
        )
        for role in ROLES
    ]
    client = modbus._client(ModbusConfig("127.0.0.1", modbus_port))
    assert await client.connect()
    try:
        samples = await modbus.poll(client, modbus.plan_reads(mapped), ConnectionStatus())
    finally:
        client.close()
    values = {s.point: s.value for s in samples}
    assert set(values) == set(ROLES)
    assert 10 < values["temperature"] < 120 and values["flow"] > 0


def test_a_bad_port_is_refused_with_a_message():
    result = subprocess.run(
        [sys.executable, "-m", "demo.devices", "--opcua-port", "0", "--modbus-port", "5020"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "port 0 is out of range 1-65535" in result.stderr
