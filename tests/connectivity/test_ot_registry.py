"""OPC UA and Modbus through the protocol registry, as the bridge and the edge agent use every protocol:
a mapping CSV (sensor column + the protocol's address fields) read by connectivity.mapping_csv, the shared
ConnectionConfig, samples named by the sensor keys, and alert states written back to the device — against
the simulated pump of `python -m demo.devices` (real asyncua and pymodbus servers)."""

from __future__ import annotations

import asyncio

import pytest

from connectivity import modbus, protocols
from connectivity.mapping_csv import read_mapping_csv
from connectivity.points import ConnectionStatus
from connectivity.protocols import ConnectionConfig, OutgoingState
from plant.simulator_devices import MODBUS_ALARM_COIL, MODBUS_SEVERITY_REGISTER, modbus_address
from plant.simulator import ROLES
from tests.connectivity.ot_support import Collector, until


def opcua_csv() -> bytes:
    rows = ["sensor,node_id,sampling_interval_ms"]
    rows += [f"north.p-101.{role},ns=2;s=P-101.{role},200" for role in ROLES]
    rows += ["north.p-101.extra,ns=2;s=P-101.nothing_here,200", "north.p-101.bad,not a node id,200"]
    return "\n".join(rows).encode()


def modbus_csv() -> bytes:
    rows = ["sensor,unit_id,function,address,data_type"]
    rows += [f"north.p-101.{role},1,holding_register,{modbus_address(role)},float32" for role in ROLES]
    rows += ["north.p-101.bad,1,holding_register,70000,float32"]
    return "\n".join(rows).encode()


async def test_opcua_by_registry_names_samples_by_sensor_key(devices):
    (opcua_port, _), proc = devices
    proc.stdout.readline()  # printed once both servers listen
    checked = read_mapping_csv("opcua", opcua_csv())
    assert [line for line, _ in checked.errors] == [len(ROLES) + 3]  # the malformed node id
    points = {key: point for key, (_line, _fields, point) in checked.rows.items()}
    client = protocols.module("opcua")
    config = ConnectionConfig(name="pump", endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/vigil/", options={})
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(client.run(config, points, sink, status))
    try:
        await until(
            lambda: {s.point for s in sink.samples if s.value} >= {f"north.p-101.{r}" for r in ROLES},
            timeout=15,
            what="every role",
        )
    finally:
        task.cancel()
    assert status.errors >= 1 and "nothing_here" in (status.last_error or "") + str(status.recent_errors)


async def test_modbus_by_registry_polls_and_writes_the_alarm_back(devices):
    (_, modbus_port), proc = devices
    proc.stdout.readline()
    checked = read_mapping_csv("modbus", modbus_csv())
    assert len(checked.errors) == 1 and "65535" in checked.errors[0][1]
    points = {key: point for key, (_line, _fields, point) in checked.rows.items()}
    options = {
        "write_targets": [
            {
                "asset_tag": "p-101",
                "unit_id": 1,
                "alarm_coil": MODBUS_ALARM_COIL,
                "severity_register": MODBUS_SEVERITY_REGISTER,
            }
        ]
    }
    client = protocols.module("modbus")
    protocols.parse_options("modbus", options)
    config = ConnectionConfig(
        name="pump", endpoint=f"modbus://127.0.0.1:{modbus_port}", interval_s=0.2, options=options
    )
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(client.run(config, points, sink, status))
    try:
        await until(
            lambda: {s.point for s in sink.samples} >= {f"north.p-101.{r}" for r in ROLES},
            timeout=10,
            what="every role",
        )
    finally:
        task.cancel()

    confirmed: list[int] = []
    queue = [[OutgoingState(7, "north/p-101", {"asset": "p-101", "state": "open", "severity": "high"})]]

    async def take():
        if queue:
            return queue.pop()
        await asyncio.sleep(3600)

    async def confirm(ids):
        confirmed.extend(ids)

    writer = asyncio.create_task(client.write_back(config, take, confirm, ConnectionStatus()))
    try:
        await until(lambda: confirmed == [7], timeout=10, what="the state confirmed")
    finally:
        writer.cancel()
    device = modbus._client(modbus.ModbusConfig("127.0.0.1", modbus_port))
    assert await device.connect()
    try:
        coil = await device.read_coils(MODBUS_ALARM_COIL, count=1, device_id=1)
        register = await device.read_holding_registers(MODBUS_SEVERITY_REGISTER, count=1, device_id=1)
    finally:
        device.close()
    assert coil.bits[0] is True and register.registers[0] == 3  # high


@pytest.mark.parametrize(
    "protocol, options, error",
    [
        ("opcua", {"colour": "red"}, "unknown OPC UA option"),
        ("modbus", {"write_targets": [{"asset_tag": "p-101"}]}, "write_targets[0]"),
        ("modbus", {"write_targets": "p-101"}, "must be a list"),
    ],
)
def test_bad_options_are_refused_naming_them(protocol, options, error):
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        protocols.parse_options(protocol, options)
