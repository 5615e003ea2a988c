"""Protocol latency benchmark: alert opening → write-back message, and MQTT publish → stored reading.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/protocol_latency.py [--alerts 40]

Needs PostgreSQL (drops and re-creates `<db>_protolat`; the URL's own database is never touched) and Debian's
mosquitto. One site of `--alerts` pumps (4 sensors each), a champion scoring the mean vibration
(bench/versions.py, open threshold 10), one MQTT connection reading every sensor and writing alert states
back, and `manage.py bridge --site` as a subprocess (as in production), all against that database.

1. Alert → write-back. Four minutes of normal history per pump are ingested and scored (no alert). Then, one
   pump at a time, three minutes of bearing wear are ingested and `score_assets` opens its alert in this
   process (the worker's code path); the clock starts when the alert's opening AlertEvent is saved (inside
   the scoring transaction: the commit is part of the measured time) and stops when an MQTT subscriber (a
   paho client of this process) receives the retained ``vigil/<site>/<tag>/alert`` message with state
   "open". A random pause of 0-0.3 s between pumps keeps the openings out of step with the bridge's outbox
   poll (VIGIL_WRITEBACK_POLL_S). Target p95 ≤ 500 ms.
2. Published → stored. `--readings` single readings are published one at a time (QoS 1, one message each,
   a mapped topic) and each is timed from just before the publish until a query sees its row in
   `plant_reading` (polled every 2 ms). Baseline in the same run: the same number of single readings POSTed
   to the HTTP API of a real uvicorn (bench/ingest.py's server) on the same database, timed until the
   answer (the API answers once the reading is stored).

Prints a markdown table and writes bench/results/protocol_latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402

from bench.common import machine, percentiles, pg_url, setup_django, write_results  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "protocol_latency.json"
SITE = "bench-loop"
PREFIX = "vigil"
TARGET_WRITEBACK_P95_MS = 500.0
NOMINAL = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}
NORMAL_S, WEAR_S = 240, 180


def pump_signals(start: float, seconds: int, vibration=None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """1 Hz times from `start` and each role's values: nominal with a little noise, the vibration following
    `vibration(t)` when given (a wearing bearing). Shared with tests/plant/test_protocol_alert_loop.py."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(seconds, dtype=np.float64)
    values = {
        role: (vibration(t) if role == "vibration" and vibration is not None else level)
        + rng.normal(0, 0.05, seconds)
        for role, level in NOMINAL.items()
    }
    return t, values


def wear(start: float, end: float, low: float = 2.0, high: float = 25.0):
    """Vibration rising from `low` to `high` between `start` and `end`: gradual, so the quality rules see no
    spike and the alert is a machine fault."""
    return lambda t: low + (high - low) * np.clip((t - start) / (end - start), 0.0, 1.0)


def setup(alerts: int, endpoint: str) -> dict:
    """The bench site, its pumps, champion, MQTT connection (read + write-back) and a gateway token."""
    from django.core.management import call_command

    from bench.versions import vibration_version
    from detection.features import feature_names
    from plant.builders import make_asset, make_site
    from plant.models import Connection, Gateway, PointMapping, Sensor

    call_command("migrate", "--noinput", verbosity=0)
    site = make_site(SITE)
    assets = [make_asset(site, tag=f"p-{i + 1:03d}") for i in range(alerts)]
    names = feature_names(sorted(NOMINAL))
    background = np.abs(np.random.default_rng(3).normal(2.0, 0.5, size=(20, len(names))))
    vibration_version(
        assets[0].asset_type, names, name="pump-vib", open_threshold=10.0, clear_threshold=5.0,
        background=background,
    )  # fmt: skip
    connection = Connection.objects.create(
        site=site, name="broker", endpoint=endpoint, interval_s=0.05, write_back=True,
        options={"qos": 1, "writeback_prefix": PREFIX},
    )  # fmt: skip
    sensors = list(Sensor.objects.filter(asset__site=site).select_related("role", "asset"))
    PointMapping.objects.bulk_create(
        PointMapping(connection=connection, sensor=s, address={"topic": f"bench/{s.key}", "value_path": "v", "ts_path": "t"})
        for s in sensors
    )  # fmt: skip
    return {
        "connection": connection.pk,
        "assets": {a.tag: a.pk for a in assets},
        "sensors": {(s.asset.tag, s.role.key): (s.key, s.pk) for s in sensors},
        "token": Gateway.issue(site, "bench")[1],
    }


def ingest(world: dict, tags: list[str], start: float, seconds: int, vibration=None) -> None:
    from plant.ingest import ParsedBatch, ingest_readings

    keys, ts, values = [], [], []
    for n, tag in enumerate(tags):
        t, series = pump_signals(start, seconds, vibration, seed=n)
        for role, v in series.items():
            keys += [world["sensors"][(tag, role)][0]] * seconds
            ts.append(t)
            values.append(v)
    ingest_readings(None, ParsedBatch.from_arrays(keys, np.concatenate(ts), np.concatenate(values)))


class Subscriber:
    """A paho client on its own thread that records when each asset's write-back state first arrives."""

    def __init__(self, port: int) -> None:
        self.received: dict[tuple[str, str], float] = {}
        self.lock = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-hmi")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/{SITE}/+/alert", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        at = time.time()
        tag = message.topic.split("/")[-2]
        state = orjson.loads(message.payload)["state"]
        with self.lock:
            self.received.setdefault((tag, state), at)
            self.lock.notify_all()

    def wait(self, tag: str, state: str, timeout: float = 15.0) -> float:
        with self.lock:
            if not self.lock.wait_for(lambda: (tag, state) in self.received, timeout):
                sys.exit(f"bench: no write-back message '{state}' for {tag} within {timeout:.0f} s")
            return self.received[(tag, state)]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def measure_write_back(world: dict, subscriber: Subscriber, now: float) -> list[float]:
    from django.db.models.signals import post_save

    from alerts.models import AlertEvent
    from alerts.scoring import score_assets

    opened: dict[int, float] = {}

    def stamp(sender, instance, created, **kwargs) -> None:
        if created and instance.to_state == "open":
            opened[instance.alert.asset_id] = time.time()

    post_save.connect(stamp, sender=AlertEvent, dispatch_uid="bench.protocol_latency")
    tags = sorted(world["assets"])
    start = now - NORMAL_S - WEAR_S - 5
    ingest(world, tags, start, NORMAL_S)
    score_assets(list(world["assets"].values()))
    fault_at = start + NORMAL_S
    samples = []
    for tag in tags:
        ingest(world, [tag], fault_at, WEAR_S, wear(fault_at + 20, fault_at + 140))
        score_assets([world["assets"][tag]])
        pk = world["assets"][tag]
        if pk not in opened:
            sys.exit(f"bench: the fault on {tag} opened no alert")
        samples.append((subscriber.wait(tag, "open") - opened[pk]) * 1000)
        time.sleep(random.uniform(0.0, 0.3))
    post_save.disconnect(sender=AlertEvent, dispatch_uid="bench.protocol_latency")
    return samples


def measure_mqtt_to_stored(world: dict, port: int, count: int, now: float) -> list[float]:
    from django.db import connection

    key, sensor_id = world["sensors"][(sorted(world["assets"])[0], "pressure")]
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    samples = []
    with connection.cursor() as cursor:
        for i in range(count):
            ts = now + 0.001 * (i + 1)  # after every stored reading of the sensor, distinct
            started = time.perf_counter()
            publisher.publish(f"bench/{key}", orjson.dumps({"t": ts, "v": 6.0}), qos=1)
            deadline = started + 15
            while True:
                cursor.execute(
                    "SELECT 1 FROM plant_reading WHERE sensor_id = %s AND ts = %s",
                    [sensor_id, dt.datetime.fromtimestamp(ts, dt.UTC)],
                )
                if cursor.fetchone():
                    break
                if time.perf_counter() > deadline:
                    sys.exit(f"bench: reading {i} published over MQTT was not stored within 15 s")
                time.sleep(0.002)
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(random.uniform(0.0, 0.1))
    publisher.loop_stop()
    publisher.disconnect()
    return samples


def measure_api(world: dict, env: dict[str, str], count: int, now: float) -> list[float]:
    from bench.ingest import Server

    key, _ = world["sensors"][(sorted(world["assets"])[0], "temperature")]
    server = Server(env)
    samples = []
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {world['token']}", "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            for i in range(-3, count):  # three untimed warm-up requests
                body = orjson.dumps(
                    {"readings": [{"sensor": key, "ts": now + 0.001 * (i + 10), "value": 50.0}]}
                )
                started = time.perf_counter()
                response = client.post("/api/v1/readings", content=body)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or response.json().get("accepted") != 1:
                    sys.exit(
                        f"bench: the API refused a reading: {response.status_code} {response.text[:300]}"
                    )
                if i >= 0:
                    samples.append(elapsed)
                time.sleep(random.uniform(0.0, 0.1))
    finally:
        server.stop()
    return samples


CONNECTION_SCRIPT = """
from plant.models import Connection, PointMapping, Sensor, Site
site = Site.objects.get(slug="demo-plant")
c = Connection.objects.create(site=site, name="bench broker", endpoint={endpoint!r}, **{fields!r},
    options={{"max_inflight": {inflight}}})
PointMapping.objects.bulk_create(PointMapping(connection=c, sensor=s, address={{"topic": "bench/" + s.key,
    "value_path": "v", "ts_path": "t"}}) for s in Sensor.objects.filter(asset__site=site))
print("CONNECTION", c.pk)
"""
CONNECTED_SCRIPT = (
    "from plant.models import ConnectionState as S; print('CONNECTED', S.objects.filter(connection={pk},"
    " connected=True).exists())"
)
BOARD_INFLIGHT = 1000  # the broker's in-flight window for the bridge, as bench/bridges.py sets it


@contextlib.contextmanager
def mqtt_transport(world, interval_s: float | None):
    """For bench/dashboard.measure_live: the world's demo site read over MQTT (mosquitto, one JSON point
    per sensor, `manage.py bridge --site demo-plant` in the world's environment; `interval_s` None: the
    connection's default, so the MQTT option flush_ms bounds the wait); gives the function that publishes a
    fault's readings, one QoS 1 message per reading, and returns once the broker has them."""
    workdir = world.workdir / "mqtt"
    workdir.mkdir(exist_ok=True)
    broker = Mosquitto(workdir)
    broker.config.write_text(broker.config.read_text() + f"max_inflight_messages {BOARD_INFLIGHT}\n")
    broker.start()
    bridge = publisher = None
    try:
        out = world.shell(
            CONNECTION_SCRIPT.format(
                endpoint=broker.endpoint,
                fields={} if interval_s is None else {"interval_s": interval_s},
                inflight=BOARD_INFLIGHT,
            )
        )
        pk = int(out.split("CONNECTION")[-1].split()[0])
        log = workdir / "bridge.log"
        bridge = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "bridge", "--site", "demo-plant"],
            cwd=ROOT, env=world.env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "CONNECTED True" not in world.shell(CONNECTED_SCRIPT.format(pk=pk)):
            if bridge.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: the world's bridge did not connect:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(0.5)  # subscribed
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-board-publisher")
        publisher.max_inflight_messages_set(BOARD_INFLIGHT)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()

        def send(readings: list[dict]) -> None:
            infos = [
                publisher.publish(
                    f"bench/{r['sensor']}", orjson.dumps({"t": r["ts"], "v": r["value"]}), qos=1
                )
                for r in readings
            ]
            for info in infos:
                info.wait_for_publish(30)

        yield send
    finally:
        if publisher is not None:
            publisher.loop_stop()
            publisher.disconnect()
        if bridge is not None:
            bridge.terminate()
            bridge.wait(20)
        broker.stop()


def measure_board(database_url: str, faults: int, interval_s: float | None) -> dict:
    """Published → card visible on the open board (bench/dashboard.py's browser measurement, its readings
    published over MQTT instead of POSTed), and the POST path in the same run as the baseline."""
    from bench.dashboard import measure_live

    mqtt = measure_live(database_url, faults, transport=lambda world: mqtt_transport(world, interval_s))
    api = measure_live(database_url, faults)
    return {"mqtt": mqtt, "api": api, "bridge_interval_s": interval_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=40, help="alerts opened (one per pump; default 40)")
    parser.add_argument("--readings", type=int, default=100, help="single readings per path (default 100)")
    parser.add_argument(
        "--board", type=int, default=0, help="faults for published → card visible (real browser; 0: skip)"
    )
    parser.add_argument(
        "--board-interval",
        type=float,
        default=None,
        help="the board run's connection interval_s (s; default: the connection's default, 1 s, so the "
        "MQTT option flush_ms bounds a message's wait)",
    )
    args = parser.parse_args()
    if args.alerts < 1 or args.readings < 1:
        sys.exit("--alerts and --readings must be at least 1")
    from config.scratch_db import prepare_postgres

    base_url = pg_url("bench/protocol_latency.py")
    database = prepare_postgres(base_url, "_protolat")
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-protolat-"))
    quiet = {"VIGIL_SCORING_ENQUEUE": "0", "LOG_LEVEL": "WARNING", "DEBUG": "0"}
    setup_django(database, workdir, **quiet)
    env = {**os.environ, **quiet, "DATABASE_URL": database, "VIGIL_VAR_DIR": str(workdir)}
    from django.conf import settings

    from plant.models import ConnectionState

    broker = Mosquitto(workdir)
    broker.start()
    bridge = None
    try:
        world = setup(args.alerts, broker.endpoint)
        log = workdir / "bridge.log"
        bridge = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "bridge", "--site", SITE],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not ConnectionState.objects.filter(connection=world["connection"], connected=True).exists():
            if bridge.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: the bridge did not connect:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(0.5)  # subscribed
        subscriber = Subscriber(broker.port)
        now = float(int(time.time()))
        write_back = measure_write_back(world, subscriber, now)
        print(f"bench: alert → write-back p50 {statistics.median(write_back):.0f} ms")
        subscriber.stop()
        mqtt = measure_mqtt_to_stored(world, broker.port, args.readings, now)
        print(f"bench: MQTT → stored p50 {statistics.median(mqtt):.0f} ms")
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(20)
        broker.stop()
    from django.db import connection

    connection.close()  # the web server gets the database to itself
    api = measure_api(world, env, args.readings, now + 60)
    print(f"bench: HTTP API → stored p50 {statistics.median(api):.0f} ms")

    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(load_average=os.getloadavg()[0]),
        "writeback_poll_s": settings.VIGIL_WRITEBACK_POLL_S,
        "alert_to_writeback_ms": percentiles(write_back),
        "mqtt_to_stored_ms": percentiles(mqtt),
        "api_to_stored_ms": percentiles(api),
        "targets": {"alert_to_writeback_p95_ms": TARGET_WRITEBACK_P95_MS},
    }
    if args.board:
        board = measure_board(base_url, args.board, args.board_interval)
        result["board"] = board
        for name, field in (("mqtt", "mqtt_to_card_ms"), ("api", "api_to_card_ms")):
            result[field] = {k: v for k, v in board[name].items() if k in ("n", "p50", "p95", "max", "mean")}
    result["met"] = {
        "alert_to_writeback_p95": result["alert_to_writeback_ms"]["p95"] <= TARGET_WRITEBACK_P95_MS
    }
    rows = [
        ("alert opened (AlertEvent saved) → retained write-back message received", "alert_to_writeback_ms"),
        ("value published over MQTT → reading stored (bridge)", "mqtt_to_stored_ms"),
        ("baseline: value POSTed to the HTTP API → answered, stored", "api_to_stored_ms"),
        (
            "fault's readings published over MQTT → alert card visible on the board (browser)",
            "mqtt_to_card_ms",
        ),
        ("baseline: fault's readings POSTed to the API → alert card visible (browser)", "api_to_card_ms"),
    ]
    table = ["| path | n | p50 (ms) | p95 (ms) | max (ms) |", "|---|---:|---:|---:|---:|"]
    for name, field in rows:
        if field not in result:
            continue
        r = result[field]
        table.append(f"| {name} | {r['n']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} |")
    result["table"] = "\n".join(table)
    print("\n" + result["table"])
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()
