"""connectivity.mqtt without a broker: point parsing, and payloads turned into samples or counted errors."""

from __future__ import annotations

import math
import re
import time

import orjson
import pytest

from connectivity import mqtt, protocols
from connectivity.mqtt import MqttPoint, Router, parse_options, parse_point, sparkplug_payload
from connectivity.points import BIRTH, ConnectionStatus, Sample, SampleStatus

NOW = 1_767_600_000.0


def json_point(**fields: str) -> MqttPoint:
    return parse_point({"topic": "plant/+/telemetry", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"topic": ""}, "topic is required"),
        ({"topic": "a/#/b"}, "# must be a whole level and the last one"),
        ({"topic": "a/b+"}, "+ must be a whole level"),
        ({"topic": "a", "value_path": "x..y"}, "not a dotted path"),
        ({"topic": "a", "ts_unit": "days"}, "ts_unit must be one of"),
        ({"format": "xml", "topic": "a"}, "format must be one of json, sparkplug"),
        ({"format": "sparkplug", "group": "g", "metric": "m"}, "node is required"),
        ({"format": "sparkplug", "group": "g/h", "node": "n", "metric": "m"}, "may not hold"),
        ({"format": "sparkplug", "group": "g", "node": "n"}, "metric is required"),
        (
            {"format": "sparkplug", "group": "g", "node": "n", "metric": "m", "sampling_interval_ms": "x"},
            "is not a",
        ),
        (
            {"format": "sparkplug", "group": "g", "node": "n", "metric": "m", "sampling_interval_ms": "0"},
            "must be in",
        ),
    ],
)
def test_a_bad_address_is_refused_with_the_reason(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_point(fields)


def test_options_are_validated_and_typos_refused():
    assert parse_options({})["qos"] == 1
    with pytest.raises(ValueError, match="unknown MQTT option"):
        parse_options({"qoss": 1})
    with pytest.raises(ValueError, match="qos must be a whole number from 0 to 1"):
        parse_options({"qos": 2})
    with pytest.raises(ValueError, match="unknown protocol 'bacnet'"):
        protocols.parse_point("bacnet", {})
    with pytest.raises(ValueError, match="endpoint must start with mqtt:// or mqtts://"):
        protocols.parse_endpoint("mqtt", "http://broker")


def test_json_values_and_timestamps_are_read_at_their_paths():
    router = Router(
        {
            "p1.temp": json_point(value_path="data.temp", ts_path="ts", ts_unit="ms"),
            "p1.flow": json_point(value_path="data.flow", ts_path="iso"),
        }
    )
    payload = orjson.dumps(
        {"ts": 1_767_600_001_500, "iso": "2026-01-05T08:00:00+00:00", "data": {"temp": 41.5, "flow": 3}}
    )
    samples, errors = router.decode("plant/p1/telemetry", payload, NOW)
    assert errors == []
    assert sorted(samples, key=lambda s: s.point) == [
        Sample("p1.flow", 1_767_600_000.0, 3.0),
        Sample("p1.temp", 1_767_600_001.5, 41.5),
    ]


def test_many_readings_in_one_message_each_become_a_sample():
    router = Router({"p1.temp": json_point(items_path="readings", value_path="v", ts_path="t")})
    payload = orjson.dumps({"readings": [{"t": NOW + i, "v": float(i)} for i in range(100)]})
    samples, errors = router.decode("plant/p1/telemetry", payload, NOW)
    assert errors == [] and len(samples) == 100 and samples[-1] == Sample("p1.temp", NOW + 99, 99.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "payload is not JSON"),
        (b'{"temp": 1}', "no value at 'value'"),
        (b'{"value": "12"}', "value is not a finite number"),
        (b'{"value": NaN}', "payload is not JSON"),
        (b'{"value": 1e999}', "payload is not JSON"),
        (b'{"value": true}', "value is not a finite number"),
        (b'{"value": 1, "ts": "yesterday"}', "unparseable timestamp"),
        (b'{"value": 1, "ts": "2026-01-05T08:00:00"}', "has no UTC offset"),
        (b'{"value": 1}', "no timestamp at 'ts'"),
    ],
)
def test_a_bad_payload_is_an_error_with_its_reason_never_an_exception(payload, reason):
    router = Router(
        {
            "p1.temp": json_point(ts_path="ts")
            if b'"ts"' in payload or reason.startswith("no timestamp")
            else json_point()
        }
    )
    samples, errors = router.decode("plant/p1/telemetry", payload, NOW)
    assert samples == []
    assert len(errors) == 1 and reason in errors[0].reason and errors[0].source == "plant/p1/telemetry"


def test_an_unmapped_topic_is_counted():
    samples, errors = Router({"p1.temp": json_point()}).decode("elsewhere/x", b'{"value": 1}', NOW)
    assert samples == [] and errors[0].reason == "no point is mapped to this topic"


def sparkplug_point(device: str = "pump2", metric: str = "vibration") -> MqttPoint:
    return parse_point(
        {"format": "sparkplug", "group": "plant", "node": "edge1", "device": device, "metric": metric}
    )


def test_sparkplug_births_bind_aliases_that_data_messages_use():
    router = Router({"p2.vib": sparkplug_point(), "p2.cur": sparkplug_point(metric="current")})
    assert router.subscriptions == ["spBv1.0/plant/+/edge1/#"]
    birth = sparkplug_payload(
        [("vibration", 1, 0.5), ("current", 2, 10.0), ("unmapped", 3, 1.0)], 1_767_600_000_000
    )
    samples, errors = router.decode("spBv1.0/plant/DBIRTH/edge1/pump2", birth, NOW)
    assert errors == [] and {s.point for s in samples} == {"p2.vib", "p2.cur"}
    data = sparkplug_payload([(None, 1, 0.75), (None, 2, math.nan)], 1_767_600_001_000)
    samples, errors = router.decode("spBv1.0/plant/DDATA/edge1/pump2", data, NOW)
    assert samples == [
        Sample("p2.vib", 1_767_600_001.0, 0.75),
        Sample("p2.cur", 1_767_600_001.0, None, SampleStatus.BAD),
    ]
    unknown = sparkplug_payload([(None, 9, 1.0)], 1_767_600_002_000)
    _, errors = router.decode("spBv1.0/plant/DDATA/edge1/pump2", unknown, NOW)
    assert errors[0].reason == "metric alias 9 has no birth certificate (rebirth requested)"


def test_an_alias_without_birth_asks_its_node_for_a_rebirth_at_most_every_few_seconds():
    router = Router({"p2.vib": sparkplug_point()})
    unknown = sparkplug_payload([(None, 1, 1.0), (None, 2, 2.0)], 1_767_600_002_000)
    router.decode("spBv1.0/plant/DDATA/edge1/pump2", unknown, NOW)
    router.decode("spBv1.0/plant/NDATA/edge1", unknown, NOW + 1)
    assert router.rebirths == [("plant", "edge1")] and router.unknown_aliases == 4
    router.rebirths.clear()
    router.decode("spBv1.0/plant/DDATA/edge1/pump2", unknown, NOW + mqtt.REBIRTH_EVERY_S)
    assert router.rebirths == [("plant", "edge1")]  # still no birth: asked again
    router.rebirths.clear()
    router.decode("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([], 1_767_600_003_000), NOW + 6)
    router.decode("spBv1.0/plant/DBIRTH/edge1/pump2", sparkplug_payload([("vibration", 1, 0.5)], 1), NOW + 6)
    samples, errors = router.decode("spBv1.0/plant/DDATA/edge1/pump2", unknown, NOW + 7)
    assert (
        [s.value for s in samples] == [1.0] and len(errors) == 1 and router.rebirths == [("plant", "edge1")]
    )
    # The command topics (the bridge's own NCMD among them) carry no data.
    assert router.decode("spBv1.0/plant/NCMD/edge1", mqtt.rebirth_payload(NOW), NOW) == ([], [])


def test_sparkplug_deaths_make_the_points_stale():
    router = Router({"p2.vib": sparkplug_point(), "p3.vib": sparkplug_point(device="pump3")})
    death = sparkplug_payload([], 1_767_600_005_000)
    samples, _ = router.decode("spBv1.0/plant/DDEATH/edge1/pump2", death, NOW)
    assert samples == [Sample("p2.vib", 1_767_600_005.0, None, SampleStatus.STALE)]
    samples, _ = router.decode("spBv1.0/plant/NDEATH/edge1", death, NOW)
    assert {s.point for s in samples} == {"p2.vib", "p3.vib"}
    assert all(s.status == SampleStatus.STALE for s in samples)
    _, errors = router.decode("spBv1.0/plant/DDATA/edge1/pump2", b"\xff\xff\xff", NOW)
    assert errors[0].reason == "payload is not a Sparkplug B protobuf"


def test_a_live_nodes_metric_is_held_until_it_changes_and_a_rebirth_or_death_ends_the_holding():
    point = parse_point({"format": "sparkplug", "group": "plant", "node": "edge1", "metric": "flow"})
    router = Router({"p1.flow": point})  # held every 1000 ms, the default
    t0 = float(int(time.time()) - 30)  # whole seconds: Sparkplug times are in ms

    def decode(kind: str, value: float | None, at: float) -> list[tuple[float, float | None]]:
        metrics = [] if value is None else [("flow", 1, value)]
        samples, _ = router.decode(
            f"spBv1.0/plant/{kind}/edge1", sparkplug_payload(metrics, int(at * 1000)), at
        )
        return [(round(s.ts - t0, 3), s.value) for s in samples]

    assert decode("NBIRTH", 1.0, t0) == [(0.0, 1.0)]
    # Up to the time confirmed less one interval, on the grid of the value's time.
    assert [(round(s.ts - t0, 3), s.value) for s in router.confirm(t0 + 5.5)] == [
        (t, 1.0) for t in (1, 2, 3, 4)
    ]
    # A change: the value held until it goes first, up to (not at) its time.
    assert decode("NDATA", 2.0, t0 + 6.0) == [(5.0, 1.0), (6.0, 2.0)]
    # A rebirth ends the old holding: its values are held afresh from their arrival.
    assert decode("NBIRTH", 3.0, t0 + 20.0) == [(20.0, 3.0)]
    assert [(round(s.ts - t0, 3), s.value) for s in router.confirm(t0 + 22.5)] == [(21.0, 3.0)]
    assert decode("NDEATH", None, t0 + 23.0) == [(23.0, None)]
    assert router.confirm(t0 + 30) == [] and not router.holding


def with_bd_seq(payload: bytes, seq: int) -> bytes:
    """The payload with a ``bdSeq`` metric as nodes send it: UInt64 (datatype 8) in long_value."""
    message = mqtt.sparkplug_b_pb2.Payload.FromString(payload)
    message.metrics.add(name="bdSeq", datatype=8, long_value=seq)
    return message.SerializeToString()


def test_a_late_will_of_an_earlier_session_does_not_kill_the_reborn_node():
    # The node's link dropped and it came back on a new session (bdSeq 7) before the broker published
    # the old session's will (bdSeq 6): the node is alive and its frozen value must still be held.
    point = parse_point({"format": "sparkplug", "group": "plant", "node": "edge1", "metric": "flow"})
    router = Router({"p1.flow": point})
    t0 = float(int(time.time()) - 30)

    def decode(kind: str, metrics: list, at: float, seq: int) -> list[Sample]:
        payload = with_bd_seq(sparkplug_payload(metrics, int(at * 1000)), seq)
        return router.decode(f"spBv1.0/plant/{kind}/edge1", payload, at)[0]

    assert [s.value for s in decode("NBIRTH", [("flow", 1, 4.0)], t0, 7)] == [4.0]
    assert decode("NDEATH", [], t0 + 2.0, 6) == [] and router.stale_deaths == 1
    assert router.holding and [s.value for s in router.confirm(t0 + 3.5)] == [4.0, 4.0]
    # The death of the session that is live ends it.
    stale = decode("NDEATH", [], t0 + 4.0, 7)
    assert [(s.point, s.status) for s in stale] == [("p1.flow", SampleStatus.STALE)] and not router.holding
    # A node that sends no bdSeq: every death is taken, as before.
    decode("NBIRTH", [("flow", 1, 5.0)], t0 + 10.0, 8)
    samples, _ = router.decode(
        "spBv1.0/plant/NDEATH/edge1", sparkplug_payload([], int((t0 + 11) * 1000)), t0 + 11
    )
    assert [s.status for s in samples] == [SampleStatus.STALE] and router.stale_deaths == 1


def test_a_path_part_that_only_looks_like_an_index_reads_nothing_instead_of_raising():
    # "²" passes str.isdigit() and int() refuses it: every message on the topic raised a ValueError.
    router = Router({"p1.temp": json_point(value_path="data.\u00b2")})
    samples, errors = router.decode("plant/p1/telemetry", orjson.dumps({"data": [1.0, 2.0, 3.0]}), NOW)
    assert samples == [] and len(errors) == 1


def test_a_birth_certificate_with_a_nameless_metric_leaves_its_error_to_be_ended_by_the_next_birth():
    # As the client takes each message (mqtt._consume): its errors, then the births it read, at its receipt.
    router, status = Router({"p1.vib": sparkplug_point(device="")}), ConnectionStatus()

    def take(topic: str, payload: bytes, received: float) -> None:
        _, errors = router.decode(topic, payload, received)
        for error in errors:
            status.error(error, received)
        while router.births:
            status.born(router.births.pop(0), received)

    # A birth whose metric carries an alias and no name: that alias is still unbound, the error current.
    take("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([(None, 7, 1.0)], 1), NOW)
    assert status.last_error_resolved_by == BIRTH and status.last_error_resolved_at is None
    # The node's next, complete birth ends it.
    take("spBv1.0/plant/NBIRTH/edge1", sparkplug_payload([("vibration", 7, 1.0)], 2), NOW + 5)
    assert status.last_error_resolved_at == NOW + 5
