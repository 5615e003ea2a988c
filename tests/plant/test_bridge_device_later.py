"""A bridge started before its device (a plant start-up, a power cut: the PLC or broker boots slower than the
gateway), against real asyncua, pymodbus and mosquitto servers started after it.

While the device is down the connection says it is not reachable, one log line per try (no traceback).
Once it is up, a sensor's first readings ever carry no GAP flag: the quality rules judge a gap against the
sensor's stored readings only (plant.quality, through ingest's context), never against the bridge's start.
A sensor with readings stored before the outage gets GAP on its first reading after it, as readings
really stopped and resumed. The same for every protocol: they all store through plant.ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable

import aiomqtt
import orjson
import pytest

from bench.live_server import free_port
from connectivity import points as connectivity_points
from plant.builders import make_asset, make_site
from plant.choices import QualityFlag
from plant.connections import bridge
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Connection, PointMapping, Sensor
from plant.simulator_devices import modbus_address, start_modbus_device, start_opcua_device
from tests.brokers import Mosquitto
from tests.plant.test_bridge import fetch, quiet, readings, state_of, until  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
GAP = int(QualityFlag.GAP)
KNOWN = "pressure"  # the sensor with readings stored before the outage; the others have none


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    """Reconnection tries 0.2-0.3 s apart instead of up to 10 s: the test waits less, nothing else changes."""
    monkeypatch.setattr(
        bridge, "backoff_delays", lambda **_: connectivity_points.backoff_delays(first=0.2, cap=0.3)
    )


def address(protocol: str, role: str) -> dict:
    if protocol == "opcua":
        return {"node_id": f"ns=2;s=P-101.{role}"}
    if protocol == "modbus":
        return {
            "unit_id": "1",
            "function": "holding_register",
            "address": str(modbus_address(role)),
            "data_type": "float32",
        }
    return {"topic": f"plant/p101/{role}", "value_path": "v", "ts_path": "t"}


def plant_before_its_device(protocol: str, endpoint: str) -> tuple[Connection, dict[str, Sensor]]:
    site = make_site("north")
    sensors = {s.role.key: s for s in Sensor.objects.filter(asset=make_asset(site)).select_related("role")}
    connection = Connection.objects.create(
        site=site,
        name="plc",
        protocol=protocol,
        endpoint=endpoint,
        interval_s=0.25,
        options={"publishing_interval_ms": 100, "flush_ms": 50} if protocol == "opcua" else {},
    )
    for role, sensor in sensors.items():
        PointMapping.objects.create(connection=connection, sensor=sensor, address=address(protocol, role))
    # Half a minute of readings of one sensor until 30 s before now: stored before the power cut.
    start = time.time() - 60.0
    stamps = [start + i for i in range(30)]
    batch = ParsedBatch.from_arrays(
        [sensors[KNOWN].key] * 30, stamps, [5.0 + 0.01 * (i % 3) for i in range(30)]
    )
    assert ingest_readings(site, batch).accepted == 30
    return connection, sensors


def value_at(role_number: int, step: int) -> float:
    return 5.0 + role_number + 0.01 * math.sin(step)  # a live signal: changes at every write


async def start_device(
    protocol: str, port: int, roles: list[str], broker: Mosquitto
) -> tuple[Callable, Callable]:
    """Start the device on ``port`` (MQTT: ``broker``): (write(role, value, ts), stop) coroutines."""
    first = {role: value_at(n, 0) for n, role in enumerate(roles)}
    if protocol == "opcua":
        dev = await start_opcua_device(port, initial=first, initial_ts=time.time())
        return dev.set, dev.stop
    if protocol == "modbus":
        dev = await start_modbus_device(port, initial=first)

        async def write_register(role: str, value: float, ts: float) -> None:
            await dev.set_float(role, value)

        return write_register, dev.stop
    await asyncio.to_thread(broker.start)
    client = aiomqtt.Client("127.0.0.1", port)
    await client.__aenter__()

    async def publish(role: str, value: float, ts: float) -> None:
        await client.publish(f"plant/p101/{role}", orjson.dumps({"t": ts, "v": value}), qos=1)

    async def stop() -> None:
        await client.__aexit__(None, None, None)
        await asyncio.to_thread(broker.stop)

    return publish, stop


async def feed(write: Callable[[str, float, float], Awaitable[None]], roles: list[str]) -> None:
    """Write every role as a running PLC does: a new value every 0.25 s, timed by the device's clock."""
    for step in itertools.count(1):
        now = time.time()
        for n, role in enumerate(roles):
            await write(role, value_at(n, step), now)
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("protocol", ["opcua", "modbus", "mqtt"])
async def test_a_device_up_after_the_bridge_is_reported_unreachable_and_its_first_readings_are_no_gap(
    protocol, caplog, tmp_path
):
    caplog.set_level(logging.WARNING)
    broker = Mosquitto(tmp_path)  # not started yet; it chose its port
    port = broker.port if protocol == "mqtt" else free_port()
    endpoint = {
        "opcua": f"opc.tcp://127.0.0.1:{port}/vigil/",
        "modbus": f"modbus://127.0.0.1:{port}",
        "mqtt": f"mqtt://127.0.0.1:{port}",
    }[protocol]
    connection, sensors = await fetch(plant_before_its_device, protocol, endpoint)
    roles = sorted(sensors)
    stored_until = (await fetch(readings, sensors[KNOWN]))[-1][0]

    stop = asyncio.Event()
    running = asyncio.create_task(bridge.run_bridge([connection], stop))
    feeder: asyncio.Task | None = None
    stop_device = None
    try:
        # The device is down: the connection says so, and the bridge keeps trying.
        await until(lambda: state_of(connection) is not None and state_of(connection).errors >= 3)
        down = await fetch(state_of, connection)
        down_text = await fetch(connection.status_text, down)
        logged = list(caplog.records)
        # The bridge's line on each try (other warnings of the bridge, e.g. SQLite's shared-cache test database
        # refusing a status write under load, are not tries).
        tries = [
            r
            for r in logged
            if r.name == "plant.connections.bridge" and r.msg.startswith("connection %s (%s)")
        ]

        write, stop_device = await start_device(protocol, port, roles, broker)
        feeder = asyncio.create_task(feed(write, roles))
        await until(
            lambda: all(len(readings(sensors[role])) >= 4 for role in roles if role != KNOWN)
            and len([r for r in readings(sensors[KNOWN]) if r[0] > stored_until]) >= 4,
            timeout=30,
        )
        up_text = await fetch(connection.status_text, await fetch(state_of, connection))
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        stop.set()
        await running
        if stop_device is not None:
            await stop_device()

    assert not down.connected and down.running
    assert down.last_error.startswith("not reachable: "), down.last_error  # stored as the client raised it
    # ... and shown in words (connectivity.error_words) on the site page and in the console.
    said = {
        "mqtt": f"The MQTT broker at 127.0.0.1:{port} refused the connection",
        "opcua": f"The OPC UA server at 127.0.0.1:{port} refused the connection",
        "modbus": f"The bridge could not connect to the Modbus device at 127.0.0.1:{port}",
    }[protocol]
    assert down_text.startswith(f"disconnected: {said}"), down_text
    assert len(tries) >= 3
    assert not [r for r in logged if r.exc_info or r.levelno >= logging.ERROR]  # no library traceback
    for record in tries:  # one plain line per try, no traceback
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert "not reachable: " in record.getMessage() and "\n" not in record.getMessage()
    assert up_text.startswith("connected"), up_text

    for role in roles:
        stored = await fetch(readings, sensors[role])
        if role == KNOWN:
            after = [q for ts, _, q in stored if ts > stored_until]
            assert after[0] & GAP, "readings stopped and resumed: the first one back ends a gap"
            assert not any(q & GAP for q in after[1:])
        else:
            assert stored, role
            assert not any(q & GAP for _, _, q in stored), (role, stored[:3])
