"""The OPC UA client against a real asyncua server on loopback."""

from __future__ import annotations

import asyncio
import math
import re
import time

import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.internal_subscription import InternalSubscription
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectivity import opcua
from connectivity.opcua import (
    OpcUaConfig,
    OpcUaPoint,
    OpcUaWriteTarget,
    SampleBatcher,
    SampleHold,
    parse_point,
)
from connectivity.points import ConnectionStatus, PointError, Sample, SampleStatus
from connectivity.writeback import AlertState
from plant.simulator_devices import start_opcua_device
from tests.connectivity.ot_support import Collector, until
from bench.live_server import free_port


@pytest.fixture
async def device():
    dev = await start_opcua_device(free_port())
    yield dev
    await dev.stop()


def cfg_for(dev, **options) -> OpcUaConfig:
    options.setdefault("batch_seconds", 0.05)
    options.setdefault("publishing_interval_ms", 50)
    return OpcUaConfig(dev.endpoint, **options)


def points_for(dev, *roles: str, interval: float = 50) -> list[OpcUaPoint]:
    return [OpcUaPoint(f"{dev.tag}.{role}", dev.node_id(role), interval) for role in roles]


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_value_written_on_the_server_becomes_a_sample_with_its_point_and_source_time(device):
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(
        opcua.run(cfg_for(device), points_for(device, "vibration", "flow"), sink, status)
    )
    try:
        await until(lambda: len(sink.samples) >= 2, what="the catch-up samples")
        assert status.connected
        source_ts = time.time() - 30.0  # the device's clock, not the time of receipt
        await device.set("vibration", 4.25, ts=source_ts)
        await until(lambda: any(s.value == 4.25 for s in sink.samples), what="the written value")
    finally:
        await stop(task)
    assert (
        Sample("P-101.vibration", pytest.approx(source_ts, abs=1e-3), 4.25, SampleStatus.GOOD) in sink.samples
    )
    assert {s.point for s in sink.samples} == {"P-101.vibration", "P-101.flow"}
    assert status.samples == len(sink.samples) and status.errors == 0
    assert not status.connected


async def test_uncertain_values_are_kept_flagged_and_bad_values_carry_no_value(device):
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(opcua.run(cfg_for(device), points_for(device, "pressure"), sink, status))
    try:
        await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
        now = time.time()
        await device.set("pressure", 5.5, ts=now, code=ua.StatusCodes.UncertainLastUsableValue)
        await device.set("pressure", 9.9, ts=now + 1, code=ua.StatusCodes.BadSensorFailure)
        await until(lambda: len(sink.samples) >= 3, what="both values")
    finally:
        await stop(task)
    # The values written (the samples held between them left out: the sample-and-hold tests' concern).
    written = [s for s in sink.samples if min(abs(s.ts - now), abs(s.ts - now - 1)) < 1e-3]
    assert written[-2:] == [
        Sample("P-101.pressure", pytest.approx(now, abs=1e-3), 5.5, SampleStatus.UNCERTAIN),
        Sample("P-101.pressure", pytest.approx(now + 1, abs=1e-3), None, SampleStatus.BAD),
    ]


async def test_every_value_between_two_publishes_arrives_in_order(device):
    sink, status = Collector(), ConnectionStatus()
    cfg = cfg_for(device, publishing_interval_ms=1000)
    task = asyncio.create_task(opcua.run(cfg, points_for(device, "flow", interval=50), sink, status))
    try:
        await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
        start = time.time()
        for i in range(8):  # within one publishing interval: the server must queue them all
            await device.set("flow", 100.0 + i, ts=start + i)
        await until(lambda: sink.samples[-1].value == 107.0, what="the last value")
    finally:
        await stop(task)
    assert [s.value for s in sink.samples[-8:]] == [100.0 + i for i in range(8)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinite_values_are_point_errors_and_the_stream_goes_on(device, bad):
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(opcua.run(cfg_for(device), points_for(device, "current"), sink, status))
    try:
        await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
        await device.set("current", bad)
        await until(lambda: status.errors >= 1, what="the error")
        await device.set("current", 12.0)
        await until(lambda: sink.samples[-1].value == 12.0, what="the next value")
    finally:
        await stop(task)
    assert status.recent_errors == [
        PointError(f"not a finite number: {bad!r}", "P-101.current", device.node_id("current"))
    ]
    assert all(s.value is None or math.isfinite(s.value) for s in sink.samples)


async def test_an_unknown_node_is_an_error_of_its_point_and_the_others_run(device):
    sink, status = Collector(), ConnectionStatus()
    missing = OpcUaPoint("P-101.ghost", "ns=2;s=P-101.ghost")
    task = asyncio.create_task(
        opcua.run(cfg_for(device), [missing, *points_for(device, "temperature")], sink, status)
    )
    try:
        await until(lambda: len(sink.samples) >= 1, what="the known node's sample")
        await device.set("temperature", 61.0)
        await until(lambda: sink.samples[-1].value == 61.0, what="the known node's value")
    finally:
        await stop(task)
    assert status.errors == 1
    assert status.recent_errors[0] == PointError(
        "not subscribed: BadNodeIdUnknown", "P-101.ghost", "ns=2;s=P-101.ghost"
    )
    assert {s.point for s in sink.samples} == {"P-101.temperature"}


async def test_a_stopped_server_ends_run_and_the_catch_up_read_after_a_restart_leaves_no_gap(
    device, monkeypatch
):
    port = int(device.endpoint.rsplit(":", 1)[1].split("/")[0])
    cfg = cfg_for(device, watchdog_s=0.2)
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(opcua.run(cfg, points_for(device, "flow"), sink, status))
    await until(lambda: len(sink.samples) >= 1, what="the first sample")
    await device.stop()
    with pytest.raises(ConnectionError, match="lost"):
        await asyncio.wait_for(task, 10)
    assert not status.connected

    restarted = await start_opcua_device(port)
    try:
        written_ts = time.time() - 5.0  # written while the client was away
        await restarted.set("flow", 77.0, ts=written_ts)
        # Subscriptions give no guarantee that a new monitored item reports the value it finds; with its
        # notifications ignored, only the catch-up read can bring this value in.
        monkeypatch.setattr(opcua._Handler, "datachange_notification", lambda self, node, val, data: None)
        again = asyncio.create_task(opcua.run(cfg, points_for(restarted, "flow"), sink, status))
        try:
            await until(lambda: sink.samples[-1].value == 77.0, timeout=5, what="the catch-up value")
            assert status.connected
        finally:
            await stop(again)
    finally:
        await restarted.stop()
    assert sink.samples[-1] == Sample(
        "P-101.flow", pytest.approx(written_ts, abs=1e-3), 77.0, SampleStatus.GOOD
    )


def _held(sink: Collector, point: str, written: float) -> list[Sample]:
    """The samples of ``point`` after the one written at ``written`` (OPC UA keeps its time to 100 ns)."""
    return [s for s in sink.samples if s.point == point and s.ts > written + 1e-3]


async def test_a_value_that_does_not_change_is_held_at_its_sampling_interval_with_its_status(device):
    # A data-change subscription reports changes only: a frozen sensor would send nothing at all.
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(
        opcua.run(cfg_for(device), points_for(device, "flow", interval=100), sink, status)
    )
    try:
        await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
        written = time.time()
        await device.set("flow", 42.5, ts=written, code=ua.StatusCodes.UncertainLastUsableValue)
        await until(lambda: len(_held(sink, "P-101.flow", written)) >= 15, timeout=10, what="15 held samples")
        assert status.connected
        messages, until_now = status.messages, time.time()
    finally:
        await stop(task)
    held = _held(sink, "P-101.flow", written)
    assert {(s.value, s.status) for s in held} == {(42.5, SampleStatus.UNCERTAIN)}
    # On the grid of the value's own time, one per sampling interval, none ahead of the client's clock.
    assert [s.ts - written for s in held[:15]] == pytest.approx([0.1 * k for k in range(1, 16)], abs=1e-5)
    assert held[-1].ts <= until_now
    # Held samples are no messages from the server: those were the catch-up read, the item's first
    # notification and the change.
    assert messages == 3


async def test_a_stopped_server_ends_the_held_values_so_the_outage_is_a_gap(device):
    sink, status = Collector(), ConnectionStatus()
    cfg = cfg_for(device, watchdog_s=0.2)
    task = asyncio.create_task(opcua.run(cfg, points_for(device, "flow", interval=100), sink, status))
    await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
    written = time.time()
    await device.set("flow", 7.0, ts=written)
    await until(lambda: len(_held(sink, "P-101.flow", written)) >= 5, timeout=10, what="held samples")
    await device.stop()
    stopped = time.time()  # the server answers until its stop returns
    with pytest.raises(ConnectionError, match="lost"):
        await asyncio.wait_for(task, 10)
    await asyncio.sleep(0.5)
    assert max(s.ts for s in sink.samples) < stopped  # nothing held for the time the server was away


async def test_when_the_keep_alives_stop_on_a_live_session_nothing_more_is_held_and_run_ends(
    device, monkeypatch
):
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(
        opcua.run(cfg_for(device), points_for(device, "flow", interval=100), sink, status)
    )
    await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
    written = time.time()
    await device.set("flow", 3.0, ts=written)
    await until(lambda: len(_held(sink, "P-101.flow", written)) >= 5, timeout=10, what="held samples")
    silenced = time.time()

    # The server stops answering publish requests (no data, no keep-alive); its session and reads still work.
    async def silent(self, requestdata=None) -> bool:
        return False

    monkeypatch.setattr(InternalSubscription, "publish_results", silent)
    with pytest.raises(ConnectionError, match="no publish response"):
        await asyncio.wait_for(task, 10)
    assert max(s.ts for s in sink.samples) < silenced
    assert await device.read("flow") == 3.0  # the server itself was up all along


async def test_held_values_cover_only_the_time_the_server_vouched_for():
    sink, status = Collector(), ConnectionStatus()
    clock = [107.4]
    batcher = SampleBatcher(sink, status, size=1000, seconds=1)
    hold = SampleHold(batcher.put, clock=lambda: clock[0])
    a, b = OpcUaPoint("a", "ns=2;s=a", 1000), OpcUaPoint("b", "ns=2;s=b", 500)
    hold.track(
        a.point, a.sampling_interval_ms / 1000, Sample("a", 100.0, 1.5, SampleStatus.BAD)
    )  # a Bad status with its value: held as sent
    hold.track(b.point, b.sampling_interval_ms / 1000, Sample("b", 103.2, 4.0))
    # Answers without a missed keep-alive since 104 (the connection's first), the last at 107: from after
    # 104 up to 107 less the sampling interval, on the grid of each value's own time.
    assert hold.confirm(107.0, since=104.0) == 2 + 5
    assert hold.confirm(107.0, since=104.0) == 0  # the same answer again: nothing new
    # A change, arriving 0.5 s after its source time: the value held until now is emitted up to the new
    # one's time (the server vouched for it), and the new one is held 0.5 s further behind the answers.
    hold.track(b.point, b.sampling_interval_ms / 1000, Sample("b", 106.9, 4.5), since=104.0)
    # A keep-alive was missed: answers again from 109.5 on. The time in between is not filled in.
    assert hold.confirm(110.0, since=109.5) == 0
    assert hold.confirm(111.0, since=109.5) == 1 + 1
    await batcher.flush()
    assert [s for s in sink.samples if s.point == "a"] == [
        Sample("a", ts, 1.5, SampleStatus.BAD) for ts in (105.0, 106.0, 110.0)
    ]
    held_b = [(s.ts, s.value) for s in sink.samples if s.point == "b"]
    assert held_b == pytest.approx(
        [(ts, 4.0) for ts in (104.2, 104.7, 105.2, 105.7, 106.2, 106.7)] + [(109.9, 4.5)]
    )
    hold.track(
        a.point, a.sampling_interval_ms / 1000, Sample("a", 111.5, None, SampleStatus.BAD)
    )  # no value: nothing to hold
    hold.track(
        b.point, b.sampling_interval_ms / 1000, PointError("not a finite number: nan", "b", "ns=2;s=b")
    )
    assert hold.confirm(120.0, since=109.5) == 0
    assert status.messages == 0  # held samples are no messages from the server


def test_a_value_stated_current_carries_on_from_its_own_time_only_across_an_unbroken_span():
    """The catch-up read states a value current since its source time: its first held sample continues
    that reading (ingest flags no gap between them) when the answers ran on from the read; after a
    break, and for every later held sample, no such statement."""
    held: list[Sample] = []
    hold = SampleHold(lambda sample, _now: held.append(sample), clock=lambda: 103.0)
    hold.track("a", 0.5, Sample("a", 10.2, 4.0), stated_at=100.0)
    hold.track("b", 0.5, Sample("b", 10.2, 4.0), stated_at=100.0)
    hold.track("b", 0.5, Sample("b", 10.2, 4.0))  # the subscription's first notification: same value
    hold.confirm(101.5, since=100.0)
    assert [(s.ts, s.continues) for s in held if s.point == "a"] == [(100.2, 10.2), (100.7, None)]
    assert [s.continues for s in held if s.point == "b"] == [10.2, None]
    held.clear()
    hold.track("c", 0.5, Sample("c", 10.2, 4.0), stated_at=100.0)
    hold.confirm(103.0, since=101.0)  # no answer from the read until 101: a break
    assert [s.continues for s in held if s.point == "c"] == [None] * 3


async def test_a_refused_connection_raises_without_a_hang():
    cfg = OpcUaConfig(f"opc.tcp://127.0.0.1:{free_port()}/", timeout_s=1.0)
    with pytest.raises((OSError, TimeoutError)):
        await asyncio.wait_for(opcua.run(cfg, [], Collector(), ConnectionStatus()), 5)


async def test_batches_are_bounded_in_size_and_time():
    sink, status = Collector(), ConnectionStatus()
    batcher = SampleBatcher(sink, status, size=1000, seconds=0.05)
    flusher = asyncio.create_task(batcher.run())
    try:
        for i in range(2500):
            batcher.add(Sample("p", float(i), float(i)), now=0.0)
        await until(lambda: status.samples == 2500, what="every sample flushed")
    finally:
        flusher.cancel()
    assert [len(b) for b in sink.batches] == [1000, 1000, 500]
    batcher.add(Sample("p", 2499.0, 2499.0), now=0.0)  # the same sample again: a repeat, dropped
    await batcher.flush()
    assert status.samples == 2500 and status.messages == 2501


async def test_a_slow_sink_bounds_the_buffer_and_counts_what_it_drops():
    release = asyncio.Event()
    stored: list[Sample] = []

    async def sink(batch):
        await release.wait()  # the database is away
        stored.extend(batch)

    status = ConnectionStatus()
    batcher = SampleBatcher(sink, status, size=2, seconds=0.01, max_pending=4)
    flusher = asyncio.create_task(batcher.run())
    try:
        for i in range(10):
            batcher.add(Sample("p", float(i), float(i)), now=0.0)
            await asyncio.sleep(0)
        assert status.errors == 6
        assert status.last_error == "dropped: the sink is not keeping up"
        release.set()
        await until(lambda: len(stored) == 4, what="the kept samples stored")
    finally:
        flusher.cancel()
    assert [s.value for s in stored] == [0.0, 1.0, 2.0, 3.0]


async def test_a_failing_sink_keeps_the_batch_for_the_next_attempt():
    stored: list[Sample] = []
    fail = {"left": 1}

    async def sink(batch):
        if fail["left"]:
            fail["left"] -= 1
            raise OSError("database unreachable")
        stored.extend(batch)

    batcher = SampleBatcher(sink, ConnectionStatus(), size=10, seconds=1)
    batcher.add(Sample("p", 1.0, 1.0), now=0.0)
    with pytest.raises(OSError):
        await batcher.flush()
    await batcher.flush()
    assert stored == [Sample("p", 1.0, 1.0)]


def test_a_data_value_without_source_time_falls_back_to_server_time_then_receipt():
    point = OpcUaPoint("p", "ns=2;s=x")
    server_time = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), ServerTimestamp=_dt(1000.0))
    assert opcua.to_sample(point, server_time, received=5000.0).ts == 1000.0
    bare = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double))
    assert opcua.to_sample(point, bare, received=5000.0).ts == 5000.0
    text = ua.DataValue(ua.Variant("running", ua.VariantType.String))
    assert opcua.to_sample(point, text, received=0.0) == PointError(
        "not a finite number: 'running'", "p", "ns=2;s=x"
    )
    flag = ua.DataValue(ua.Variant(True, ua.VariantType.Boolean))
    assert opcua.to_sample(point, flag, received=0.0).value == 1.0


def _dt(ts: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


async def test_alert_state_is_written_to_the_nodes_and_writing_it_twice_is_harmless(device):
    target = OpcUaWriteTarget(
        "P-101", device.node_id("alert_text"), device.node_id("alert_severity"), device.node_id("alarm")
    )
    alert = AlertState("P-101", "open", "high", "machine_fault", category_label="vibration")
    for _ in range(2):
        assert (
            await opcua.write_alert_states(cfg_for(device), [target], [alert, AlertState("P-7", "open")])
            == []
        )
        assert await device.read("alert_text") == "P-101 vibration alert, high"
        assert await device.read("alert_severity") == 3
        assert await device.read("alarm") is True
    assert await opcua.write_alert_states(cfg_for(device), [target], [AlertState("P-101", "resolved")]) == []
    assert (
        await device.read("alert_text"),
        await device.read("alert_severity"),
        await device.read("alarm"),
    ) == (
        "P-101 normal",
        0,
        False,
    )


async def test_a_write_back_node_the_server_refuses_is_reported(device):
    # The measured value is read-only on the device; the alarm node is writable.
    target = OpcUaWriteTarget(
        "P-101", text_node=device.node_id("vibration"), alarm_node=device.node_id("alarm")
    )
    errors = await opcua.write_alert_states(cfg_for(device), [target], [AlertState("P-101", "open", "low")])
    assert [e.source for e in errors] == [device.node_id("vibration")]
    assert errors[0].reason.startswith("write refused: Bad")
    assert await device.read("alarm") is True
    assert await device.read("vibration") == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node_id": "ns=2;s=a"}, "point (the Vigil sensor key) is required"),
        ({"point": "p"}, "node id is empty"),
        (
            {"point": "p", "node_id": "P-101.vibration"},
            "node id 'P-101.vibration' is not OPC UA node id syntax",
        ),
        ({"point": "p", "node_id": "ns=x;s=a"}, "node id 'ns=x;s=a' is not OPC UA node id syntax"),
        ({"point": "p", "node_id": "ns=2;i=abc"}, "node id 'ns=2;i=abc' is not OPC UA node id syntax"),
        ({"point": "p", "node_id": "ns=2;s="}, "node id 'ns=2;s=' has an empty identifier"),
        (
            {"point": "p", "node_id": "ns=70000;s=a"},
            "node id 'ns=70000;s=a': namespace index must be 0-65535",
        ),
        ({"point": "p", "node_id": "i=4294967296"}, "node id 'i=4294967296': numeric identifier must be"),
        ({"point": "p", "node_id": "nsu=urn:x;s=a"}, "node id 'nsu=urn:x;s=a': give the namespace index"),
        (
            {"point": "p", "node_id": "i=85", "sampling_interval_ms": "fast"},
            "sampling_interval_ms 'fast' is not",
        ),
        ({"point": "p", "node_id": "i=85", "sampling_interval_ms": "0"}, "sampling_interval_ms must be in"),
        (
            {"point": "p", "node_id": "i=85", "sampling_interval_ms": "nan"},
            "sampling_interval_ms must be a finite number",
        ),
        ({"point": "p", "node_id": "i=85", "sampling_interval_ms": "-5"}, "sampling_interval_ms must be in"),
    ],
)
def test_malformed_node_mappings_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_point(fields)


def test_a_well_formed_node_mapping_parses():
    assert parse_point({"point": "P-101.vibration", "node_id": " ns=2;s=P-101.vibration "}) == OpcUaPoint(
        "P-101.vibration", "ns=2;s=P-101.vibration", 1000.0
    )
    assert (
        parse_point({"point": "p", "node_id": "i=2258", "sampling_interval_ms": "250"}).sampling_interval_ms
        == 250
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "http://plc:4840"}, "must start with opc.tcp://"),
        ({"endpoint": "opc.tcp://plc:4840", "password": "x"}, "a password needs a username"),
        ({"endpoint": "opc.tcp://plc:4840", "security_policy": "Basic512"}, "unknown security policy"),
        (
            {"endpoint": "opc.tcp://plc:4840", "security_policy": "Basic256Sha256"},
            "needs the client certificate",
        ),
        (
            {"endpoint": "opc.tcp://p:1", "security_policy": "Basic256Sha256", "security_mode": "None"},
            "security mode must be one of",
        ),
        ({"endpoint": "opc.tcp://plc:4840", "batch_size": 0}, "batch_size must be at least 1"),
        ({"endpoint": "opc.tcp://plc:4840", "batch_seconds": math.inf}, "batch_seconds must be a positive"),
        ({"endpoint": "opc.tcp://plc:4840", "max_pending": 10}, "max_pending must be at least batch_size"),
    ],
)
def test_an_invalid_connection_does_not_start_and_says_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpcUaConfig(**kwargs)


def test_write_targets_are_validated():
    with pytest.raises(ValueError, match="give at least one of"):
        opcua.parse_write_target({"asset_tag": "P-101"})
    with pytest.raises(ValueError, match="^alarm_node: node id 'x' is not OPC UA node id syntax"):
        opcua.parse_write_target({"asset_tag": "P-101", "alarm_node": "x"})
    target = opcua.parse_write_target({"asset_tag": "P-101", "alarm_node": "ns=2;s=P-101.alarm"})
    assert target == OpcUaWriteTarget("P-101", alarm_node="ns=2;s=P-101.alarm")


@pytest.fixture
async def secured(tmp_path):
    """A device that takes only Basic256Sha256 SignAndEncrypt and the user vigil / s3cret, and the
    client's own certificate and key."""
    for name, use in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        await setup_self_signed_certificate(
            tmp_path / f"{name}.pem",
            tmp_path / f"{name}.der",
            f"urn:vigil:{name}",
            "127.0.0.1",
            [use],
            {"commonName": f"vigil {name}"},
        )
    dev = await start_opcua_device(
        free_port(),
        certificate=tmp_path / "server.der",
        private_key=tmp_path / "server.pem",
        users={"vigil": "s3cret"},
    )
    yield dev, {"certificate": str(tmp_path / "client.der"), "private_key": str(tmp_path / "client.pem")}
    await dev.stop()


async def test_a_secured_server_is_read_with_the_certificate_and_the_credentials(secured):
    device, client_files = secured
    cfg = cfg_for(
        device, username="vigil", password="s3cret", security_policy="Basic256Sha256", **client_files
    )
    sink, status = Collector(), ConnectionStatus()
    task = asyncio.create_task(opcua.run(cfg, points_for(device, "vibration"), sink, status))
    try:
        await until(lambda: len(sink.samples) >= 1, what="the catch-up sample")
        await device.set("vibration", 2.75)
        await until(lambda: sink.samples[-1].value == 2.75, what="the written value")
    finally:
        await stop(task)


@pytest.mark.parametrize(
    ("credentials", "secure", "message"),
    [
        ({"username": "vigil", "password": "wrong"}, True, "BadUserAccessDenied"),
        ({}, True, "BadUserAccessDenied"),
        ({"username": "vigil", "password": "s3cret"}, False, "No matching endpoints"),
    ],
)
async def test_a_secured_server_refuses_wrong_credentials_or_no_security(
    secured, credentials, secure, message
):
    device, client_files = secured
    security = {"security_policy": "Basic256Sha256", **client_files} if secure else {}
    cfg = cfg_for(device, **credentials, **security)
    with pytest.raises(ua.UaError, match=message):
        await asyncio.wait_for(
            opcua.run(cfg, points_for(device, "vibration"), Collector(), ConnectionStatus()), 10
        )
