"""The whole loop through the plant's protocols, against real servers: a fault published over MQTT (Debian's
mosquitto) is stored by the bridge, scored by the champion, opens an alert, and the alert's state comes back
through write-back — a retained MQTT message on ``<prefix>/<site>/<asset>/alert``, the alarm coil and
severity register of a Modbus TCP device (pymodbus) and the alarm nodes of an OPC UA server (asyncua) —
and goes back to "normal" everywhere once the machine runs clean and the alert closes by itself.

The bridge runs in-process (plant.connections.bridge.run_bridge, as `manage.py bridge` runs it) against
the test database; scoring is the worker's `score_assets`, called once the readings are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt
import numpy as np
import orjson
import pytest
from django.db import OperationalError

from alerts.choices import AlertState
from alerts.models import Alert
from alerts.scoring import score_assets
from alerts.writeback import write_back_assets
from bench.protocol_latency import NOMINAL, pump_signals, wear
from bench.versions import vibration_version
from connectivity.writeback import SEVERITY_CODES
from detection.features import feature_names
from models_registry import cache
from plant.builders import make_asset, make_site
from plant.connections import bridge
from plant.models import Connection, ConnectionState, PointMapping, Reading
from plant.simulator_devices import (
    MODBUS_ALARM_COIL,
    MODBUS_SEVERITY_REGISTER,
    start_modbus_device,
    start_opcua_device,
)
from tests.brokers import free_port, mosquitto  # noqa: F401 (fixture)
from tests.plant.test_bridge import fetch

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "plant/vigil"
OPEN_THRESHOLD, CLEAR_THRESHOLD = 10.0, 5.0


@pytest.fixture(autouse=True)
def loop_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VIGIL_SCORING_ENQUEUE = False  # the test scores when the readings are stored
    settings.VIGIL_BRIDGE_STATUS_S = 0.5
    settings.VIGIL_BRIDGE_RETRY_CAP_S = 0.2
    settings.VIGIL_WRITEBACK_POLL_S = 0.05
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 3
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    cache.clear()
    write_back_assets.forget()  # the per-process cache outlives a test's rows
    yield
    write_back_assets.forget()
    cache.clear()


@pytest.fixture
def plant(mosquitto):  # noqa: F811
    """P-101 with a champion scoring its mean vibration, an MQTT connection reading its four sensors and
    writing alert states back, and Modbus / OPC UA write-back connections to devices on free ports."""
    site = make_site("north")
    asset = make_asset(site)
    sensors = {s.role.key: s for s in asset.sensors.select_related("role")}
    assert set(sensors) == set(NOMINAL)
    names = feature_names(sorted(sensors))
    background = np.abs(np.random.default_rng(3).normal(2.0, 0.5, size=(20, len(names))))
    vibration_version(
        asset.asset_type,
        names,
        name="pump-vib",
        open_threshold=OPEN_THRESHOLD,
        clear_threshold=CLEAR_THRESHOLD,
        background=background,
    )
    mqtt = Connection.objects.create(
        site=site,
        name="broker",
        endpoint=mosquitto.endpoint,
        interval_s=0.05,
        write_back=True,
        options={"qos": 1, "writeback_prefix": PREFIX},
    )
    PointMapping.objects.bulk_create(
        PointMapping(
            connection=mqtt,
            sensor=sensor,
            address={"topic": f"plant/{asset.tag}/{role}", "value_path": "v", "ts_path": "t"},
        )
        for role, sensor in sensors.items()
    )
    ports = {"modbus": free_port(), "opcua": free_port()}
    target = {"asset_tag": asset.tag}
    Connection.objects.create(
        site=site,
        name="plc",
        protocol="modbus",
        endpoint=f"modbus://127.0.0.1:{ports['modbus']}",
        interval_s=0.5,
        write_back=True,
        options={
            "write_targets": [
                target
                | {
                    "unit_id": 1,
                    "alarm_coil": MODBUS_ALARM_COIL,
                    "severity_register": MODBUS_SEVERITY_REGISTER,
                }
            ]
        },
    )
    node = f"ns=2;s={asset.tag}"
    Connection.objects.create(
        site=site,
        name="scada",
        protocol="opcua",
        endpoint=f"opc.tcp://127.0.0.1:{ports['opcua']}/vigil/",
        write_back=True,
        options={
            "write_targets": [
                target
                | {
                    "text_node": f"{node}.alert_text",
                    "severity_node": f"{node}.alert_severity",
                    "alarm_node": f"{node}.alarm",
                }
            ]
        },
    )
    return asset, ports, bridge.connections_to_run(site)


def readings(asset, start: float, seconds: int, vibration=None) -> list[tuple[str, bytes]]:
    """(topic, payload) of 1 Hz readings of every sensor of `asset` from `start` (bench.protocol_latency's
    pump signals: nominal with a little noise, the vibration following `vibration` of the time)."""
    t, values = pump_signals(start, seconds, vibration, seed=int(start) % 1000)
    return [
        (f"plant/{asset.tag}/{role}", orjson.dumps({"t": float(ts), "v": round(float(v), 4)}))
        for role, series in values.items()
        for ts, v in zip(t, series, strict=True)
    ]


async def until(condition, what: str, timeout: float = 20.0):
    """Wait until `condition()` (run in a thread with its own database connection) is true."""

    def check():
        try:
            return condition()
        except OperationalError:  # SQLite's shared-cache test database locks a table being written
            return None

    deadline = time.monotonic() + timeout
    while not (result := await fetch(check)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def device_until(read, expected, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {value!r}, expected {expected!r}, after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def next_state(client: aiomqtt.Client, state: str, timeout: float = 20.0) -> aiomqtt.Message:
    """The next write-back message whose state is `state` (earlier states of the asset are skipped)."""
    try:
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                if orjson.loads(message.payload)["state"] == state:
                    return message
    except TimeoutError:
        raise AssertionError(f"no write-back message with state {state!r} within {timeout:.0f} s") from None
    raise AssertionError("the subscription ended")


@contextlib.asynccontextmanager
async def running_bridge(connections):
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge(connections, stop))
    try:
        # Every client connected (the MQTT one's persistent session subscribed) before anything is sent.
        ids = [c.pk for c in connections]
        await until(
            lambda: ConnectionState.objects.filter(connection__in=ids, connected=True).count() == len(ids),
            "every connection connected",
        )
        await asyncio.sleep(0.2)
        yield task
    finally:
        stop.set()
        await task


async def publish(port: int, messages) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_a_fault_published_over_mqtt_opens_an_alert_whose_state_comes_back_to_the_plant(
    mosquitto,  # noqa: F811
    plant,
):
    asset, ports, connections = plant
    modbus = await start_modbus_device(ports["modbus"], tag=asset.tag)
    opcua = await start_opcua_device(ports["opcua"], tag=asset.tag)
    # Four minutes of history, then the bearing wears over two minutes and stays bad for one.
    start = float(int(time.time()) - 900)
    normal_s, wear_s, bad_s = 240, 120, 60
    fault_at = start + normal_s
    total = normal_s + wear_s + bad_s
    stored = lambda n: lambda: Reading.objects.filter(sensor__asset=asset).count() >= n  # noqa: E731
    try:
        async with (
            running_bridge(connections) as task,
            aiomqtt.Client("127.0.0.1", mosquitto.port) as hmi,
        ):
            await hmi.subscribe(f"{PREFIX}/{asset.site.slug}/{asset.tag}/alert", qos=1)
            await publish(
                mosquitto.port,
                readings(asset, start, total, wear(fault_at, fault_at + wear_s)),
            )
            await until(stored(4 * total), f"the bridge to store {4 * total} readings")
            assert not task.done()

            await fetch(score_assets, [asset.pk])
            alert = await fetch(Alert.objects.get, asset=asset)
            assert alert.state == AlertState.OPEN and alert.category == "machine_fault"
            code = SEVERITY_CODES[alert.severity]

            # MQTT: a retained message with the alert's state, severity and link.
            message = await next_state(hmi, "open")
            payload = orjson.loads(message.payload)
            assert payload["severity"] == alert.severity and payload["severity_code"] == code
            assert payload["alert_id"] == alert.pk and payload["link"].endswith(f"/alerts/{alert.pk}/")
            assert payload["text"].startswith(f"{asset.name} ") and payload["top_sensor"]
            # Modbus: the alarm coil on, the severity code in the register.
            await device_until(lambda: modbus.coil(MODBUS_ALARM_COIL), True, "Modbus alarm coil")
            await device_until(
                lambda: modbus.registers(MODBUS_SEVERITY_REGISTER), [code], "Modbus severity register"
            )
            # OPC UA: the alarm and severity nodes, and the text an HMI shows.
            await device_until(lambda: opcua.read("alarm"), True, "OPC UA alarm node")
            await device_until(lambda: opcua.read("alert_severity"), code, "OPC UA severity node")
            assert (await opcua.read("alert_text")).startswith(f"{asset.tag} ")

            # The bearing is replaced: three clean windows close the alert and the plant hears "normal".
            clean_from = start + total
            await publish(mosquitto.port, readings(asset, clean_from, 180))
            await until(stored(4 * (total + 180)), "the clean readings stored")
            await fetch(score_assets, [asset.pk])
            closed = await fetch(Alert.objects.get, pk=alert.pk)
            assert closed.state == AlertState.AUTO_CLOSED
            payload = orjson.loads((await next_state(hmi, "normal")).payload)
            assert payload["severity_code"] == 0 and "alert_id" not in payload
            await device_until(lambda: modbus.coil(MODBUS_ALARM_COIL), False, "Modbus alarm coil")
            await device_until(
                lambda: modbus.registers(MODBUS_SEVERITY_REGISTER), [0], "Modbus severity register"
            )
            await device_until(lambda: opcua.read("alarm"), False, "OPC UA alarm node")
            await device_until(lambda: opcua.read("alert_severity"), 0, "OPC UA severity node")
    finally:
        await modbus.stop()
        await opcua.stop()

    # A client that connects later (an HMI restarted) gets the asset's current state: retained.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(f"{PREFIX}/#", qos=1)
        async with asyncio.timeout(5):
            message = await anext(late.messages)
    assert message.retain and orjson.loads(message.payload)["state"] == "normal"
