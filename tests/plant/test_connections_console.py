"""Connections and point mappings in the engineering console: passwords encrypted and never shown back,
configuration checked by the protocol's client, CSV import with an error per row, export."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from plant.builders import make_asset
from plant.connections.mappings import export_csv, import_csv
from plant.connections.secrets import password_of
from plant.models import Connection, ConnectionState, PointMapping, Sensor, Site
from tests.conftest import make_user

SECRET = "s3cret-Broker-Pass"


@pytest.fixture
def engineer_client(client, site):
    client.force_login(make_user("enzo", "engineer", site))
    return client


def form_data(site: Site, **fields) -> dict:
    return {
        "site": site.pk,
        "name": "line 1 broker",
        "protocol": "mqtt",
        "endpoint": "mqtt://broker.local:1883",
        "username": "vigil",
        "password": "",
        "password_env": "",
        "tls_ca_file": "",
        "tls_cert_file": "",
        "tls_key_file": "",
        "tls_verify": "on",
        "interval_s": "1.0",
        "options": "{}",
        "enabled": "on",
        **fields,
    }


def test_a_password_is_stored_encrypted_and_never_shown_back(engineer_client, site):
    response = engineer_client.post(reverse("admin:plant_connection_add"), form_data(site, password=SECRET))
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get()
    assert SECRET not in connection.password_encrypted and password_of(connection) == SECRET
    page = engineer_client.get(reverse("admin:plant_connection_change", args=[connection.pk]))
    assert page.status_code == 200 and SECRET not in page.content.decode()
    assert "stored (encrypted)" in page.content.decode()
    # Saved again with the password field empty: the stored password is kept.
    url = reverse("admin:plant_connection_change", args=[connection.pk])
    assert engineer_client.post(url, form_data(site, name="renamed")).status_code == 302
    connection.refresh_from_db()
    assert connection.name == "renamed" and password_of(connection) == SECRET


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint": "http://broker"}, "endpoint must start with mqtt:// or mqtts://"),
        ({"options": '{"qos": 2}'}, "option qos must be a whole number from 0 to 1"),
        ({"options": '{"qoss": 1}'}, "unknown MQTT option(s): qoss"),
        ({"password_env": "not a name"}, "An environment variable name"),
    ],
)
def test_a_configuration_the_bridge_would_refuse_is_a_form_error(engineer_client, site, fields, message):
    response = engineer_client.post(reverse("admin:plant_connection_add"), form_data(site, **fields))
    assert response.status_code == 200 and message in response.content.decode()
    assert not Connection.objects.exists()


def test_hundreds_of_mappings_import_with_an_error_per_bad_row(site, other_site):
    asset = make_asset(site)
    for i in range(300):
        Sensor.objects.create(asset=asset, key=f"north.tag{i}", role=asset.sensors.first().role)
    foreign = make_asset(other_site, tag="p-201").sensors.first()
    connection = Connection.objects.create(site=site, name="b", endpoint="mqtt://b")
    rows = ["sensor,topic,value_path,format,group,node,metric"]
    rows += [f"north.tag{i},plant/tag{i},data.v,,,," for i in range(300)]
    rows += [
        "north.tag0,plant/again,v,,,,",  # line 302: mapped twice
        "nowhere,plant/x,v,,,,",  # 303: unknown sensor
        f"{foreign.key},plant/x,v,,,,",  # 304: another site's sensor, answered alike
        "north.tag1,plant/#/x,v,,,,",  # 305: bad filter
        ",plant/x,v,,,,",  # 306: no sensor
        "north.tag2,,,sparkplug,g,n,",  # 307: sparkplug without metric
    ]
    result = import_csv(connection, "\n".join(rows).encode())
    assert result.created == 300 and result.updated == 0
    assert [line for line, _ in result.errors] == [302, 303, 304, 305, 306, 307]
    reasons = dict(result.errors)
    assert reasons[302] == "sensor 'north.tag0' is mapped again (first on line 2)"
    assert reasons[303] == "unknown sensor: 'nowhere'" and reasons[304] == f"unknown sensor: {foreign.key!r}"
    assert "# must be a whole level" in reasons[305] and reasons[306] == "sensor is empty"
    assert reasons[307] == "metric is required for a Sparkplug B point"
    # The export reads back as the same mappings.
    text = export_csv(connection)
    assert text.splitlines()[0] == "sensor,topic,value_path" and "north.tag7,plant/tag7,data.v" in text
    again = import_csv(connection, text.encode())
    assert again.created == 0 and again.updated == 300 and again.errors == []
    assert PointMapping.objects.filter(connection=connection).count() == 300


def test_the_import_page_shows_refused_rows_and_a_bad_file_is_a_form_error(engineer_client, site):
    asset = make_asset(site)
    connection = Connection.objects.create(site=site, name="b", endpoint="mqtt://b")
    url = reverse("admin:plant_connection_mappings_import", args=[connection.pk])
    good = asset.sensors.first().key
    upload = SimpleUploadedFile("m.csv", f"sensor,topic\n{good},a/b\nnope,a/c\n".encode())
    page = engineer_client.post(url, {"file": upload})
    body = page.content.decode()
    assert (
        page.status_code == 200
        and "1 mapping(s) created" in body
        and "unknown sensor: &#x27;nope&#x27;" in body
    )
    bad = engineer_client.post(url, {"file": SimpleUploadedFile("m.csv", b"topic\na/b\n")})
    assert bad.status_code == 400 and "one of them &#x27;sensor&#x27;" in bad.content.decode()
    export = engineer_client.get(reverse("admin:plant_connection_mappings_export", args=[connection.pk]))
    assert export.status_code == 200 and f"{good},a/b" in export.content.decode()


def test_a_line_the_csv_module_or_the_database_refuses_is_that_lines_error_only(engineer_client, site):
    # A field over the csv module's 128 KiB limit was a csv.Error 500; a NUL reached PostgreSQL's text
    # and jsonb (a 500 there) as the sensor key of a query and an address field.
    asset = make_asset(site)
    connection = Connection.objects.create(site=site, name="b", endpoint="mqtt://b")
    url = reverse("admin:plant_connection_mappings_import", args=[connection.pk])
    good = asset.sensors.first().key
    lines = [
        "sensor,topic",
        '"' + "x" * 200_000 + '",a/b',  # line 2
        "north\x00.p-101.vibration,a/b",  # line 3
        f"{good},a/b",  # line 4: kept
    ]
    page = engineer_client.post(url, {"file": SimpleUploadedFile("m.csv", "\n".join(lines).encode())})
    body = page.content.decode()
    assert page.status_code == 200 and "1 mapping(s) created" in body
    result = import_csv(connection, "\n".join(lines).encode())
    assert [line for line, _ in result.errors] == [2, 3]
    assert "not valid CSV: field larger than field limit" in result.errors[0][1]
    assert result.errors[1][1] == "contains a NUL character"
    assert PointMapping.objects.get(connection=connection).sensor.key == good


def test_a_first_line_the_csv_module_refuses_is_a_form_error(engineer_client, site):
    connection = Connection.objects.create(site=site, name="b", endpoint="mqtt://b")
    url = reverse("admin:plant_connection_mappings_import", args=[connection.pk])
    upload = SimpleUploadedFile("m.csv", b"sensor," + b"t" * 200_000 + b"\n")
    page = engineer_client.post(url, {"file": upload})
    assert page.status_code == 400 and "the first line is not valid CSV" in page.content.decode()


def test_the_site_page_shows_each_connection_with_the_bridge_status(client, site, technician):
    up = Connection.objects.create(site=site, name="line broker", endpoint="mqtt://b")
    ConnectionState.objects.create(connection=up, running=True, connected=True, rate=12.5, stored=99)
    bad = Connection.objects.create(site=site, name="old plc", endpoint="mqtt://c")
    ConnectionState.objects.create(connection=bad, config_error="no point mappings: import or add some")
    client.force_login(technician)
    body = client.get(site.get_absolute_url()).content.decode()
    assert "line broker" in body and "connected, 12.5 readings/s" in body and "99 / 0 / 0" in body
    assert "not started: no point mappings: import or add some" in body


def test_the_connection_counts_say_the_period_they_cover(site, engineer_client):
    # The bridge counts from its last start of the connection (ConnectionRunner), so the counts say since when.
    now = timezone.now()
    up = Connection.objects.create(site=site, name="line broker", endpoint="mqtt://b")
    ConnectionState.objects.create(
        connection=up,
        running=True,
        connected=True,
        stored=99,
        started_at=now - timedelta(hours=2),
        updated_at=now,
    )
    gone = Connection.objects.create(site=site, name="old broker", endpoint="mqtt://c")
    ConnectionState.objects.create(
        connection=gone,
        running=False,
        stored=7,
        started_at=now - timedelta(days=1),
        updated_at=now - timedelta(hours=3),
    )
    body = engineer_client.get(site.get_absolute_url()).content.decode()
    assert (
        '99 / 0 / 0<br><small class="muted connection-counted">since the bridge started it 2\xa0hours ago'
        in body
    )
    assert (
        '7 / 0 / 0<br><small class="muted connection-counted">in its last run: started 1\xa0day ago, ' in body
    )
    page = engineer_client.get(reverse("admin:plant_connection_change", args=[up.pk])).content.decode()
    assert "stored 99, refused 0, errors 0 (since the bridge started it 2\xa0hours ago)" in page


def test_a_connection_named_with_its_protocol_is_not_followed_by_it_again(engineer_client, site):
    # The demo names its connections "Demo broker (MQTT)", "Demo PLC (OPC UA)", "Demo PLC (Modbus TCP)".
    named = Connection.objects.create(site=site, name="Demo broker (MQTT)", endpoint="mqtt://b")
    plain = Connection.objects.create(site=site, name="line 2", protocol="opcua", endpoint="opc.tcp://p:4840")
    assert [str(named), str(plain)] == ["Demo broker (MQTT)", "line 2 (OPC UA)"]
    sensor = make_asset(site, "p-1").sensors.first()
    PointMapping.objects.create(connection=named, sensor=sensor, address={"topic": "t", "path": "v"})
    body = engineer_client.get(reverse("admin:plant_pointmapping_changelist")).content.decode()
    assert "Demo broker (MQTT)" in body and "(MQTT) (MQTT)" not in body


def test_a_start_up_error_the_connection_got_past_is_shown_as_past_on_the_site_page_and_the_console(
    site, engineer_client
):
    # A PLC not up when the bridge started: "last error 3 hours ago: not reachable" stood on the site page for
    # as long as nothing failed again, read as a current problem while the connection worked.
    now = timezone.now()
    plc = Connection.objects.create(
        site=site, name="press PLC", protocol="modbus", endpoint="modbus://127.0.0.1:5020"
    )
    ConnectionState.objects.create(
        connection=plc,
        running=True,
        connected=True,
        rate=4.0,
        last_error="not reachable: ConnectionRefusedError: [Errno 111]",
        last_error_at=now - timedelta(hours=3),
        last_error_resolved_by="connect",
        connected_at=now - timedelta(hours=2, minutes=59),
        updated_at=now,
    )
    # An error after its last connect (a value refused, a write-back that failed) is current.
    broker = Connection.objects.create(site=site, name="line broker", endpoint="mqtt://b")
    ConnectionState.objects.create(
        connection=broker,
        running=True,
        connected=True,
        rate=4.0,
        last_error="write-back: TimeoutError: no answer",
        last_error_at=now - timedelta(minutes=5),
        last_error_resolved_by="write",
        connected_at=now - timedelta(hours=2),
        written_at=now - timedelta(minutes=6),
        updated_at=now,
    )
    body = engineer_client.get(site.get_absolute_url()).content.decode()
    past = body[body.index(">press PLC<") :]
    past = past[: past.index("</tr>")]
    assert '<small class="muted connection-past-error">past error <time' in past
    assert "3\xa0hours ago</time>, before it connected <time" in past
    assert (
        "2\xa0hours, 59\xa0minutes ago</time>: The Modbus device at 127.0.0.1:5020 refused the connection"
        in past
    )
    assert "<code>not reachable: ConnectionRefusedError: [Errno 111]</code></details>" in past
    assert "last error" not in past
    current = body[body.index(">line broker<") :]
    current = current[: current.index("</tr>")]
    assert '<span class="connection-last-error">last error <time' in current
    assert "5\xa0minutes ago</time>: Write-back: The MQTT broker at b:1883 did not answer in time" in current
    assert "<code>write-back: TimeoutError: no answer</code>" in current and "past error" not in current

    stamp = f"{now - timedelta(hours=3):%Y-%m-%d %H:%M:%S}"
    connected = f"{now - timedelta(hours=2, minutes=59):%Y-%m-%d %H:%M:%S}"
    page = engineer_client.get(reverse("admin:plant_connection_change", args=[plc.pk])).content.decode()
    assert f"past error ({stamp}, before it connected at {connected}): The Modbus device at" in page
    assert "(detail: not reachable: ConnectionRefusedError: [Errno 111])" in page
    page = engineer_client.get(reverse("admin:plant_connection_change", args=[broker.pk])).content.decode()
    assert f"last error ({now - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}): Write-back: The MQTT broker" in page
    assert "(detail: write-back: TimeoutError: no answer)" in page


def test_an_error_is_over_only_after_the_success_it_stopped():
    now = timezone.now()
    state = ConnectionState(
        last_error="write-back: ConnectionRefusedError",
        last_error_at=now - timedelta(hours=1),
        last_error_resolved_by="write",
        connected_at=now - timedelta(hours=2),
    )
    assert state.error_resolved() is None
    state.connected_at = now - timedelta(seconds=10)
    assert state.error_resolved() is None  # connecting again does not write back
    state.written_at = now - timedelta(minutes=1)
    assert state.error_resolved() == ("wrote back", now - timedelta(minutes=1))
    tried = ConnectionState(
        last_error="not reachable: ConnectionRefusedError",
        last_error_at=now - timedelta(hours=1),
        last_error_resolved_by="connect",
        written_at=now - timedelta(minutes=1),
    )
    assert tried.error_resolved() is None  # a write-back is no connection (another client of the device)
    tried.connected_at = now - timedelta(seconds=10)
    assert tried.error_resolved() == ("connected", now - timedelta(seconds=10))
    point = ConnectionState(
        last_error="unit 5 read_holding: no answer",
        last_error_at=now - timedelta(hours=1),
        connected_at=now,
        written_at=now,
    )
    assert point.error_resolved() is None  # a point's error: no success of the connection says it is over
    node = ConnectionState(
        last_error="spBv1.0/plant/edge1: no answer to 3 rebirth requests",
        last_error_at=now - timedelta(hours=1),
        last_error_resolved_by="birth",
        connected_at=now,
    )
    assert node.error_resolved() is None  # connected, but the node has not been born since
    node.last_error_resolved_at = now - timedelta(minutes=2)
    assert node.error_resolved() == ("saw the node born", now - timedelta(minutes=2))
    assert ConnectionState(connected_at=now).error_resolved() is None  # no error at all


def test_a_failing_connection_tells_plant_users_what_is_wrong_and_keeps_the_raw_error_for_engineers(
    site, engineer_client, technician
):
    # The site page showed technicians "ConnectionRefusedError: [Errno 111] Connect call failed (...)".
    raw = "not reachable: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 4840)"
    words = "The OPC UA server at 127.0.0.1:4840 refused the connection: is it running and is the port right?"
    server = Connection.objects.create(
        site=site, name="Press", protocol="opcua", endpoint="opc.tcp://127.0.0.1:4840"
    )
    ConnectionState.objects.create(
        connection=server,
        running=True,
        last_error=raw,
        last_error_at=timezone.now(),
        last_error_resolved_by="connect",  # a failed try, as the bridge stores it
        updated_at=timezone.now(),
    )
    listing = engineer_client.get(reverse("admin:plant_connection_changelist")).content.decode()
    assert f"disconnected: {words}" in listing
    page = engineer_client.get(reverse("admin:plant_connection_change", args=[server.pk])).content.decode()
    assert f"disconnected: {words}" in page
    assert f"{words} (detail: {raw})".replace("'", "&#x27;") in page
    engineer_client.force_login(technician)  # engineer_client is this client: the console first
    body = engineer_client.get(site.get_absolute_url()).content.decode()
    row = body[body.index(">Press<") :]
    row = row[: row.index("</tr>")]
    assert f'class="connection-status">disconnected: {words}</td>' in row
    assert f"</time>: {words}</span>" in row  # "just now"
    # The raw text once, folded away, for whoever needs it.
    assert row.count("ConnectionRefusedError") == 1
    assert (
        "<summary>Detail</summary><code>not reachable: ConnectionRefusedError: [Errno 111] Connect call"
        in row
    )
    assert ConnectionState.objects.get(pk=server.pk).last_error == raw, "what is stored does not change"
