"""The bridge picks up configuration changes while it runs (no restart of `manage.py bridge`): a mapping
added to a running connection, against a real mosquitto, restarts that connection alone and loses
nothing it had received; a disabled connection stops; a fixed invalid one starts."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from plant.connections import bridge
from plant.models import Connection, PointMapping, Reading, Sensor
from tests.brokers import mosquitto  # noqa: F401 (fixture)
from tests.plant.test_bridge import T, fetch, plant, publish, quiet, readings, state_of, until  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_reload(settings):
    settings.VIGIL_BRIDGE_RELOAD_S = 0.2


def add_mapping(connection: Connection, topic: str) -> Sensor:
    sensor = (
        Sensor.objects.filter(asset__site=connection.site).exclude(mappings__connection=connection).first()
    )
    PointMapping.objects.create(
        connection=connection, sensor=sensor, address={"topic": topic, "value_path": "v", "ts_path": "t"}
    )
    return sensor


async def test_a_mapping_added_while_the_bridge_runs_is_read_and_nothing_received_is_lost(mosquitto, plant):  # noqa: F811
    connection, (json_sensor, _) = plant
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge([connection], stop))
    try:
        await until(lambda: state_of(connection) is not None and state_of(connection).connected)
        await asyncio.sleep(0.2)  # subscribed
        first_start = (await fetch(state_of, connection)).started_at
        # Readings keep coming while the mapping changes: none may be lost across the restart.
        stream = asyncio.create_task(
            publish(
                mosquitto, [("plant/p101/json", orjson.dumps({"t": T + i, "v": 1.0})) for i in range(200)]
            )
        )
        new_sensor = await fetch(add_mapping, connection, "plant/new")
        await stream
        await until(lambda: state_of(connection).started_at != first_start and state_of(connection).connected)
        await asyncio.sleep(0.2)  # subscribed
        await publish(mosquitto, [("plant/new", orjson.dumps({"t": T, "v": 3.5}))])
        await until(lambda: readings(new_sensor) == [(T, 3.5, 0)])
        await until(lambda: len(readings(json_sensor)) == 200)
    finally:
        stop.set()
        await task
    assert await fetch(lambda: Reading.objects.filter(sensor=json_sensor).count()) == 200


async def test_a_disabled_connection_stops_and_a_fixed_one_starts(mosquitto, plant):  # noqa: F811
    connection, _ = plant
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge([connection], stop))
    try:
        await until(lambda: state_of(connection) is not None and state_of(connection).connected)
        await fetch(lambda: Connection.objects.filter(pk=connection.pk).update(enabled=False))
        await until(lambda: not state_of(connection).running and not state_of(connection).connected)
        # Re-enabled with a configuration the bridge refuses: it says why, without starting.
        await fetch(
            lambda: Connection.objects.filter(pk=connection.pk).update(enabled=True, options={"qos": 7})
        )
        await until(lambda: "qos" in state_of(connection).config_error)
        await fetch(lambda: Connection.objects.filter(pk=connection.pk).update(options={"qos": 1}))
        await until(lambda: state_of(connection).connected and not state_of(connection).config_error)
    finally:
        stop.set()
        await task
