"""Connection errors in plain words (connectivity.error_words): the texts are what the bridge stores, as
its clients raise them (captured from aiomqtt, asyncua and pymodbus against closed ports, unknown hosts and
refusing servers)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from connectivity.error_words import in_words
from connectivity.points import failed_try
from plant.models import Connection, ConnectionState

OPC, MQTT, MODBUS = (
    ("opcua", "opc.tcp://127.0.0.1:4840"),
    ("mqtt", "mqtts://broker.plant:8883"),
    (
        "modbus",
        "modbus://10.1.2.3:502",
    ),
)


@pytest.mark.parametrize(
    ("connection", "error", "words"),
    [
        (
            OPC,
            "not reachable: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 4840)",
            "The OPC UA server at 127.0.0.1:4840 refused the connection: is it running and is the port right?",
        ),
        (
            MQTT,
            "not reachable: MqttError: [Errno 111] Connection refused",
            "The MQTT broker at broker.plant:8883 refused the connection",
        ),
        (
            MQTT,
            "not reachable: MqttError: [Errno -2] Name or service not known",
            "The host name broker.plant was not found",
        ),
        (OPC, "not reachable: gaierror: [Errno -3] Temporary failure in name resolution", "was not found"),
        (
            MQTT,
            "not reachable: TimeoutError: ",
            "The MQTT broker at broker.plant:8883 did not answer in time",
        ),
        (
            OPC,
            "connection lost: ConnectionError: no publish response (data or keep-alive) for 5.0 s",
            "The OPC UA server at 127.0.0.1:4840 did not answer in time",
        ),
        (
            MQTT,
            "not reachable: SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
            "failed: self-signed certificate (_ssl.c:1006)",
            "presented a certificate the bridge does not trust: check the connection's TLS CA file",
        ),
        (
            MQTT,
            "not reachable: SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
            "The secure (TLS) connection to the MQTT broker at broker.plant:8883 failed",
        ),
        (MQTT, "not reachable: MqttConnectError: [code:135] Not authorized", "refused the login"),
        (MQTT, "not reachable: MqttConnectError: [code:134] Bad user name or password", "refused the login"),
        (
            OPC,
            "not reachable: BadUserAccessDenied: User does not have permission to perform the requested "
            "operation.(BadUserAccessDenied)",
            "The OPC UA server at 127.0.0.1:4840 refused the login: check the connection's user name",
        ),
        (
            MODBUS,
            "ns=2;s=P1: exception response 2 to holding_register read",
            "The Modbus device at 10.1.2.3:502 answered a read with Modbus exception 2 (illegal data address):"
            " the device has no such register",
        ),
        (
            MODBUS,
            "write-back: unit 1 coil: write refused: exception response 11",
            "Write-back: The Modbus device at 10.1.2.3:502 refused a write with Modbus exception 11",
        ),
        (
            MODBUS,
            "unit 3 holding_register: no answer: Modbus Error: [Input/Output] No response received after 0 "
            "retries, continue with next request",
            "The Modbus device at 10.1.2.3:502 did not answer a request: is the unit id right",
        ),
        (
            MODBUS,
            "not reachable: ConnectionError: Modbus: cannot connect to 10.1.2.3:502",
            "The bridge could not connect to the Modbus device at 10.1.2.3:502",
        ),
        (
            OPC,
            "ns=2;s=Flow: not subscribed: BadNodeIdUnknown",
            "answered BadNodeIdUnknown: the server has no such node",
        ),
        (OPC, "subscription status BadNoSubscription", "answered BadNoSubscription: no subscription."),
        (OPC, "not reachable: OSError: [Errno 113] No route to host", "no network route to 127.0.0.1"),
        (
            OPC,
            "connection lost: ConnectionError: OPC UA connection to opc.tcp://127.0.0.1:4840 lost",
            "The connection to the OPC UA server at 127.0.0.1:4840 dropped",
        ),
    ],
)
def test_a_known_error_reads_as_what_is_wrong_and_what_to_check(connection, error, words):
    assert words in in_words(error, *connection)


@pytest.mark.parametrize(
    "error", ["", "poll overran: 2 period(s) skipped", "plant/line1/temp: value is not a finite number: 'x'"]
)
def test_an_error_no_rule_knows_gets_no_words(error):
    assert in_words(error, *OPC) == ""


def test_a_real_refused_connection_reads_as_refused():
    # The stored text of a real try at a port nothing listens on, as the bridge words it (failed_try).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError) as refused:
        asyncio.run(asyncio.open_connection("127.0.0.1", port))
    error = failed_try(refused.value, reached=False)
    assert f"The OPC UA server at 127.0.0.1:{port} refused the connection" in in_words(
        error, "opcua", f"opc.tcp://127.0.0.1:{port}"
    )


def test_an_endpoint_that_does_not_parse_is_named_as_it_is():
    assert in_words("not reachable: TimeoutError: ", "opcua", "nonsense").startswith(
        "The OPC UA server at nonsense did not answer"
    )


@pytest.mark.parametrize(
    "error",
    [
        # A device's value is what it sent, not what happened to the connection.
        "plant/line1/temp: value is not a finite number: 'Connection lost'",
        "ns=2;s=Flow: not a finite number: 'timed out'",
        'plant/line1/temp: value is not a finite number: "connection refused"',
    ],
)
def test_a_quoted_value_is_never_read_as_the_connections_trouble(error):
    assert in_words(error, *MQTT) == ""
    assert in_words(error, *MQTT, of_point=True) == ""


@pytest.mark.parametrize(
    ("error", "words"),
    [
        # A topic or node named after TLS or a timeout does not make its data error a connection problem.
        ("site/ssl/line1/temp: payload is not JSON (Expecting value)", ""),
        ("site/tls-lab/temp: no point is mapped to this topic", ""),
        # A device's answer about one point is still put in words.
        (
            "ns=2;s=Flow: not subscribed: BadNodeIdUnknown",
            "answered BadNodeIdUnknown: the server has no such node",
        ),
        (
            "ns=2;s=P1: exception response 2 to holding_register read",
            "Modbus exception 2 (illegal data address)",
        ),
    ],
)
def test_a_points_error_is_worded_only_as_the_devices_answer(error, words):
    said = in_words(error, *MQTT, of_point=True)
    assert (words in said) if words else said == ""


def test_the_stored_state_words_a_points_error_as_a_point_and_a_failed_try_as_the_connection():
    connection = Connection(protocol="mqtt", endpoint="mqtts://broker.plant:8883")
    point = ConnectionState(
        connection=connection, last_error="site/ssl/temp: payload is not JSON (x)", last_error_resolved_by=""
    )
    assert point.last_error_words() == ""
    failed = ConnectionState(
        connection=connection,
        last_error="not reachable: SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
        last_error_resolved_by="connect",
    )
    assert "The secure (TLS) connection to the MQTT broker" in failed.last_error_words()


@pytest.mark.parametrize(
    ("connection", "error", "words"),
    [
        # A host named after TLS is not a TLS failure: pymodbus names the host it could not reach.
        (
            ("modbus", "modbus://ssl-plc.local:502"),
            "not reachable: ConnectionError: Modbus: cannot connect to ssl-plc.local:502",
            "The bridge could not connect to the Modbus device at ssl-plc.local:502",
        ),
        (
            ("mqtt", "mqtt://tls-gw.plant:1883"),
            "not reachable: TimeoutError: timed out connecting to tls-gw.plant:1883",
            "The MQTT broker at tls-gw.plant:1883 did not answer in time",
        ),
    ],
)
def test_the_servers_own_name_is_no_clue_to_what_went_wrong(connection, error, words):
    assert in_words(error, *connection).startswith(words)


def test_an_unanswered_rebirth_request_is_worded_without_the_bridges_utc_clock():
    # QA (demo): the site page of an America/Chicago plant showed the raw text, "no answer to 1 rebirth request
    # since 2026-12-06 13:32:53 UTC (node offline, …): its 5 mapped metrics are no…" cut at 160 characters.
    error = (
        "spBv1.0/demo-plant/edge-1: no answer to 1 rebirth request since 2026-12-06 13:32:53 UTC (node "
        "offline, or no Node Control/Rebirth): its 5 mapped metrics are not held and its data by alias is "
        "dropped until it is born; asked again in 5 s"
    )
    said = in_words(error, *MQTT, of_point=True)
    assert said == (
        "The Sparkplug node spBv1.0/demo-plant/edge-1 did not answer 1 rebirth request: is it online, and "
        "does it support Node Control/Rebirth? Its 5 mapped metrics are dropped until it is born again."
    )
    many = error.replace("1 rebirth request since", "7 rebirth requests since").replace("its 5", "its 1")
    assert "did not answer 7 rebirth requests" in in_words(many, *MQTT, of_point=True)
    assert "Its 1 mapped metric is dropped" in in_words(many, *MQTT, of_point=True)
    braced = error.replace("edge-1", "edge-{1}")  # a node id is the device's text: no format field
    assert "node spBv1.0/demo-plant/edge-{1} did not answer" in in_words(braced, *MQTT, of_point=True)
