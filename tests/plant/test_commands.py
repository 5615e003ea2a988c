"""The demo commands: seed_demo, create_gateway and simulate (posting through a mock HTTP transport)."""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import timedelta
from io import StringIO

import httpx
import numpy as np
import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from plant import simulator_client
from plant.access import can_see_health, is_engineer
from plant.models import Asset, Gateway, Label, Sensor, SensorRole, Site, SiteMembership
from tests.plant.mock_transport import django_ingest, route_simulator_client
from tests.conftest import login_request, make_asset, make_site

LINE = re.compile(
    r"^(GATEWAY_TOKEN=(?P<token>\S+)|USER=(?P<user>\S+) PASSWORD=(?P<password>\S+) ROLE=(?P<role>\S+))$"
)


@pytest.fixture(autouse=True)
def isolated_var_dir(settings, tmp_path):
    """Keep demo_credentials.json out of the real var/."""
    settings.VAR_DIR = tmp_path
    return tmp_path


def run(*args, **kwargs) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def seed(*args) -> tuple[str, dict[str, tuple[str, str]]]:
    """Run seed_demo and parse its output into (token, {username: (password, role)})."""
    out, _err = run("seed_demo", *args)
    token, users = None, {}
    for line in out.splitlines():
        match = LINE.match(line)
        assert match, f"unexpected output line {line!r}"
        if match["token"]:
            token = match["token"]
        else:
            users[match["user"]] = (match["password"], match["role"])
    assert token
    return token, users


def counts() -> dict[str, int]:
    models = (Site, Asset, Sensor, SensorRole, User, Gateway, SiteMembership)
    return {model.__name__: model.objects.count() for model in models}


# --- seed_demo -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_creates_the_demo_plant_with_sensors_keyed_by_site_asset_and_role():
    seed()

    demo, east = Site.objects.get(slug="demo-plant"), Site.objects.get(slug="east-works")
    assert demo.name == "Demo Plant"
    assert demo.assets.count() == 6 and east.assets.count() == 2
    assert len(set(demo.assets.values_list("criticality", flat=True))) == 3
    pump = demo.assets.get(tag="p-101")
    assert pump.asset_type.slug == "centrifugal-pump"
    assert set(pump.asset_type.roles.values_list("key", flat=True)) == {
        "vibration",
        "temperature",
        "current",
        "pressure",
        "flow",
    }
    sensor = Sensor.objects.get(key="demo-plant.p-101.flow")
    assert (sensor.unit, sensor.valid_min, sensor.valid_max, sensor.sample_period_s) == (
        "m³/h",
        0.0,
        600.0,
        1.0,
    )
    assert Sensor.objects.filter(asset__site=east).count() == 10
    assert Gateway.objects.get(name="demo-simulator").site == demo


@pytest.mark.django_db
def test_seed_demo_prints_users_whose_passwords_log_in_with_their_roles_and_sites():
    _token, users = seed()

    assert {name: role for name, (_pw, role) in users.items()} == {
        "tech1": "technician",
        "tech2": "technician",
        "supervisor": "supervisor",
        "engineer": "engineer",
        "outsider": "technician",
    }
    for username, (password, role) in users.items():
        user = authenticate(login_request(), username=username, password=password)
        assert user is not None, username
        if role != "supervisor":
            assert user.groups.filter(name=role).exists()
    engineer = User.objects.get(username="engineer")
    assert engineer.is_staff
    assert set(engineer.sites.values_list("slug", flat=True)) == {"demo-plant", "east-works"}
    assert list(User.objects.get(username="outsider").sites.values_list("slug", flat=True)) == ["east-works"]
    assert list(User.objects.get(username="tech1").sites.values_list("slug", flat=True)) == ["demo-plant"]
    assert not User.objects.get(username="tech1").is_staff


@pytest.mark.django_db
def test_seed_demo_prints_a_supervisor_who_sees_the_demo_sites_health_page_but_is_no_engineer(client):
    # The demo escalates unacknowledged alerts to a "Supervisor" box but had no supervisor to log in as.
    # A supervisor is what plant.access already calls one (a staff user of their sites), not a new group.
    _token, users = seed()
    password, role = users["supervisor"]
    assert role == "supervisor"
    assert not Group.objects.filter(name="supervisor").exists()

    assert client.login(username="supervisor", password=password)
    boss = User.objects.get(username="supervisor")
    assert boss.is_staff and not boss.groups.exists()
    assert list(boss.sites.values_list("slug", flat=True)) == ["demo-plant"]
    assert can_see_health(boss) and not is_engineer(boss)
    assert client.get(reverse("alerts:board")).status_code == 200
    health = client.get(reverse("alerts:health"))
    assert health.status_code == 200
    assert {row.label for row in health.context["report"].rows} <= {"Demo Plant"}
    assert client.get(reverse("alerts:noise")).status_code == 403  # an engineer's page


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_new_rotates_the_token_and_keeps_the_passwords(isolated_var_dir):
    first_token, first_users = seed()
    before = counts()
    gateway_pk = Gateway.objects.get(name="demo-simulator").pk

    second_token, second_users = seed()

    assert counts() == before
    assert second_token != first_token
    assert Gateway.authenticate(first_token) is None
    gateway = Gateway.authenticate(second_token)
    assert gateway is not None and gateway.pk == gateway_pk
    assert second_users == first_users
    for username, (password, _role) in second_users.items():
        assert authenticate(login_request(), username=username, password=password) is not None
    credentials = isolated_var_dir / "demo_credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text())["passwords"]["tech1"] == first_users["tech1"][0]


@pytest.mark.django_db
def test_seed_demo_resets_a_password_that_no_longer_matches_the_stored_one():
    _token, users = seed()
    tech1 = User.objects.get(username="tech1")
    tech1.set_password("changed-by-someone")
    tech1.save()

    _token, again = seed()

    assert again["tech1"] == users["tech1"]
    assert authenticate(login_request(), username="tech1", password=users["tech1"][0]) is not None


@pytest.mark.django_db
def test_seed_demo_takes_the_number_of_demo_assets():
    seed("--assets", "3")

    assert sorted(Site.objects.get(slug="demo-plant").assets.values_list("tag", flat=True)) == [
        "p-101",
        "p-102",
        "p-103",
    ]


@pytest.mark.django_db
def test_seed_demo_refuses_a_non_positive_asset_count():
    with pytest.raises(CommandError, match="--assets must be between 1 and"):
        run("seed_demo", "--assets", "0")


# --- create_gateway --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_gateway_prints_a_token_that_authenticates_for_the_site(site):
    out, _err = run("create_gateway", "north", "line-2 edge")

    match = re.fullmatch(r"GATEWAY_TOKEN=(\S+)\n", out)
    assert match
    gateway = Gateway.authenticate(match[1])
    assert gateway is not None
    assert (gateway.site, gateway.name) == (site, "line-2 edge")


@pytest.mark.django_db
def test_create_gateway_for_an_unknown_site_names_it_and_lists_the_known_ones(site, other_site):
    with pytest.raises(CommandError, match=r"unknown site 'west'; known sites: north, south"):
        run("create_gateway", "west", "edge")
    assert Gateway.objects.count() == 0


@pytest.mark.django_db
def test_create_gateway_refuses_an_empty_name(site):
    with pytest.raises(CommandError, match="name must not be empty"):
        run("create_gateway", "north", "   ")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Bytes that are not UTF-8 reach Python as lone surrogates (a UnicodeEncodeError in the database).
        (("north", "edge-\udcff"), r"name: 'edge-\\udcff' contains bytes that are not UTF-8"),
        (("north\udce9", "edge"), r"site: 'north\\udce9' contains bytes that are not UTF-8"),
        (("north", "edge\x00box"), r"name: 'edge\\x00box' contains a NUL character"),
    ],
)
def test_create_gateway_refuses_a_nul_or_bytes_that_are_not_utf8_naming_the_argument(site, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_gateway", *args)
    assert Gateway.objects.count() == 0


def test_every_command_of_the_project_checks_its_arguments_before_it_runs(settings):
    from pathlib import Path

    from django.apps import apps
    from django.core.management import get_commands, load_command_class

    from plant.management.base import VigilCommand

    base = Path(settings.BASE_DIR).resolve()
    # The project's apps are the packages at the top of the checkout (the virtualenv may live in it too).
    project_apps = {c.name for c in apps.get_app_configs() if Path(c.path).resolve().parent == base}
    ours = {name: app for name, app in get_commands().items() if app in project_apps}
    assert {"create_gateway", "load_dataset", "train_model", "evaluate", "demo"} <= set(ours)
    for name, app in ours.items():
        assert isinstance(load_command_class(app, name), VigilCommand), name


# --- simulate --------------------------------------------------------------------------------------------


class FakeIngestApi:
    """A stand-in for POST /api/v1/readings that records what it receives and answers per the contract."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.readings: list[dict] = []
        self.fail_first = fail_first
        self.status = status
        self.interrupt_at: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) == self.interrupt_at:
            raise KeyboardInterrupt  # what Ctrl-C looks like in the middle of a request
        if len(self.requests) <= self.fail_first:
            raise httpx.ConnectError("Connection refused", request=request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "invalid or revoked gateway token"})
        body = json.loads(request.content)
        self.readings.extend(body["readings"])
        return httpx.Response(200, json={"accepted": len(body["readings"]), "duplicates": 0, "rejected": []})


# simulate on the north site for one minute of backfill and no live part
SIMULATE_NORTH_ONE_MINUTE = (
    "simulate",
    "--site",
    "north",
    "--token",
    "t",
    "--backfill",
    "1",
    "--duration",
    "0",
)


@pytest.fixture
def fake_api(monkeypatch):
    api = FakeIngestApi()
    route_simulator_client(monkeypatch, api)
    monkeypatch.setattr(simulator_client, "_BACKOFF_START_S", 0.001)
    return api


@pytest.fixture
def north_pumps(site):
    return [make_asset(site, "p-101"), make_asset(site, "p-102")]


@pytest.mark.django_db
def test_simulate_backfills_every_sensor_once_per_second_through_the_api(fake_api, north_pumps):
    out, _err = run(
        "simulate",
        "--site",
        "north",
        "--token",
        "tok-1",
        "--backfill",
        "2",
        "--duration",
        "0",
        "--faults",
        "none",
    )

    sensors = set(Sensor.objects.filter(asset__site__slug="north").values_list("key", flat=True))
    assert len(sensors) == 8
    assert len(fake_api.readings) == 120 * 8
    assert {r["sensor"] for r in fake_api.readings} == sensors
    for key in sensors:
        stamps = sorted(r["ts"] for r in fake_api.readings if r["sensor"] == key)
        assert len(stamps) == 120 and stamps[-1] - stamps[0] == 119
    request = fake_api.requests[0]
    assert request.method == "POST" and request.url == "http://127.0.0.1:8000/api/v1/readings"
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert "simulate finished: sent 960 readings" in out and "accepted 960" in out


@pytest.mark.django_db
def test_a_restarted_simulate_backfills_only_after_each_sensors_last_stored_reading(
    fake_api, north_pumps, monkeypatch
):
    # The last run's readings of one pump came through a bridge: stamped with the receive time, off the grid.
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from plant.management.commands import simulate as simulate_command
    from plant.models import Reading

    # Both runs below start at the same wall-clock time: the simulator's state depends on its start, so a
    # second boundary crossed between the runs would change every value (CI failed on that once).
    now = time.time()
    monkeypatch.setattr(simulate_command, "time", SimpleNamespace(time=lambda: now))

    # A run that sends the whole backfill: the history below is this run's own data, so a resumed run
    # continues it exactly (its offset to the stored level is 0).
    args = ("simulate", "--site", "north", "--token", "tok-1", "--backfill", "2", "--duration", "0")
    run(*args, "--faults", "none")
    full = {(r["sensor"], r["ts"]): r["value"] for r in fake_api.readings}
    fake_api.readings.clear()

    # The other pump's readings came through the API, on the grid, and stop about a minute earlier.
    bridged, posted = list(north_pumps[0].sensors.all()), list(north_pumps[1].sensors.all())
    last = now - 30.4
    Reading.objects.bulk_create(
        Reading(
            sensor=sensor,
            ts=datetime.fromtimestamp(last - k, UTC),
            value=full[sensor.key, float(int(last - k))],
        )
        for sensor in bridged
        for k in range(60)
    )
    earlier = float(int(last - 55))
    Reading.objects.bulk_create(
        Reading(
            sensor=sensor, ts=datetime.fromtimestamp(earlier - k, UTC), value=full[sensor.key, earlier - k]
        )
        for sensor in posted
        for k in range(30)
    )
    out, _err = run(*args, "--faults", "none")

    for sensor in bridged:
        stamps = sorted(r["ts"] for r in fake_api.readings if r["sensor"] == sensor.key)
        assert stamps[0] > last and stamps[0] - last < 1.0  # the next sample after the last stored one
        assert len(stamps) >= 29 and stamps[-1] - stamps[0] == len(stamps) - 1  # then every second to now
    for sensor in posted:
        stamps = sorted(r["ts"] for r in fake_api.readings if r["sensor"] == sensor.key)
        assert stamps[0] == earlier + 1 and stamps[-1] - stamps[0] == len(stamps) - 1
    assert "8 sensors resume after their last stored reading" in out

    # The resumed series continues the simulator's state (the temperature lag) and the stored level: the
    # same values as the run that sent the whole backfill (but for the 5 decimals the API is sent), with no
    # step at the seam; the bridged pump's stored stamps are 0.4 s late, which shifts its level a little.
    resumed = {(r["sensor"], r["ts"]): r["value"] for r in fake_api.readings}
    assert resumed.keys() <= full.keys() and len(resumed) > 200
    keys = {sensor.key for sensor in posted}
    assert max(abs(resumed[k] - full[k]) for k in resumed if k[0] in keys) < 1e-4
    for sensor in bridged:  # off by less than the sensor moves in a second
        series = [full[k] for k in sorted(full) if k[0] == sensor.key]
        moves = np.abs(np.diff(series)).max()
        assert max(abs(resumed[k] - full[k]) for k in resumed if k[0] == sensor.key) < moves


@pytest.mark.django_db
def test_a_simulate_restarted_later_continues_every_sensor_without_a_step_or_a_flag_at_the_seam(
    north_pumps, gateway_token, monkeypatch
):
    # QA: a demo restart started the simulator afresh (a new fault origin, no wear) right after the last
    # stored reading: P-105's temperature stepped from 44.9 to 35.4 °C, flagged as spikes, and alerts opened.
    from types import SimpleNamespace

    from plant.management.commands import simulate as simulate_command
    from plant.models import Reading

    route_simulator_client(monkeypatch, django_ingest())  # the real ingestion view, quality flags and all
    clock = SimpleNamespace(time=lambda: start)
    monkeypatch.setattr(simulate_command, "time", clock)
    start = time.time() - 600
    args = ("simulate", "--site", "north", "--token", gateway_token, "--backfill", "10", "--duration", "0")
    # The first run stops in the middle of a bearing wear (temperature, current, vibration raised) and of a
    # temperature sensor's calibration drift.
    run(*args, "--faults", "bearing_wear@p-101:-6m:20m,calibration_drift@p-102.temperature:-6m:20m")
    assert Label.objects.filter(asset__site__slug="north", fault_type="bearing_wear").exists()
    sensors = list(Sensor.objects.filter(asset__site__slug="north"))
    ends = {sensor.key: Reading.objects.filter(sensor=sensor).latest("ts") for sensor in sensors}

    # Restarted five minutes later (a later wall clock, so a new origin), without those faults.
    clock.time = lambda: start + 300
    out, _err = run(*args, "--faults", "none")
    assert "8 sensors resume after their last stored reading" in out

    for sensor in sensors:
        end = ends[sensor.key]
        before = (
            Reading.objects.filter(sensor=sensor, ts__lte=end.ts)
            .order_by("ts")
            .values_list("value", flat=True)
        )
        moves = np.abs(np.diff(list(before)))  # one-second changes of the first run: noise and duty ramps
        first = Reading.objects.filter(sensor=sensor, ts__gt=end.ts).earliest("ts")
        assert (first.ts - end.ts).total_seconds() == 1.0
        # Half again the biggest move in 10 min: one more draw of the same noise is all but never above it.
        assert abs(first.value - end.value) <= 1.5 * moves.max(), (
            sensor.key,
            end.value,
            first.value,
            moves.max(),
        )
        if sensor.role.key == "temperature":  # a lag: its noise is all that moves it in a second
            sigma = float(np.median(moves)) / 0.954  # the median |difference| of two N(0, s²) draws
            assert abs(first.value - end.value) < 5 * sigma, (sensor.key, end.value, first.value, sigma)
        seam = Reading.objects.filter(
            sensor=sensor, ts__gt=end.ts - timedelta(seconds=30), ts__lte=end.ts + timedelta(seconds=120)
        )
        assert set(seam.values_list("quality", flat=True)) == {0}, sensor.key


@pytest.mark.django_db
def test_simulate_takes_the_token_from_the_environment_and_limits_the_assets(
    fake_api, north_pumps, monkeypatch
):
    monkeypatch.setenv("GATEWAY_TOKEN", "from-env")
    run(
        "simulate",
        "--site",
        "north",
        "--assets",
        "1",
        "--backfill",
        "1",
        "--duration",
        "0",
        "--url",
        "http://vigil:9000/",
    )

    assert {r["sensor"].split(".")[1] for r in fake_api.readings} == {"p-101"}
    assert fake_api.requests[0].headers["Authorization"] == "Bearer from-env"
    assert str(fake_api.requests[0].url) == "http://vigil:9000/api/v1/readings"


@pytest.mark.django_db
def test_simulate_streams_live_batches_until_the_duration_ends(fake_api, north_pumps):
    out, _err = run(
        "simulate", "--site", "north", "--token", "t", "--duration", "1.2", "--batch-seconds", "0.3",
        "--speed", "5", "--faults", "none",
    )  # fmt: skip

    assert len(fake_api.requests) >= 3, "one request per batch"
    assert 8 * 5 <= len(fake_api.readings) <= 8 * 7, "1.2 s at 5x is 6 simulated seconds"
    stamps = sorted({r["ts"] for r in fake_api.readings})
    assert stamps[-1] <= time.time(), "a bounded fast run ends at the wall clock, not in the future"
    assert "simulate finished" in out


@pytest.mark.django_db
def test_simulate_records_an_injected_fault_as_a_simulator_label(fake_api, north_pumps):
    run(
        "simulate", "--site", "north", "--token", "t", "--backfill", "5", "--duration", "0",
        "--faults", "spikes@p-102.vibration:-4m:4m",
    )  # fmt: skip

    label = Label.objects.get()
    assert (label.asset.tag, label.kind, label.fault_type, label.source) == (
        "p-102",
        "fault",
        "spikes",
        "simulator",
    )
    # 4 min: 24 of the simulator's 10-s spike buckets, each firing with p = 0.3 (90 s left a 4 % chance of none).
    assert label.end - label.start == timedelta(minutes=4)
    spiked = [r for r in fake_api.readings if r["sensor"] == "north.p-102.vibration" and r["value"] > 7]
    assert spiked and all(label.start.timestamp() <= r["ts"] < label.end.timestamp() for r in spiked)


@pytest.mark.django_db
def test_simulate_turns_a_refused_token_into_a_clear_error(fake_api, north_pumps):
    fake_api.status = 401

    with pytest.raises(
        CommandError, match=r"refused the gateway token \(HTTP 401: invalid or revoked gateway token\)"
    ):
        run("simulate", "--site", "north", "--token", "wrong", "--backfill", "1", "--duration", "0")
    assert len(fake_api.requests) == 1, "a refused token is not retried"


@pytest.mark.django_db
def test_simulate_retries_an_unreachable_server_with_a_message(fake_api, north_pumps):
    fake_api.fail_first = 2

    out, err = run(
        *SIMULATE_NORTH_ONE_MINUTE,
        "--faults",
        "none",
    )

    assert err.count("cannot reach http://127.0.0.1:8000/api/v1/readings (ConnectError") == 2
    assert "retry 1/8" in err
    assert len(fake_api.readings) == 60 * 8
    assert "simulate finished" in out


@pytest.mark.django_db
def test_simulate_gives_up_on_a_server_that_stays_unreachable(fake_api, north_pumps):
    fake_api.fail_first = 100

    with pytest.raises(
        CommandError, match=r"gave up after 3 attempts: cannot reach .* Is the server running"
    ):
        run(
            *SIMULATE_NORTH_ONE_MINUTE,
            "--max-retries",
            "2",
        )


@pytest.mark.django_db
def test_simulate_without_a_token_says_how_to_get_one(fake_api, north_pumps, monkeypatch):
    monkeypatch.delenv("GATEWAY_TOKEN", raising=False)

    with pytest.raises(CommandError, match="no gateway token: pass --token or set GATEWAY_TOKEN"):
        run("simulate", "--site", "north")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "west"], "unknown site 'west'; known sites: north"),
        (["--speed", "0"], "--speed must be positive"),
        (["--backfill", "-1"], "--backfill must be >= 0"),
        (["--faults", "melting@p-101:0:60"], "--faults: unknown fault kind 'melting'"),
        # Each of these was a traceback: OverflowError, numpy's "Maximum allowed size exceeded", InvalidURL.
        (
            ["--backfill", "1e308"],
            "--backfill must be at most 5256000 minutes: the API refuses readings older",
        ),
        (["--speed", "1e308", "--duration", "1"], "--speed 1e+308 simulates more than 3650 days per"),
        (["--url", "http://[::1"], "--url: 'http://[::1' is not a URL: Invalid port"),
        (
            ["--url", "127.0.0.1:8000"],
            "--url: '127.0.0.1:8000' is not an http:// or https:// URL of a server",
        ),
    ],
)
def test_simulate_refuses_bad_options_with_a_message(fake_api, north_pumps, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("simulate", "--token", "t", "--site", "north", "--duration", "0", *args)
    assert fake_api.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Each was accepted and scheduled a fault that never happened, with nothing said.
        (
            ["--backfill", "5", "--faults", "bearing_wear@p-101:72h:10m"],
            "--faults: bearing_wear@p-101 starts 3 days (259200 s) into the run, but --duration 0 at --speed 1"
            " simulates no live part, only the --backfill: it would never happen",
        ),
        (
            ["--duration", "60", "--faults", "spikes@p-102.vibration:90s:30s"],
            "--faults: spikes@p-102.vibration starts 2 min (90 s) into the run, but --duration 60 at --speed 1"
            " simulates 1 min (60 s): it would never happen",
        ),
        (
            ["--duration", "30", "--speed", "2", "--faults", "cavitation@p-101:1m:1m"],
            "--faults: cavitation@p-101 starts 1 min (60 s) into the run, but --duration 30 at --speed 2",
        ),
        (
            ["--backfill", "5", "--faults", "bearing_wear@p-101:-10m:5m"],
            "--faults: bearing_wear@p-101 starts 10 min (600 s) before the live start, but --backfill 5 sends"
            " 5 min (300 s) of history before it: it would never happen",
        ),
        (
            ["--duration", "60", "--faults", "cavitation@p-101:-30:60"],
            "--faults: cavitation@p-101 starts 30 s before the live start, but no --backfill of history",
        ),
        (
            ["--duration", "60", "--faults", "cavitation@p-101:10s:1m,cavitation@p-102:99999999999999h:1m"],
            "--faults: cavitation@p-102 starts 3.6e+17 s into the run",
        ),
    ],
)
def test_simulate_refuses_a_fault_that_starts_outside_the_run(fake_api, north_pumps, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("simulate", "--token", "t", "--site", "north", "--duration", "0", *args)
    assert fake_api.requests == [] and not Label.objects.exists()


@pytest.mark.django_db
def test_simulate_without_a_duration_refuses_a_fault_a_day_or_more_away(fake_api, north_pumps):
    with pytest.raises(
        CommandError,
        match=re.escape(
            "--faults: bearing_wear@p-101 starts 24 h (86400 s) into the run; without --duration a fault must"
            " start less than 24 h (86400 s) into it (give --duration for a longer run)"
        ),
    ):
        run("simulate", "--token", "t", "--site", "north", "--faults", "bearing_wear@p-101:24h:10m")
    assert fake_api.requests == []


@pytest.mark.django_db
def test_simulate_injects_a_fault_at_every_start_form_the_help_names(fake_api, north_pumps):
    # Seconds bare or with s, minutes, hours, decimals, negative inside the backfill, up to the run's end:
    # 2 min of history and 0.25 s at 480x = 120 s live.
    faults = [
        "spikes@p-101.vibration:-2m:30s",
        "cavitation@p-102:-90:1m:1.5",
        "stuck_sensor@p-101.pressure:0.01h:20",
        "calibration_drift@p-102.temperature:1.5m:10s",
        "bearing_wear@p-101:119s:30",
    ]
    out, _err = run(
        "simulate", "--site", "north", "--token", "t", "--backfill", "2", "--duration", "0.25",
        "--speed", "480", "--faults", ",".join(faults),
    )  # fmt: skip

    assert "5 scheduled faults" in out and "simulate finished" in out
    labels = {(label.asset.tag, label.fault_type) for label in Label.objects.select_related("asset")}
    assert labels == {
        ("p-101", "spikes"),
        ("p-102", "cavitation"),
        ("p-101", "stuck_sensor"),
        ("p-102", "calibration_drift"),
        ("p-101", "bearing_wear"),
    }


@pytest.mark.django_db
def test_simulate_refuses_a_site_without_assets(fake_api):
    make_site("empty")

    with pytest.raises(CommandError, match="site 'empty' has no assets with sensors to simulate"):
        run("simulate", "--token", "t", "--site", "empty", "--duration", "0")


@pytest.mark.django_db
def test_ctrl_c_stops_the_simulation_with_a_summary_and_closes_the_open_fault_label(fake_api, north_pumps):
    fake_api.interrupt_at = 2

    out, _err = run(
        "simulate", "--site", "north", "--token", "t", "--backfill", "3",
        "--batch-seconds", "0.05", "--max-retries", "0", "--faults", "bearing_wear@p-101:-150s:10m",
    )  # fmt: skip

    assert "simulate stopped: sent" in out
    label = Label.objects.get()
    assert label.fault_type == "bearing_wear"
    assert label.end - label.start < timedelta(minutes=10), "the label ends where the data sent ends"


@pytest.mark.django_db
def test_recording_a_fault_label_again_extends_it_instead_of_duplicating_it(north_pumps):
    from plant.simulator import Fault, FaultOccurrence
    from plant.simulator_labels import record_fault_label

    fault = Fault("cavitation", "p-101", None, 0.0, 300.0)
    occurrence = FaultOccurrence(fault, 1_767_600_000.0, 1_767_600_300.0)

    record_fault_label(north_pumps[0], occurrence, until=1_767_600_100.0)
    record_fault_label(north_pumps[0], occurrence, until=1_767_600_900.0)

    label = Label.objects.get()
    assert label.end - label.start == timedelta(seconds=300)
