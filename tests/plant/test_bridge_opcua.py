"""The bridge against a real asyncua server on loopback: the source's status codes become quality flags of
the stored readings (never values of their own), shown on the asset chart and the connection's status."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua

from bench.live_server import free_port
from connectivity.hold import SampleHold
from connectivity.mapping_csv import read_mapping_csv
from connectivity.points import Sample, SampleStatus
from detection.features import EXCLUDED_QUALITY
from plant.builders import make_asset, make_site
from plant.charts import asset_figure
from plant.choices import HealthStatus, QualityFlag
from plant.models import Connection, PointMapping, Sensor
from plant.forms import TimeRange
from plant.health import sensor_health
from plant.connections import bridge
from plant.connections.mappings import export_csv
from plant.simulator_devices import start_opcua_device
from tests.plant.test_bridge import T, fetch, quiet, readings, running_bridge, state_of, until  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
SOURCE = int(QualityFlag.SOURCE_UNCERTAIN | QualityFlag.SOURCE_BAD)


@pytest.fixture
async def device():
    dev = await start_opcua_device(free_port())
    yield dev
    await dev.stop()


def opcua_plant(device) -> tuple[Connection, Sensor]:
    site = make_site("north")
    sensor = Sensor.objects.get(asset=make_asset(site), role__key="pressure")
    connection = Connection.objects.create(
        site=site,
        name="plc",
        protocol="opcua",
        endpoint=device.endpoint,
        interval_s=0.1,
        options={"publishing_interval_ms": 50, "flush_ms": 50},
    )
    PointMapping.objects.create(
        connection=connection,
        sensor=sensor,
        address={"node_id": device.node_id("pressure"), "sampling_interval_ms": "50"},
    )
    return connection, sensor


def test_a_point_without_a_sampling_interval_is_held_at_its_sensors_sample_period():
    """Regression: a mapping without sampling_interval_ms held every point every 1000 ms whatever its
    sensor's sample period (a 60 s temperature got 60x its data, a 0.1 s one looked gappy). The bridge now
    holds it at the sensor's period; a value in the mapping still wins, for OPC UA and Sparkplug B alike."""
    site = make_site("north")
    asset = make_asset(site)
    slow = Sensor.objects.get(asset=asset, role__key="pressure")
    explicit = Sensor.objects.get(asset=asset, role__key="vibration")
    Sensor.objects.filter(pk=slow.pk).update(sample_period_s=5.0)
    Sensor.objects.filter(pk=explicit.pk).update(sample_period_s=5.0)
    opc = Connection.objects.create(
        site=site, name="plc", protocol="opcua", endpoint="opc.tcp://127.0.0.1:4840"
    )
    PointMapping.objects.create(connection=opc, sensor=slow, address={"node_id": "ns=2;s=P.pressure"})
    PointMapping.objects.create(
        connection=opc,
        sensor=explicit,
        address={"node_id": "ns=2;s=P.vibration", "sampling_interval_ms": "250"},
    )
    spb = Connection.objects.create(site=site, name="edge", protocol="mqtt", endpoint="mqtt://127.0.0.1:1883")
    sparkplug = {"format": "sparkplug", "group": "plant", "node": "edge1"}
    PointMapping.objects.create(connection=spb, sensor=slow, address=sparkplug | {"metric": "pressure"})

    _config, points = bridge.prepare(opc)
    assert points[slow.key].sampling_interval_ms == 5000.0  # was 1000
    assert points[explicit.key].sampling_interval_ms == 250.0  # the mapping's own value wins
    assert bridge.prepare(spb)[1][slow.key].sampling_interval_ms == 5000.0
    # The edge agent's points file (the export) holds at the same rates, read by the agent's own reader.
    for connection in (opc, spb):
        edge = read_mapping_csv(connection.protocol, export_csv(connection).encode())
        assert edge.errors == [] and edge.rows[slow.key][2].sampling_interval_ms == 5000.0
    assert (
        read_mapping_csv("opcua", export_csv(opc).encode()).rows[explicit.key][2].sampling_interval_ms
        == 250.0
    )

    # Held every 5 s: a frozen value at t=100 on a source vouching for itself up to t=130.
    held: list[float] = []
    hold = SampleHold(lambda sample, _now: held.append(sample.ts), clock=lambda: 130.0)
    point = points[slow.key]
    hold.track(slow.key, point.sampling_interval_ms / 1000, Sample(slow.key, 100.0, 2.5), since=100.0)
    hold.confirm(130.0, since=100.0)
    assert held == [105.0, 110.0, 115.0, 120.0, 125.0]


async def test_an_uncertain_status_is_a_flag_and_a_bad_one_a_counted_gap_with_the_point_marked_stale(device):
    connection, sensor = await fetch(opcua_plant, device)
    mapping = lambda: PointMapping.objects.get(connection=connection, sensor=sensor)  # noqa: E731
    async with running_bridge(connection):
        await until(lambda: readings(sensor))  # the catch-up read
        now = float(int(time.time())) + 1
        # The times written (the values held between them, on the 50 ms grid, are not this test's concern).
        written = {now + i for i in range(5)}
        # One change per sampling interval (50 ms), as a device's values come.
        await device.set("pressure", 5.5, ts=now)
        await asyncio.sleep(0.2)
        await device.set("pressure", 6.5, ts=now + 1, code=ua.StatusCodes.UncertainLastUsableValue)
        await asyncio.sleep(0.2)
        # The server drops the value of a Bad status (OPC UA Part 4, 7.7.1): nothing to store, and no
        # value is invented for it.
        await device.set("pressure", 7.5, ts=now + 2, code=ua.StatusCodes.BadSensorFailure)
        await until(lambda: mapping().stale_since is not None)
        await device.variables["pressure"].write_value(
            ua.DataValue(
                ua.Variant(),
                StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication),
                SourceTimestamp=datetime.fromtimestamp(now + 3, UTC),
            )
        )
        await asyncio.sleep(0.2)
        await device.set("pressure", 8.5, ts=now + 4)
        await until(lambda: len([r for r in readings(sensor) if r[0] in written]) == 3)
        await until(lambda: state_of(connection).rejected == 2 and mapping().stale_since is None)
    stored = [(ts, value, quality & SOURCE) for ts, value, quality in await fetch(readings, sensor)]
    assert [r for r in stored if r[0] in written] == [
        (now, 5.5, 0),
        (now + 1, 6.5, int(QualityFlag.SOURCE_UNCERTAIN)),
        (now + 4, 8.5, 0),
    ]
    state = await fetch(state_of, connection)
    reasons = [e["reason"] for e in state.recent_errors]
    assert "stored flagged: the source marks the value uncertain" in reasons
    assert reasons.count("the source's status is Bad and it sent no value: the point is marked stale") == 2

    moment = datetime.fromtimestamp(now, UTC)
    span = TimeRange(moment - timedelta(minutes=1), moment + timedelta(minutes=1), "1h")
    figure = await fetch(asset_figure, [sensor], span)
    assert f"{sensor.key}: source uncertain" in {trace["name"] for trace in figure["data"]}


def test_a_bad_value_a_source_still_sends_is_stored_flagged_and_left_out_of_features():
    site = make_site("north")
    sensor = Sensor.objects.get(asset=make_asset(site), role__key="pressure")
    connection = Connection.objects.create(
        site=site, name="plc", protocol="opcua", endpoint="opc.tcp://x:4840"
    )
    samples = [
        Sample(sensor.key, T, 5.0),
        Sample(sensor.key, T + 1, 6.0, SampleStatus.UNCERTAIN),
        Sample(sensor.key, T + 2, 99.0, SampleStatus.BAD),  # a server that keeps the raw value
    ]
    stored = bridge.store_samples(connection, samples, set())
    assert stored.accepted == 3 and stored.rejected == []
    assert [(ts, value, quality & SOURCE) for ts, value, quality in readings(sensor)] == [
        (T, 5.0, 0),
        (T + 1, 6.0, int(QualityFlag.SOURCE_UNCERTAIN)),
        (T + 2, 99.0, int(QualityFlag.SOURCE_BAD)),
    ]
    assert EXCLUDED_QUALITY & QualityFlag.SOURCE_BAD and not EXCLUDED_QUALITY & QualityFlag.SOURCE_UNCERTAIN


def test_a_held_value_carrying_on_its_own_reading_is_no_gap_in_any_batch_and_one_after_others_is():
    site = make_site("north")
    asset = make_asset(site)
    steady, restarted = Sensor.objects.filter(asset=asset).order_by("key")[:2]
    connection = Connection.objects.create(
        site=site, name="plc", protocol="opcua", endpoint="opc.tcp://x:4840"
    )
    key = steady.key
    # The catch-up reading in one batch, the held ones carrying it on in the next (period 1 s, 30 s later).
    bridge.store_samples(connection, [Sample(key, T, 4.0)], set())
    bridge.store_samples(connection, [Sample(key, T + 30, 4.0, continues=T), Sample(key, T + 31, 4.0)], set())
    assert [q & QualityFlag.GAP for _, _, q in readings(steady)] == [0, 0, 0]
    # A point read again after an outage: its value's own reading is not the one before the held one.
    other = restarted.key
    bridge.store_samples(connection, [Sample(other, T, 4.0), Sample(other, T + 1, 4.0)], set())
    bridge.store_samples(connection, [Sample(other, T, 4.0), Sample(other, T + 30, 4.0, continues=T)], set())
    assert [q & QualityFlag.GAP for _, _, q in readings(restarted)] == [0, 0, int(QualityFlag.GAP)]


async def test_a_frozen_value_on_a_live_server_is_stored_held_and_flagged_stuck_and_an_outage_stays_a_gap(
    device, settings
):
    # OPC UA reports changes only: before sample-and-hold a frozen sensor stored nothing, and its health
    # read "No recent data" (a link problem) instead of a stuck sensor.
    connection, sensor = await fetch(opcua_plant, device)
    await fetch(lambda: Sensor.objects.filter(pk=sensor.pk).update(sample_period_s=0.1))
    await fetch(
        lambda: PointMapping.objects.filter(sensor=sensor).update(
            address={"node_id": device.node_id("pressure"), "sampling_interval_ms": "100"}
        )
    )
    stuck_after = settings.VIGIL_QUALITY_STUCK_SAMPLES
    port = int(device.endpoint.rsplit(":", 1)[1].split("/")[0])
    async with running_bridge(connection):
        await until(lambda: readings(sensor))  # the catch-up read
        frozen = time.time()
        await device.set("pressure", 5.25, ts=frozen)
        await until(lambda: len([r for r in readings(sensor) if r[0] > frozen - 1e-3]) >= stuck_after + 5)
        held = [r for r in await fetch(readings, sensor) if r[0] > frozen - 1e-3]  # stored to the µs
        health = (await fetch(sensor_health, [sensor]))[sensor.pk]

        await device.stop()
        stopped = time.time()  # the server answers until its stop returns
        await asyncio.sleep(2.0)  # the server is away: nothing may be held for this time
        restarted = await start_opcua_device(port)
        try:
            back = time.time()
            await restarted.set("pressure", 5.25, ts=back)
            back -= 1e-3  # readings are stored to the microsecond
            await until(lambda: any(r[0] >= back for r in readings(sensor)))
        finally:
            await restarted.stop()
    assert {value for _, value, _ in held} == {5.25}
    assert [round(ts - frozen, 3) for ts, _, _ in held[:5]] == [0.0, 0.1, 0.2, 0.3, 0.4]
    flags = [quality for _, _, quality in held]
    assert all(q & QualityFlag.STUCK for q in flags[stuck_after - 1 :])  # the existing stuck rule
    assert not any(q & QualityFlag.GAP for q in flags)
    assert health.status == HealthStatus.BAD and health.flag_counts[QualityFlag.STUCK.label]
    after = [r for r in await fetch(readings, sensor) if r[0] > held[-1][0]]
    assert not [r for r in after if stopped <= r[0] < back]  # the outage is a gap: no held values in it
    first_back = next(r for r in after if r[0] >= back)
    assert first_back[2] & QualityFlag.GAP


async def test_a_value_steady_since_before_the_bridge_connected_is_no_gap_and_an_outage_still_is():
    # A subscription reports changes only: a value steady since before the bridge connected has its
    # catch-up read at its old source time and then held values from the connection on. The second
    # reading was flagged "after gap" (a false data gap on every steady tag at every connect); the server
    # stated the value current since its own time, so the held value carries it on. An outage of the
    # session is still a gap.
    steady_since = time.time() - 30.0
    port = free_port()
    device = await start_opcua_device(port, initial={"pressure": 4.0}, initial_ts=steady_since)
    try:
        connection, sensor = await fetch(opcua_plant, device)
        await fetch(lambda: Sensor.objects.filter(pk=sensor.pk).update(sample_period_s=0.1))
        await fetch(
            lambda: PointMapping.objects.filter(sensor=sensor).update(
                address={"node_id": device.node_id("pressure"), "sampling_interval_ms": "100"}
            )
        )
        async with running_bridge(connection):
            await until(lambda: len(readings(sensor)) >= 10)
            first = await fetch(readings, sensor)
            await device.stop()
            stopped = time.time()
            await asyncio.sleep(2.0)  # the server is away: a gap
            # Back with the same value and source time, as a restarted gateway serving an unchanged PLC.
            device = await start_opcua_device(port, initial={"pressure": 4.0}, initial_ts=steady_since)
            await until(lambda: any(r[0] > stopped + 2.0 for r in readings(sensor)))
    finally:
        await device.stop()
    assert round(first[0][0] - steady_since, 3) == 0.0 and first[1][0] - steady_since > 25.0
    assert {value for _, value, _ in first} == {4.0}
    assert not any(quality & QualityFlag.GAP for _, _, quality in first)  # the second one was flagged
    after = [r for r in await fetch(readings, sensor) if r[0] > stopped]
    assert not [r for r in after if r[0] < stopped + 2.0]  # nothing made up for the outage
    assert after[0][2] & QualityFlag.GAP  # its end is a gap
    assert not any(quality & QualityFlag.GAP for _, _, quality in after[1:])
