"""The Modbus TCP client against a real pymodbus server on loopback."""

from __future__ import annotations

import asyncio
import math
import random
import re
import struct

import pytest
from pymodbus.constants import ExcCodes

from connectivity import modbus
from connectivity.modbus import ModbusConfig, ModbusPoint, ModbusWriteTarget, parse_point, plan_reads
from connectivity.points import ConnectionStatus, PointError, SampleStatus
from connectivity.writeback import AlertState
from plant.simulator_devices import start_modbus_device
from tests.connectivity.ot_support import Collector, until
from bench.live_server import free_port

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}


def device_registers(value: float, data_type: str, word_order: str, byte_order: str) -> list[int]:
    """What a device with that layout holds, built from struct alone (independent of the client's code)."""
    raw = struct.pack(">" + FORMATS[data_type], value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def examples(data_type: str, rng: random.Random) -> list[float]:
    if data_type == "float32":
        floats = [0.0, -1.5, 3.4e38, -1.17e-38, 1234.5678] + [rng.uniform(-1e6, 1e6) for _ in range(20)]
        return [struct.unpack(">f", struct.pack(">f", v))[0] for v in floats]  # exactly representable
    bits = 16 if data_type.endswith("16") else 32
    low, high = (0, 2**bits - 1) if data_type.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return [low, high, 0, 1] + [rng.randint(low, high) for _ in range(20)]


@pytest.fixture
async def device():
    dev = await start_modbus_device(free_port())
    yield dev
    await dev.stop()


async def connected(dev, **options):
    cfg = ModbusConfig("127.0.0.1", dev.port, **options)
    client = modbus._client(cfg)
    assert await client.connect()
    return client


def point(address: int, data_type: str = "uint16", function: str = "holding_register", **kw) -> ModbusPoint:
    fields = {"point": f"p{address}", "function": function, "address": str(address), "data_type": data_type}
    fields.update({k: str(v) for k, v in kw.items()})
    return parse_point(fields)


@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("data_type", sorted(FORMATS))
async def test_every_data_type_and_word_order_round_trips_through_the_device(
    device, data_type, word_order, byte_order
):
    rng = random.Random(f"{data_type}{word_order}{byte_order}")
    values = examples(data_type, rng)
    width = 1 if data_type.endswith("16") else 2
    points = [
        point(i * width, data_type, word_order=word_order, byte_order=byte_order) for i in range(len(values))
    ]
    for p, value in zip(points, values, strict=True):
        await device.set_registers(p.address, device_registers(value, data_type, word_order, byte_order))
    client = await connected(device)
    try:
        samples = await modbus.poll(client, plan_reads(points), ConnectionStatus())
    finally:
        client.close()
    assert [s.value for s in samples] == [float(v) for v in values]
    assert {s.status for s in samples} == {SampleStatus.GOOD}


async def test_scale_and_offset_apply_to_registers_and_bits(device):
    await device.set_registers(10, [1234])
    await device.set_registers(3, [500], input_registers=True)
    await device.set_bits(7, [True])
    points = [
        point(10, "int16", scale=0.1, offset=-20),
        point(3, "uint16", function="input_register", scale=2),
        point(7, function="coil"),
    ]
    client = await connected(device)
    try:
        samples = await modbus.poll(client, plan_reads(points), ConnectionStatus())
    finally:
        client.close()
    got = {s.point: s.value for s in samples}
    assert got == {"p10": pytest.approx(103.4), "p3": 1000.0, "p7": 1.0}


async def test_contiguous_registers_are_read_together_and_the_reads_are_counted_on_the_server():
    requests = []

    def trace(sending, pdu):
        if not sending:
            requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    dev = await start_modbus_device(free_port(), trace_pdu=trace)
    # 5 float32 at 0..9 and an int16 at 10: one read; 70 float32 from 20 (140 registers): two reads;
    # an input register and two coils: one read each.
    points = [point(2 * i, "float32") for i in range(5)] + [point(10, "int16")]
    points += [point(20 + 2 * i, "float32") for i in range(70)]
    points += [point(0, function="input_register"), point(1, function="coil"), point(2, function="coil")]
    client = await connected(dev)
    try:
        samples = await modbus.poll(client, plan_reads(points), ConnectionStatus())
    finally:
        client.close()
        await dev.stop()
    assert len(samples) == len(points)
    assert sorted(requests) == [(1, 1, 2), (3, 0, 11), (3, 20, 124), (3, 144, 16), (4, 0, 1)]


def test_reads_never_span_a_gap_a_unit_or_the_protocol_limit():
    points = [point(0), point(1), point(5), point(0, function="input_register")]
    points.append(parse_point({"point": "other unit", "unit_id": "2", "function": "hr", "address": "2"}))
    reads = plan_reads(points)
    assert [(r.unit_id, r.function, r.address, r.count) for r in reads] == [
        (1, "holding_register", 0, 2),
        (1, "holding_register", 5, 1),
        (1, "input_register", 0, 1),
        (2, "holding_register", 2, 1),
    ]
    long = plan_reads([point(i) for i in range(300)])
    assert [r.count for r in long] == [125, 125, 50]


async def test_an_exception_response_is_an_error_of_its_points_and_the_other_reads_go_on(device):
    await device.set_registers(0, [7])
    points = [point(0), point(500)]  # the device has registers 0..199 only
    status = ConnectionStatus()
    client = await connected(device)
    try:
        samples = await modbus.poll(client, plan_reads(points), status)
    finally:
        client.close()
    assert [(s.point, s.value) for s in samples] == [("p0", 7.0)]
    assert status.errors == 1
    assert status.recent_errors[0].point == "p500"
    assert "exception response" in status.recent_errors[0].reason
    assert status.last_error.startswith("unit 1 holding_register 500: ")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinite_floats_are_point_errors_not_values(device, bad):
    await device.set_registers(0, device_registers(bad, "float32", "big", "big"))
    await device.set_registers(2, device_registers(1.5, "float32", "big", "big"))
    status = ConnectionStatus()
    client = await connected(device)
    try:
        samples = await modbus.poll(client, plan_reads([point(0, "float32"), point(2, "float32")]), status)
    finally:
        client.close()
    assert [(s.point, s.value) for s in samples] == [("p2", 1.5)]
    assert status.recent_errors == [PointError("not a finite number", "p0", "unit 1 holding_register 0")]


async def test_run_polls_at_its_interval_with_the_poll_time_and_raises_when_the_server_drops(device):
    await device.set_float("vibration", 2.5)
    sink, status = Collector(), ConnectionStatus()
    cfg = ModbusConfig("127.0.0.1", device.port, interval_s=0.2, timeout_s=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(modbus.run(cfg, [point(0, "float32")], sink, status))
    await until(lambda: len(sink.samples) >= 4, what="four polls")
    assert status.connected
    assert [s.value for s in sink.samples[:4]] == [2.5] * 4
    steps = [b.ts - a.ts for a, b in zip(sink.samples, sink.samples[1:4], strict=False)]
    assert all(0.15 < step < 0.3 for step in steps), steps
    await device.stop()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(task, 5)
    assert not status.connected
    assert loop.time() - started < 5


async def test_a_device_that_stops_answering_leaves_a_gap_and_says_so():
    slow = {"on": False}

    async def action(function_code, start, address, count, registers, values):
        if slow["on"]:
            await asyncio.sleep(1.0)  # longer than the client's timeout: no answer in time
        return None

    dev = await start_modbus_device(free_port(), action=action)
    sink, status = Collector(), ConnectionStatus()
    cfg = ModbusConfig("127.0.0.1", dev.port, interval_s=0.2, timeout_s=0.3)
    task = asyncio.create_task(modbus.run(cfg, [point(0)], sink, status))
    try:
        await until(lambda: len(sink.samples) >= 2, what="polls")
        slow["on"] = True
        await until(lambda: status.errors >= 1, what="a failed poll")
        during = len(sink.samples)
        await asyncio.sleep(0.5)
        assert len(sink.samples) == during  # no values while the device does not answer: a gap
        assert any(e.reason.startswith("no answer") for e in status.recent_errors)
        assert status.connected and not task.done()
    finally:
        task.cancel()
        await dev.stop()


async def test_a_refused_connection_raises_connection_error():
    with pytest.raises(ConnectionError, match="cannot connect"):
        await modbus.run(ModbusConfig("127.0.0.1", free_port()), [point(0)], Collector(), ConnectionStatus())


async def test_alert_state_is_written_to_the_coil_and_register_and_writing_it_twice_is_harmless(device):
    cfg = ModbusConfig("127.0.0.1", device.port)
    targets = [ModbusWriteTarget("P-101", alarm_coil=0, severity_register=100)]
    alert = AlertState("P-101", state="open", severity="high", category="machine_fault")
    for _ in range(2):
        assert (
            await modbus.write_alert_states(cfg, targets, [alert, AlertState("P-999", "open", "low")]) == []
        )
        assert await device.coil(0) is True
        assert await device.registers(100) == [3]
    assert await modbus.write_alert_states(cfg, targets, [AlertState("P-101", state="resolved")]) == []
    assert await device.coil(0) is False
    assert await device.registers(100) == [0]


async def test_a_write_back_the_device_refuses_is_reported(device):
    async def refuse(function_code, start, address, count, registers, values):
        return ExcCodes.ILLEGAL_ADDRESS if values is not None else None

    dev = await start_modbus_device(free_port(), action=refuse)
    try:
        errors = await modbus.write_alert_states(
            ModbusConfig("127.0.0.1", dev.port),
            [ModbusWriteTarget("P-101", alarm_coil=3)],
            [AlertState("P-101", "open", "low")],
        )
    finally:
        await dev.stop()
    assert [e.source for e in errors] == ["unit 1 coil 3"]
    assert "exception response" in errors[0].reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"function": "hr", "address": "0"}, "point (the Vigil sensor key) is required"),
        ({"point": "p", "function": "register", "address": "0"}, "function 'register' is not one of"),
        ({"point": "p", "function": "hr"}, "address is required"),
        ({"point": "p", "function": "hr", "address": "forty"}, "address 'forty' is not an integer"),
        ({"point": "p", "function": "hr", "address": "65536"}, "address must be 0-65535, got 65536"),
        ({"point": "p", "function": "hr", "address": "-1"}, "address must be 0-65535, got -1"),
        (
            {"point": "p", "function": "hr", "address": "65535", "data_type": "float32"},
            "a float32 at address 65535 runs past",
        ),
        ({"point": "p", "function": "hr", "address": "0", "unit_id": "256"}, "unit_id must be 0-255"),
        ({"point": "p", "function": "hr", "address": "0", "data_type": "float64"}, "data_type 'float64'"),
        ({"point": "p", "function": "hr", "address": "0", "word_order": "middle"}, "word_order must be big"),
        ({"point": "p", "function": "hr", "address": "0", "byte_order": "x"}, "byte_order must be big"),
        ({"point": "p", "function": "hr", "address": "0", "scale": "0"}, "scale must not be 0"),
        ({"point": "p", "function": "hr", "address": "0", "scale": "nan"}, "scale must be a finite number"),
        ({"point": "p", "function": "hr", "address": "0", "offset": "abc"}, "offset 'abc' is not a number"),
    ],
)
def test_malformed_mappings_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_point(fields)


def test_a_well_formed_mapping_parses_with_its_defaults():
    parsed = parse_point({"point": "P-101.flow", "function": "4", "address": "0x10", "data_type": "INT32"})
    assert parsed == ModbusPoint("P-101.flow", 1, "input_register", 16, "int32", "big", "big", 1.0, 0.0)
    assert parse_point({"point": "p", "function": "coil", "address": "3", "data_type": "float32"}).width == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": ""}, "host is required"),
        ({"host": "h", "port": 0}, "port must be 1-65535"),
        ({"host": "h", "interval_s": 0}, "interval_s must be a positive number"),
        ({"host": "h", "timeout_s": math.nan}, "timeout_s must be a positive number"),
    ],
)
def test_an_invalid_connection_does_not_start_and_says_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModbusConfig(**kwargs)


def test_write_targets_need_an_address():
    with pytest.raises(ValueError, match="give alarm_coil, severity_register or both"):
        modbus.parse_write_target({"asset_tag": "P-101"})
    target = modbus.parse_write_target({"asset_tag": "P-101", "unit_id": "2", "severity_register": "100"})
    assert target == ModbusWriteTarget("P-101", 2, None, 100)
