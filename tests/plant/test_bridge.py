"""manage.py bridge's engine against a real mosquitto: published values become stored readings through
plant.ingest, bad input is counted on the connection's status, a database outage loses nothing, and a
connection whose configuration is invalid does not start and says why."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import aiomqtt
import orjson
import pytest
from asgiref.sync import sync_to_async
from django import db
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client

from connectivity import mqtt
from connectivity.mqtt import sparkplug_payload
from connectivity.points import PointError
from plant.builders import make_asset, make_site
from plant.choices import HealthStatus, QualityFlag
from plant.connections import bridge
from plant.health import sensor_health
from plant.models import Connection, ConnectionState, PointMapping, Reading, Sensor, WriteBack
from tests.brokers import amqtt_broker, mosquitto  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)
T = 1_767_600_000  # 2026-01-05T08:00:00Z


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.VIGIL_SCORING_ENQUEUE = False
    settings.VIGIL_BRIDGE_STATUS_S = 0.1
    settings.VIGIL_BRIDGE_RETRY_CAP_S = 0.2


@pytest.fixture
def plant(mosquitto):  # noqa: F811
    site = make_site("north")
    asset = make_asset(site)
    sensors = list(Sensor.objects.filter(asset=asset).order_by("key"))[:2]
    connection = Connection.objects.create(
        site=site, name="broker", endpoint=mosquitto.endpoint, interval_s=0.05, options={"qos": 1}
    )
    PointMapping.objects.create(
        connection=connection,
        sensor=sensors[0],
        address={"topic": "plant/+/json", "value_path": "v", "ts_path": "t"},
    )
    PointMapping.objects.create(
        connection=connection,
        sensor=sensors[1],
        address={"format": "sparkplug", "group": "north", "node": "edge", "device": "p101", "metric": "m"},
    )
    return connection, sensors


async def publish(broker, messages) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


@contextlib.asynccontextmanager
async def running_bridge(connection):
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_bridge([connection], stop))
    await until(
        lambda: state_of(connection) is not None
        and (state_of(connection).connected or state_of(connection).config_error)
    )
    await asyncio.sleep(0.2)  # subscribed
    try:
        yield
    finally:
        stop.set()
        await task


async def fetch(function, *args, **kwargs):
    """`function` run in a worker thread whose database connection is closed afterwards."""

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            db.connection.close()

    return await sync_to_async(call, thread_sensitive=False)()


def state_of(connection) -> ConnectionState | None:
    return ConnectionState.objects.filter(connection=connection).first()


async def until(condition, timeout: float = 15.0) -> None:
    def check() -> bool:
        try:
            return bool(condition())
        except OperationalError:  # SQLite's shared-cache test database locks a table being written
            return False

    async with asyncio.timeout(timeout):
        while not await fetch(check):
            await asyncio.sleep(0.05)


def readings(sensor) -> list[tuple[float, float, int]]:
    return [
        (r.ts.timestamp(), r.value, r.quality) for r in Reading.objects.filter(sensor=sensor).order_by("ts")
    ]


async def test_a_published_value_becomes_a_reading_with_its_sensor_time_and_quality(mosquitto, plant):  # noqa: F811
    connection, (json_sensor, sparkplug_sensor) = plant
    async with running_bridge(connection):
        await publish(
            mosquitto,
            [
                ("plant/p101/json", orjson.dumps({"t": T, "v": 42.5})),
                ("plant/p101/json", orjson.dumps({"t": T + 1, "v": 150.0})),  # above valid_max 100
                ("plant/p101/json", b"{oops"),
                ("plant/p101/json", orjson.dumps({"t": T + 2, "v": "NaN"})),
                ("spBv1.0/north/DBIRTH/edge/p101", sparkplug_payload([("m", 7, 1.0)], (T + 10) * 1000)),
                ("spBv1.0/north/DDATA/edge/p101", sparkplug_payload([(None, 7, 2.0)], (T + 11) * 1000)),
            ],
        )
        await until(lambda: len(readings(json_sensor)) == 2 and len(readings(sparkplug_sensor)) == 2)
        await until(lambda: state_of(connection).stored == 4 and state_of(connection).errors == 2)
    assert await fetch(readings, json_sensor) == [
        (T, 42.5, 0),
        (T + 1, 150.0, int(QualityFlag.OUT_OF_RANGE)),
    ]
    assert await fetch(readings, sparkplug_sensor) == [(T + 10, 1.0, 0), (T + 11, 2.0, 0)]
    state = await fetch(state_of, connection)
    # The six published messages and the bridge's own rebirth request to the Sparkplug node on connecting.
    assert state.messages == 7 and not state.running and not state.connected
    reasons = [e["reason"] for e in state.recent_errors]
    assert any("payload is not JSON" in r for r in reasons)
    assert any("value is not a finite number" in r for r in reasons)


async def test_readings_the_ingest_refuses_are_errors_on_the_status(mosquitto, plant):  # noqa: F811
    connection, (json_sensor, _) = plant
    async with running_bridge(connection):
        # 1900 is long before the ingest's oldest accepted reading.
        await publish(mosquitto, [("plant/p101/json", orjson.dumps({"t": -2208988800, "v": 1.0}))])
        await until(lambda: state_of(connection).rejected == 1)
    state = await fetch(state_of, connection)
    assert "timestamp out of range" in state.last_error and state.last_error.startswith(json_sensor.key)


async def test_a_sparkplug_death_marks_the_point_stale_until_it_sends_again(mosquitto, plant):  # noqa: F811
    connection, (_, sensor) = plant
    mapping = lambda: PointMapping.objects.get(connection=connection, sensor=sensor)  # noqa: E731
    async with running_bridge(connection):
        await publish(mosquitto, [("spBv1.0/north/DDEATH/edge/p101", sparkplug_payload([], T * 1000))])
        await until(lambda: mapping().stale_since is not None)
        await publish(
            mosquitto, [("spBv1.0/north/DBIRTH/edge/p101", sparkplug_payload([("m", 1, 3.0)], T * 1000))]
        )
        await until(lambda: mapping().stale_since is None)


async def test_a_database_outage_loses_no_message(mosquitto, plant, monkeypatch):  # noqa: F811
    connection, (json_sensor, _) = plant
    store = bridge.store_samples
    failures = {"left": 3}

    def flaky(*args):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("could not connect to server")
        return store(*args)

    monkeypatch.setattr(bridge, "store_samples", flaky)
    async with running_bridge(connection):
        await publish(
            mosquitto, [("plant/p101/json", orjson.dumps({"t": T + i, "v": float(i)})) for i in range(30)]
        )
        await until(lambda: len(readings(json_sensor)) == 30)
    assert failures["left"] == 0
    state = await fetch(state_of, connection)
    assert state.stored == 30 and any("database unavailable" in e["reason"] for e in state.recent_errors)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"endpoint": "http://broker"}, "endpoint must start with mqtt:// or mqtts://"),
        ({"options": {"qos": 5}}, "qos must be a whole number from 0 to 1"),
        (
            {"password_env": "VIGIL_TEST_UNSET_VARIABLE"},
            "environment variable VIGIL_TEST_UNSET_VARIABLE is not set",
        ),
        ({"protocol": "bacnet"}, "unknown protocol 'bacnet'"),
    ],
)
async def test_an_invalid_connection_does_not_start_and_says_why(plant, change, reason):
    connection, _ = plant
    await fetch(Connection.objects.filter(pk=connection.pk).update, **change)
    connection = await fetch(Connection.objects.select_related("site").get, pk=connection.pk)
    await bridge.run_bridge([connection], stop=_set_after(1.0))
    state = await fetch(state_of, connection)
    assert reason in state.config_error and not state.running


async def test_a_connection_without_mappings_does_not_start(plant):
    connection, _ = plant
    await fetch(PointMapping.objects.filter(connection=connection).delete)
    await bridge.run_bridge([connection], stop=_set_after(0.5))
    state = await fetch(state_of, connection)
    assert state.config_error == "no point mappings: import or add some"


def _set_after(seconds: float) -> asyncio.Event:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, event.set)
    return event


async def test_a_point_sending_ten_times_its_rate_is_reported_and_still_stored(mosquitto, plant, monkeypatch):  # noqa: F811
    connection, (json_sensor, _) = plant
    monkeypatch.setattr(bridge, "RATE_WINDOW_S", 1.0)
    async with running_bridge(connection):
        # 40 readings within about a second from a sensor expected once a second.
        await publish(
            mosquitto, [("plant/p101/json", orjson.dumps({"t": T + i / 40, "v": 1.0})) for i in range(40)]
        )
        await until(lambda: "more than 10× the expected 1/s" in (state_of(connection).last_error or ""))
        # History sent fast but at its own 1 s spacing (a backfill) is not too much.
        await publish(
            mosquitto, [("plant/p101/json", orjson.dumps({"t": T + 100 + i, "v": 1.0})) for i in range(60)]
        )
        await until(lambda: len(readings(json_sensor)) == 100)
        await asyncio.sleep(2.5)  # two more rate windows
    state = await fetch(state_of, connection)
    flagged = [e for e in state.recent_errors if "expected 1/s" in e["reason"]]
    assert len(flagged) == 1 and flagged[0]["reason"].startswith("40 readings over 1.0 s")
    assert len(await fetch(readings, json_sensor)) == 100


@pytest.fixture
def plant_on_amqtt(amqtt_broker, plant):  # noqa: F811
    connection, sensors = plant
    Connection.objects.filter(pk=connection.pk).update(endpoint=amqtt_broker.endpoint)
    return Connection.objects.select_related("site").get(pk=connection.pk), sensors


async def test_the_demo_broker_amqtt_carries_json_and_sparkplug_to_readings(amqtt_broker, plant_on_amqtt):  # noqa: F811
    """The embedded pure-Python broker of `make demo`, live (amqtt keeps no QoS 1 messages for an offline
    persistent session, unlike mosquitto: the demo's bridge is started before the simulator)."""
    connection, (json_sensor, sparkplug_sensor) = plant_on_amqtt
    async with running_bridge(connection):
        await publish(
            amqtt_broker,
            [
                ("plant/p101/json", orjson.dumps({"t": T, "v": 42.5})),
                ("plant/p101/json", b"[1, 2"),
                ("spBv1.0/north/DBIRTH/edge/p101", sparkplug_payload([("m", 7, 1.0)], (T + 10) * 1000)),
                ("spBv1.0/north/DDATA/edge/p101", sparkplug_payload([(None, 7, 2.0)], (T + 11) * 1000)),
            ],
        )
        await until(lambda: len(readings(json_sensor)) == 1 and len(readings(sparkplug_sensor)) == 2)
        await until(lambda: state_of(connection).errors == 1)
    assert await fetch(readings, json_sensor) == [(T, 42.5, 0)]


async def test_a_database_error_while_starting_does_not_end_the_connection(mosquitto, plant, monkeypatch):  # noqa: F811
    """Regression: the start's reads after `prepare` (stale marks, sample periods, the started-at status)
    were outside the wait for the database, so one failing ended the connection's runner for good."""
    connection, (json_sensor, _) = plant
    stale_keys = bridge._stale_keys
    failures = {"left": 2}

    def flaky(*args):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database table is locked")
        return stale_keys(*args)

    monkeypatch.setattr(bridge, "_stale_keys", flaky)
    async with running_bridge(connection):
        await publish(mosquitto, [("plant/p101/json", orjson.dumps({"t": T, "v": 1.0}))])
        await until(lambda: len(readings(json_sensor)) == 1)
    assert failures["left"] == 0


def with_one_state_to_write(connection, sensor) -> Connection:
    """The connection with write-back on and one alert state of the sensor's asset in its outbox."""
    Connection.objects.filter(pk=connection.pk).update(write_back=True)
    WriteBack.objects.create(
        connection=connection, asset=sensor.asset, payload={"asset": "p-101", "state": "open"}
    )
    return Connection.objects.select_related("site").get(pk=connection.pk)


async def test_write_back_goes_on_when_recording_a_failed_publish_fails_too(mosquitto, plant, monkeypatch):  # noqa: F811
    """Regression: when a publish failed and recording that failure failed too (the database away at the
    same moment), the write-back task ended silently and nothing was written back until a restart."""
    connection, (json_sensor, _) = plant

    connection = await fetch(with_one_state_to_write, connection, json_sensor)
    failures = {"publish": 1, "record": 1}
    write_back, mark_failed = mqtt.write_back, bridge._mark_failed

    async def broker_drops_once(config, take, confirm, status):
        if failures["publish"]:
            failures["publish"] -= 1
            await take()
            raise aiomqtt.MqttError("the broker went away")
        await write_back(config, take, confirm, status)

    def database_away_once(*args):
        if failures["record"]:
            failures["record"] -= 1
            raise OperationalError("could not connect to server")
        return mark_failed(*args)

    monkeypatch.setattr(mqtt, "write_back", broker_drops_once)
    monkeypatch.setattr(bridge, "_mark_failed", database_away_once)
    async with running_bridge(connection):
        await until(lambda: not WriteBack.objects.filter(published_at__isnull=True).exists())
    assert failures == {"publish": 0, "record": 0}
    # The failed publish is the last error, and history: it wrote back after it (the site page says so).
    state = await fetch(state_of, connection)
    assert state.last_error.startswith("write-back: MqttError") and state.written_at > state.last_error_at
    assert state.error_resolved() is not None


async def test_a_write_back_pass_the_device_refused_leaves_its_error_current(mosquitto, plant, monkeypatch):  # noqa: F811
    """A state the device refused is confirmed (it is not sent for ever) in the same pass that recorded the
    refusal: that confirmation is no proof of a clean write, so the error must not read as past."""
    connection, (json_sensor, _) = plant

    connection = await fetch(with_one_state_to_write, connection, json_sensor)

    async def device_refuses(config, take, confirm, status):
        states = await take()
        status.error(PointError("write refused: BadNotWritable", source="P101.Alarm"), time.time())
        await confirm([state.id for state in states])
        await asyncio.Event().wait()  # nothing more to write

    monkeypatch.setattr(mqtt, "write_back", device_refuses)
    async with running_bridge(connection):
        await until(lambda: not WriteBack.objects.filter(published_at__isnull=True).exists())
        await until(lambda: "write refused" in (getattr(state_of(connection), "last_error", "") or ""))
    state = await fetch(state_of, connection)
    assert state.written_at is None and state.error_resolved() is None


def site_row(connection, user) -> str:
    """The connection's row of its site page, as ``user`` sees it."""
    client = Client()
    client.force_login(user)
    body = client.get(connection.site.get_absolute_url()).content.decode()
    row = body[body.index(f">{connection.name}<") :]
    return row[: row.index("</tr>")]


async def test_a_sparkplug_nodes_unanswered_rebirths_read_as_past_once_it_is_born(
    mosquitto,  # noqa: F811
    plant,
    monkeypatch,
):
    # "no answer to N rebirth requests" is the node's error: before, nothing the connection did later said
    # it was over, so after the node was born the site page still read "last error 2 minutes ago: ... no
    # answer" as if the node were still silent.
    monkeypatch.setattr(mqtt, "REBIRTH_EVERY_S", 0.3)
    connection, _ = plant
    # A superuser (sees every site): the roles' groups do not survive the flush between transactional tests.
    engineer = await fetch(User.objects.create_superuser, "enzo", password="x")
    async with running_bridge(connection):
        await until(lambda: "no answer to" in state_of(connection).last_error)
        current = await fetch(state_of, connection)
        assert current.last_error_resolved_by == "birth" and current.error_resolved() is None
        # The page is read while the bridge writes its status: on SQLite's shared-cache test database a read
        # can meet a locked table, which until() retries.
        await until(lambda: "connection-last-error" in site_row(connection, engineer))
        born = time.time()
        await publish(mosquitto, [("spBv1.0/north/NBIRTH/edge", sparkplug_payload([], 2_000))])
        await until(lambda: state_of(connection).error_resolved() is not None)
    state = await fetch(state_of, connection)
    verb, at = state.error_resolved()
    assert verb == "saw the node born" and born <= at.timestamp() <= time.time()
    assert re.match(r"spBv1\.0/north/edge: no answer to \d+ rebirth requests? since ", state.last_error)
    row = await fetch(site_row, connection, engineer)
    assert "connection-past-error" in row and "before it saw the node born" in row
    assert "connection-last-error" not in row


async def test_a_frozen_sparkplug_metric_is_stored_held_and_flagged_stuck_and_a_dead_node_is_a_gap(
    mosquitto,  # noqa: F811
    plant,
    settings,
):
    # Sparkplug B reports by exception: before sample-and-hold a frozen metric stored its birth value and
    # then nothing, and the sensor's health read "No recent data" (a link problem) instead of stuck.
    connection, (_, sensor) = plant
    address = {
        "format": "sparkplug",
        "group": "north",
        "node": "edge",
        "metric": "m",
        "sampling_interval_ms": "100",
    }
    await fetch(lambda: Sensor.objects.filter(pk=sensor.pk).update(sample_period_s=0.1))
    await fetch(lambda: PointMapping.objects.filter(sensor=sensor).update(address=address))
    stuck_after = settings.VIGIL_QUALITY_STUCK_SAMPLES
    async with running_bridge(connection):
        born = time.time()
        await publish(
            mosquitto, [("spBv1.0/north/NBIRTH/edge", sparkplug_payload([("m", 1, 5.25)], int(born * 1000)))]
        )
        born = int(born * 1000) / 1000 - 1e-3  # the birth's time in ms; readings are stored to the µs
        await until(lambda: len(readings(sensor)) >= stuck_after + 5)
        held = await fetch(readings, sensor)
        health = (await fetch(sensor_health, [sensor]))[sensor.pk]

        await publish(
            mosquitto, [("spBv1.0/north/NDEATH/edge", sparkplug_payload([], int(time.time() * 1000)))]
        )
        dead = time.time()
        await asyncio.sleep(2.0)  # the node is dead: nothing may be held for this time
        back = time.time()
        await publish(
            mosquitto, [("spBv1.0/north/NBIRTH/edge", sparkplug_payload([("m", 1, 5.25)], int(back * 1000)))]
        )
        back = int(back * 1000) / 1000 - 1e-3
        await until(lambda: any(r[0] >= back for r in readings(sensor)))
    assert {value for _, value, _ in held} == {5.25} and held[0][0] >= born
    steps = [round((ts - held[0][0]) * 10, 2) for ts, _, _ in held[1:]]  # held from the birth's arrival on
    assert steps[0] in (1.0, 2.0) and steps == [steps[0] + i for i in range(len(steps))]
    flags = [quality for _, _, quality in held]
    assert all(q & QualityFlag.STUCK for q in flags[stuck_after - 1 :])  # the ingest's existing stuck rule
    assert not any(q & QualityFlag.GAP for q in flags)
    assert health.status == HealthStatus.BAD and health.flag_counts[QualityFlag.STUCK.label]
    after = [r for r in await fetch(readings, sensor) if r[0] > held[-1][0]]
    # The dead node is a gap: nothing held for it (a reading confirmed as the death arrived may be stored
    # up to a sampling interval, plus the bridge's delay in taking the message, before it).
    assert not [r for r in after if dead + 0.3 <= r[0] < back]
    first_back = next(r for r in after if r[0] >= back)
    assert first_back[2] & QualityFlag.GAP
