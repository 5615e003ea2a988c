"""`manage.py demo`: run the whole product on one machine — Redis, web, worker and the plant simulator.

Seeds the demo site (unless --token is given), starts every process as a supervised child with its
output prefixed by its name, prints the URL and the logins, and on Ctrl-C or SIGTERM stops every process
it started. If one of them dies, the others are stopped too and the command fails naming it.

With ``--data skab`` (``make demo DATA=skab``) it also loads the SKAB normal data from VIGIL_DATA_DIR, makes
sure the SKAB testbed has an anomaly champion that never saw the replayed run (demo.skab) and
replays a recorded valve run through the API alongside the simulator (``manage.py replay``), so a real
pump fault opens an explained alert on the dashboard.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, connections
from uvicorn.config import LOGGING_CONFIG as UVICORN_LOGGING

from config.embedded_redis import host_port, redis_answers, server_command
from connectivity.mqtt import client_for, parse_endpoint
from connectivity.protocols import ConnectionConfig
from demo.cmms_inbox import seed_demo_cmms
from demo.seed import (
    DEMO_MQTT_JSON,
    DEMO_MQTT_SPARKPLUG,
    DEMO_MODBUS,
    DEMO_OPCUA,
    DEMO_EDGE,
    seed_demo_ot_connections,
    DEMO_ESCALATE_AFTER,
    DEMO_SITE,
    bootstrap_demo_champion,
    seed_demo_connection,
    demo_pump_tags,
)
from demo.edge_demo import OFFLINE_FLAG, EdgeDemo, prepare_edge_agent
from demo.skab import DEFAULT_RUN, ensure_champion
from demo.supervisor import ChildDied, StopRequested, Supervisor, web_server_command
from models_registry.services import ModelRejected, TrainingError
from plant.datasets import DatasetFormatError, DatasetMissing, UnknownSubset
from plant.management.base import VigilCommand, check_numbers
from plant.management.commands.simulate import DEFAULT_BATCH_S, check_fault_starts, check_span
from plant.simulator import FaultSchedule
from plant.simulator_client import sim_assets
from plant.sites import UnknownSite
from plant.models import ConnectionState, Gateway, Site
from plant.datasets import skab as skab_data

TOKEN_RE = re.compile(r"^GATEWAY_TOKEN=(\S+)", re.MULTILINE)
USER_RE = re.compile(r"^USER=(\S+) PASSWORD=(\S+) ROLE=(\S+)", re.MULTILINE)
WORKER_QUEUES = "default,ingest,scoring,explain,notify,outbound"
DATASETS = ("skab",)


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str


def parse_seed_output(text: str) -> tuple[str | None, list[Login]]:
    """The gateway token and the users from seed_demo's `GATEWAY_TOKEN=` and `USER= PASSWORD= ROLE=` lines."""
    token = TOKEN_RE.search(text)
    return (token.group(1) if token else None), [Login(*match) for match in USER_RE.findall(text)]


def web_log_config(access_log: Path) -> dict:
    """uvicorn's own logging config with its access log sent to a file instead of the terminal."""
    config = copy.deepcopy(UVICORN_LOGGING)
    config["formatters"]["access"]["use_colors"] = False
    config["handlers"]["access"] = {
        "class": "logging.FileHandler",
        "filename": str(access_log),
        "formatter": "access",
    }
    return config


def web_command(host: str, port: int, access_log: Path) -> list[str]:
    # One access-log line per simulator POST would drown the rest of the output, so it goes to a file.
    access_log.parent.mkdir(parents=True, exist_ok=True)
    log_config = access_log.with_name("web-logging.json")
    log_config.write_text(json.dumps(web_log_config(access_log), indent=1))
    # A stop waits at most 5 s for open requests (the supervisor kills after --stop-timeout anyway).
    return web_server_command(host, port, "--timeout-graceful-shutdown", "5", "--log-config", str(log_config))


def worker_command(var_dir: Path) -> list[str]:
    # The solo pool keeps one process and one SQLite connection; -B runs beat inside it for the schedule.
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "-Q", WORKER_QUEUES, "--pool", "solo", "--concurrency", "1", "-l", "info",
        "-B", "-s", str(var_dir / "celerybeat-schedule"), "-n", "vigil-demo@%h",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def simulator_command(
    url: str,
    token: str,
    backfill: int,
    speed: float | None,
    faults: str | None = None,
    mqtt: str | None = None,
    opcua_devices: dict[str, int] | None = None,
    modbus_devices: dict[str, int] | None = None,
) -> list[str]:
    argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "simulate", "--url", url]
    argv += ["--token", token, "--backfill", str(backfill)]
    if speed is not None:
        argv += ["--speed", str(speed)]
    if faults:
        argv += ["--faults", faults]
    if mqtt:
        argv += ["--mqtt", mqtt, "--mqtt-json", ",".join(DEMO_MQTT_JSON)]
        argv += ["--mqtt-sparkplug", ",".join(DEMO_MQTT_SPARKPLUG)]
    if opcua_devices:
        argv += ["--opcua-device", ",".join(f"{tag}:{port}" for tag, port in opcua_devices.items())]
    if modbus_devices:
        argv += ["--modbus-device", ",".join(f"{tag}:{port}" for tag, port in modbus_devices.items())]
    return argv


def broker_config(path: Path, host: str, port: int) -> Path:
    """The embedded amqtt broker's configuration: one TCP listener, anonymous clients (loopback only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "---\nlisteners:\n  default:\n    type: tcp\n"
        f"    bind: {host}:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
    )
    return path


def bridge_connected(connection_id: int) -> bool:
    """Whether the bridge reports the connection connected (its ConnectionState)."""
    try:
        return ConnectionState.objects.filter(connection_id=connection_id, connected=True).exists()
    finally:
        connections.close_all()  # the children hold SQLite's lock, not this process


def bridge_command(site: str) -> list[str]:
    return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bridge", "--site", site]


def replay_command(url: str, token: str, run: str, speed: float) -> list[str]:
    argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "replay", run, "--url", url]
    return argv + ["--token", token, "--speed", str(speed)]


def check_host(host: str, port: int) -> None:
    """A CommandError unless --host is an address of this machine the web server can listen on (uvicorn
    would fail on it only after Redis, the seed and the model had started)."""
    if not host.strip():
        raise CommandError("--host is empty: give the address the web server listens on, e.g. 127.0.0.1")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind((address[0], 0))
    except (OSError, UnicodeError) as exc:
        raise CommandError(f"--host {host[:100]!r}: the web server cannot listen there ({exc})") from None


def check_token(token: str) -> None:
    """A CommandError unless --token is a live gateway token of the demo site, whose pumps the simulator
    posts for (it would be refused with 401 only once every process had started)."""
    if not token.strip():
        raise CommandError(
            "--token is empty: give the demo site's gateway token, or leave it out to seed one"
        )
    try:
        gateway = Gateway.authenticate(token.strip())
        site = gateway.site.slug if gateway is not None else None
    except DatabaseError as exc:
        raise CommandError(f"cannot check --token: {exc} (has `manage.py migrate` run?)") from None
    if site is None:
        raise CommandError("--token: the gateway token is unknown or revoked; leave it out to seed a new one")
    if site != DEMO_SITE[0]:
        raise CommandError(f"--token is a gateway of site {site!r}; the demo simulates {DEMO_SITE[0]!r}")


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def broker_answers(host: str, port: int) -> bool:
    """True once the MQTT broker on ``host:port`` completes a handshake (CONNECT / CONNACK); a bare TCP probe
    would make the broker log an ERROR for a client that sent nothing."""

    async def handshake() -> None:
        async with client_for(
            ConnectionConfig("demo broker probe", f"mqtt://{host}:{port}"), persistent=False
        ):
            pass

    try:
        asyncio.run(asyncio.wait_for(handshake(), timeout=2.0))
    except (aiomqtt.MqttError, OSError, TimeoutError):
        return False
    return True


def web_answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


class Command(VigilCommand):
    help = (
        "Run the demo: embedded Redis, web server, Celery worker and the plant simulator. Ctrl-C stops all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address the web server listens on.")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--token", help="Gateway token for the simulator; without it seed_demo is run.")
        parser.add_argument(
            "--backfill", type=int, default=60, help="Minutes of history the simulator sends."
        )
        parser.add_argument("--speed", type=float, help="Simulator speed-up factor (default: its own).")
        parser.add_argument("--no-simulator", action="store_true", help="Run everything but the simulator.")
        parser.add_argument(
            "--no-model",
            action="store_true",
            help="Do not train the demo anomaly champion (without one no alerts open).",
        )
        parser.add_argument(
            "--faults", help="Simulator fault schedule (default: its own; see `manage.py simulate --help`)."
        )
        parser.add_argument(
            "--data",
            choices=DATASETS,
            help="also replay a real dataset run (skab: a SKAB valve fault) from VIGIL_DATA_DIR",
        )
        parser.add_argument(
            "--replay",
            default=None,
            help="the SKAB run --data replays (default valve1/12; its model never sees it)",
        )
        parser.add_argument(
            "--replay-speed", type=float, default=10.0, help="replay speed-up factor (default 10)"
        )
        parser.add_argument(
            "--mqtt-port", type=int, default=18830, help="Port of the embedded MQTT broker (default 18830)."
        )
        parser.add_argument(
            "--no-mqtt", action="store_true", help="No MQTT broker and bridge: every pump posts to the API."
        )
        parser.add_argument(
            "--ot-port",
            type=int,
            default=18840,
            help="First of four ports: the OPC UA PLC, the Modbus PLC, the edge agent's Modbus device and its "
            "link to the server (default 18840-18843).",
        )
        parser.add_argument("--no-edge", action="store_true", help="No edge agent: P-101 posts to the API.")
        parser.add_argument("--stop-timeout", type=float, default=10.0, help="Seconds before SIGKILL.")
        parser.add_argument("--ready-timeout", type=float, default=60.0, help="Seconds to wait for startup.")

    def handle(self, *args: object, **options: object) -> None:
        host, port = str(options["host"]), int(options["port"])
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a TCP port")
        if options["backfill"] < 0:
            raise CommandError("--backfill must be zero or more minutes")
        # Checked before anything starts: a bad value would otherwise surface as a child dying later.
        check_numbers(
            ("--speed", options["speed"], True),
            ("--replay-speed", options["replay_speed"], True),
            ("--stop-timeout", options["stop_timeout"], False),
            ("--ready-timeout", options["ready_timeout"], True),
        )
        for flag, first, count in (
            ("--mqtt-port", options["mqtt_port"], 1),
            ("--ot-port", options["ot_port"], 4),
        ):
            if not 0 < first <= 65536 - count:
                raise CommandError(f"{flag} {first}: the demo needs {count} TCP port(s) from it, up to 65535")
        check_host(host, port)
        if options["replay"] is not None and not options.get("data"):
            raise CommandError("--replay names the run --data replays: give --data skab with it")
        if options["replay"] is not None and not options["replay"].strip(" /"):
            # Read as left out, an empty value (an unset variable) replayed the default run.
            raise CommandError("--replay is empty: name a SKAB valve run, e.g. valve1/12, or leave it out")
        if not options["no_simulator"]:
            # The simulator child would refuse these only after every other process had started.
            speed = 1.0 if options["speed"] is None else float(options["speed"])
            check_span(int(options["backfill"]), speed, DEFAULT_BATCH_S, None)
        if options["token"] is not None and (not options["no_simulator"] or options.get("data")):
            check_token(str(options["token"]))  # the simulator's and the replay's
        if options.get("faults") and not options["no_simulator"]:
            self._check_faults(options)
        # The children open their own connections; an idle one here would only hold SQLite's lock.
        connections.close_all()
        # Readiness polls would otherwise log one "HTTP Request" line each at INFO.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        supervisor = Supervisor(out=self.stdout, stop_timeout=float(options["stop_timeout"]))
        supervisor.install_signal_handlers()
        if port_in_use(host, port):
            raise CommandError(f"something already listens on {host}:{port}; stop it or pass --port")
        if options.get("data"):
            options["replay"] = self._check_data(options)

        token, logins = options["token"], []
        url = f"http://{host}:{port}"
        failure: str | None = None
        try:
            # Redis first: seeding ingests the backfill, whose counters go to Redis.
            self._start_redis(supervisor, float(options["ready_timeout"]))
            if not token:
                token, logins = self._seed(supervisor, train=not options["no_model"])
            if options.get("data") and not options["no_model"]:
                self._skab_champion(supervisor, options["replay"])
            if not options["token"]:  # seeded here: the demo site's work orders go to the demo's CMMS
                try:
                    if seed_demo_cmms(os.environ.get("VIGIL_PUBLIC_URL", url)) is not None:
                        supervisor.say(
                            f"the demo site's work orders go to the demo CMMS inbox: {url}/demo/cmms/"
                        )
                finally:
                    connections.close_all()
            self._start_all(supervisor, host, port, url, token, options)
            self._print_banner(supervisor, url, logins)
            if (dead := supervisor.run_until_stopped()) is not None:
                failure = f"{dead.name} exited unexpectedly with code {dead.returncode}"
        except StopRequested:
            pass
        except ChildDied as exc:
            failure = str(exc)
        except TimeoutError as exc:
            failure = str(exc)
        finally:
            supervisor.stop_all()
        if failure:
            raise CommandError(f"{failure}; stopped the other processes (see the lines above)")
        supervisor.say("Vigil demo stopped; every process it started has exited.")

    def _seed(self, supervisor: Supervisor, train: bool = True) -> tuple[str, list]:
        buffer = io.StringIO()
        try:
            call_command("seed_demo", stdout=buffer)
            if train:
                # Without a champion the simulator's faults would open no alert.
                bootstrap_demo_champion(log=lambda line: supervisor.say(line, name="seed"))
        except CommandError as exc:
            raise CommandError(f"seed_demo failed: {exc}") from None
        except (ValueError, TrainingError, ModelRejected) as exc:
            raise CommandError(f"could not bootstrap the demo model: {exc}") from None
        finally:
            # The children open their own connections; an idle one here would only hold SQLite's lock.
            connections.close_all()
        supervisor.say(buffer.getvalue().rstrip(), name="seed")
        token, logins = parse_seed_output(buffer.getvalue())
        if not token:
            raise CommandError("seed_demo printed no GATEWAY_TOKEN=<token> line; pass --token instead")
        return token, logins

    def _check_faults(self, options: dict) -> None:
        """Refuse a --faults schedule the simulator would refuse (unknown pump, a start the run never
        reaches) before any process starts, instead of the demo stopping when the simulator exits. The pumps
        are the demo site's, and without --token also those seed_demo is about to make."""
        tags = set() if options["token"] else set(demo_pump_tags())
        try:
            site = Site.objects.filter(slug=DEMO_SITE[0]).first()
            if site is not None:
                tags |= {asset.tag for asset in sim_assets(site)[0]}
            if not tags:
                raise UnknownSite(f"the demo site {DEMO_SITE[0]!r} does not exist: drop --token to seed it")
            schedule = FaultSchedule.parse(options["faults"], sorted(tags))
        except (UnknownSite, ValueError) as exc:
            raise CommandError(f"--faults: {exc}") from None
        speed = 1.0 if options["speed"] is None else float(options["speed"])
        # The demo's simulator runs until stopped (no --duration) after its --backfill of history.
        check_fault_starts(schedule, int(options["backfill"]) * 60.0, None, speed)

    def _check_data(self, options: dict) -> str:
        """Fail before starting anything when the dataset is missing; returns the run to replay."""

        speed = float(options["replay_speed"])
        if not speed > 0:
            raise CommandError(f"--replay-speed must be positive (got {speed})")
        run = (options.get("replay") or DEFAULT_RUN).strip().strip("/")
        run = run.removeprefix("skab/")
        try:
            (file,) = skab_data.list_files([run])
        except UnknownSubset as exc:
            raise CommandError(f"--replay: {exc}") from None
        except DatasetMissing as exc:
            raise CommandError(
                f"--data skab: {exc}. VIGIL_DATA_DIR is {settings.VIGIL_DATA_DIR}; point it at the shared data "
                "folder (e.g. VIGIL_DATA_DIR=../shared/data make demo DATA=skab) or run plain `make demo`"
            ) from None
        except ValueError:
            raise CommandError(
                f"--replay {run!r} names several SKAB runs; name one, e.g. valve1/12"
            ) from None
        if file.number is None:
            raise CommandError(
                "--replay must be a valve run with a fault (e.g. valve1/12), not the anomaly-free run"
            )
        return file.ref

    def _skab_champion(self, supervisor: Supervisor, run: str) -> None:
        try:
            version = ensure_champion(run, log=lambda line: supervisor.say(line, name="skab"))
        except (DatasetMissing, DatasetFormatError) as exc:
            raise CommandError(f"--data skab: {exc}") from None
        except (ValueError, TrainingError, ModelRejected) as exc:
            raise CommandError(f"could not bootstrap the SKAB model: {exc}") from None
        finally:
            connections.close_all()
        if version is None:
            supervisor.say("the SKAB testbed already has an anomaly champion; keeping it", name="skab")

    def _start_redis(self, supervisor: Supervisor, timeout: float) -> None:
        """Start the embedded Redis (unless one already answers on REDIS_URL or Redis is not embedded)."""
        if not settings.REDIS_EMBEDDED:
            return
        redis_host, redis_port = host_port(settings.REDIS_URL)
        if redis_answers(redis_host, redis_port):
            supervisor.say(f"reusing the Redis that already answers on {redis_host}:{redis_port}")
            return
        command = server_command(redis_port, Path(settings.VAR_DIR) / "redis", redis_host)
        supervisor.start("redis", command, env=dict(os.environ), cwd=settings.BASE_DIR, stop_last=True)
        supervisor.wait_until(lambda: redis_answers(redis_host, redis_port), timeout, "embedded Redis")

    def _start_all(
        self, supervisor: Supervisor, host: str, port: int, url: str, token: str, options: dict
    ) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}
        env.setdefault("VIGIL_PUBLIC_URL", url)  # the links written back to the plant
        cwd = settings.BASE_DIR
        timeout = float(options["ready_timeout"])
        access_log = Path(settings.VAR_DIR) / "log" / "web-access.log"
        supervisor.start("web", web_command(host, port, access_log), env=env, cwd=cwd)
        supervisor.start("worker", worker_command(Path(settings.VAR_DIR)), env=env, cwd=cwd)
        supervisor.wait_until(
            lambda: web_answers(url + "/accounts/login/"), timeout, f"the web server at {url}"
        )
        # The broker and bridge carry the simulator's MQTT pumps (and write alert states back).
        with_mqtt = not (options.get("no_mqtt") or options["no_simulator"])
        base = int(options.get("ot_port") or 18840)
        self.ot_ports = {"opcua": base, "modbus": base + 1, "edge_modbus": base + 2, "edge_link": base + 3}
        if with_mqtt:
            for name, used in self.ot_ports.items():
                if port_in_use(host, used):
                    raise CommandError(f"something already listens on {host}:{used} ({name}); pass --ot-port")
        self.mqtt_url = self._start_mqtt(supervisor, host, env, options) if with_mqtt else None
        # The simulated PLCs (OPC UA, Modbus) are served by the simulator; the bridge reads them.
        opcua_devices = {tag: self.ot_ports["opcua"] for tag in DEMO_OPCUA} if self.mqtt_url else {}
        modbus_devices = {tag: self.ot_ports["modbus"] for tag in DEMO_MODBUS} if self.mqtt_url else {}
        self.edge = None
        if self.mqtt_url and not options.get("no_edge"):
            modbus_devices |= {tag: self.ot_ports["edge_modbus"] for tag in DEMO_EDGE}
            self.edge = self._prepare_edge(supervisor, host, url)
            if self.edge is None:
                modbus_devices = {t: p for t, p in modbus_devices.items() if t not in DEMO_EDGE}
        if not options["no_simulator"]:
            command = simulator_command(
                url,
                token,
                int(options["backfill"]),
                options["speed"],
                options.get("faults"),
                self.mqtt_url,
                opcua_devices,
                modbus_devices,
            )
            supervisor.start("simulator", command, env=env, cwd=cwd, stop_first=True)
        if self.edge is not None:
            self._start_edge(supervisor, host, port, env)
        if options.get("data"):
            command = replay_command(url, token, f"skab/{options['replay']}", float(options["replay_speed"]))
            # The replay ends after one run; the demo keeps going (its alert stays on the dashboard).
            supervisor.start("replay", command, env=env, cwd=cwd, stop_first=True, may_exit=True)

    def _start_mqtt(self, supervisor: Supervisor, host: str, env: dict, options: dict) -> str | None:
        """Start the embedded MQTT broker and the bridge (the demo connection seeded for it); the broker's
        URL, or None when there is no broker to run (said in the output; the rest of the demo goes on)."""
        if not Site.objects.filter(slug=DEMO_SITE[0]).exists():
            connections.close_all()
            supervisor.say(f"no site {DEMO_SITE[0]} (run seed_demo): every pump posts to the API, no MQTT")
            return None
        broker = Path(settings.VIGIL_DEMO_MQTT_BROKER)
        if not broker.exists():
            supervisor.say(
                f"no embedded MQTT broker at {broker} (`make demo` installs it): every pump posts to the API"
            )
            return None
        port = int(options.get("mqtt_port") or 18830)
        if port_in_use(host, port):
            raise CommandError(f"something already listens on {host}:{port}; stop it or pass --mqtt-port")
        config = broker_config(Path(settings.VAR_DIR) / "mqtt" / "amqtt.yaml", host, port)
        supervisor.start(
            "mqtt-broker", [str(broker), "-c", str(config)], env=env, cwd=settings.BASE_DIR, stop_last=True
        )
        supervisor.wait_until(
            lambda: broker_answers(host, port), float(options["ready_timeout"]), "the MQTT broker"
        )
        mqtt_url = f"mqtt://{host}:{port}"
        try:
            connection = seed_demo_connection(mqtt_url)
            seed_demo_ot_connections(
                f"opc.tcp://{host}:{self.ot_ports['opcua']}/vigil/",
                f"modbus://{host}:{self.ot_ports['modbus']}",
            )
        finally:
            connections.close_all()
        # The bridge reads the simulator's PLCs: it stops before the simulator does.
        supervisor.start(
            "bridge", bridge_command(DEMO_SITE[0]), env=env, cwd=settings.BASE_DIR, stop_early=True
        )
        # The simulator starts once the bridge has subscribed: what it publishes before would be lost.
        supervisor.wait_until(
            lambda: bridge_connected(connection.pk),
            float(options["ready_timeout"]),
            "the bridge's MQTT connection",
        )
        return mqtt_url

    def _prepare_edge(self, supervisor: Supervisor, host: str, url: str) -> EdgeDemo | None:
        """The edge agent's files and token (demo.edge_demo), or None (said in the output) without one."""
        workdir = Path(settings.VAR_DIR) / "demo" / "edge"
        link = f"http://{host}:{self.ot_ports['edge_link']}"
        try:
            made = prepare_edge_agent(workdir, link, f"modbus://{host}:{self.ot_ports['edge_modbus']}")
        finally:
            connections.close_all()
        if isinstance(made, str):
            supervisor.say(f"no edge agent: {made}; {DEMO_EDGE[0]} posts to the API")
            return None
        return made

    def _start_edge(self, supervisor: Supervisor, host: str, port: int, env: dict) -> None:
        flag = Path(settings.VAR_DIR) / "demo" / OFFLINE_FLAG
        flag.unlink(missing_ok=True)  # every demo starts online
        link = [sys.executable, "-m", "demo.edge_link", "--listen", str(self.ot_ports["edge_link"])]
        link += ["--to", f"{host}:{port}", "--flag", str(flag)]
        supervisor.start("edge-link", link, env=env, cwd=settings.BASE_DIR)
        agent_env = {**env, "VIGIL_GATEWAY_TOKEN": self.edge.token}
        agent = [sys.executable, "-m", "edge", "--config", str(self.edge.config)]
        supervisor.start("edge-agent", agent, env=agent_env, cwd=settings.BASE_DIR, stop_early=True)

    def _print_banner(self, supervisor: Supervisor, url: str, logins: list[Login]) -> None:
        first = next((login for login in logins if login.role == "technician"), logins[0] if logins else None)
        who = (
            f" — log in as {first.username} / {first.password}"
            if first
            else " — log in with the seed_demo users"
        )
        lines = [f"Vigil demo running at {url}/{who}"]
        lines += [
            f"    {login.username:<10} password {login.password:<22} ({login.role})" for login in logins
        ]
        lines += [
            f"    API docs: {url}/api/docs/   admin console: {url}/admin/",
            f"    notifications (as an engineer): {url}/notify/inbox/ — an alert left unacknowledged for "
            f"{DEMO_ESCALATE_AFTER.total_seconds() / 60:g} minutes escalates to the supervisor's box",
            f"    HTTP access log: {Path(settings.VAR_DIR) / 'log' / 'web-access.log'}",
            "    Ctrl-C stops everything.",
        ]
        if getattr(self, "mqtt_url", None):
            _, host, port = parse_endpoint(self.mqtt_url)
            watcher = Path(settings.VIGIL_DEMO_MQTT_BROKER).with_name("amqtt_sub")
            lines[-1:-1] = [
                f"    MQTT broker {self.mqtt_url}: {', '.join(DEMO_MQTT_JSON)} publish JSON, "
                f"{', '.join(DEMO_MQTT_SPARKPLUG)} Sparkplug B; the bridge stores them",
                "    watch alert states written back (retained, one per pump):",
                f"      mosquitto_sub -h {host} -p {port} -t 'vigil/#' -v",
                f"      or: {watcher} --url {self.mqtt_url} -t 'vigil/#'",
                f"    PLCs: {', '.join(DEMO_OPCUA)} over OPC UA (opc.tcp://127.0.0.1:{self.ot_ports['opcua']}/vigil/), "
                f"{', '.join(DEMO_MODBUS)} over Modbus TCP (127.0.0.1:{self.ot_ports['modbus']}); "
                "the site page shows the bridge's connections",
            ]
        if getattr(self, "edge", None) is not None:
            flag = Path(settings.VAR_DIR) / "demo" / OFFLINE_FLAG
            lines[-1:-1] = [
                f"    Edge agent: {self.edge.tag} is read by `python -m edge --config {self.edge.config}` from its "
                f"Modbus device and forwarded (Models → Edge agents shows it)",
                f"      cut its network: make edge-offline   (or: touch {flag})",
                f"      restore it:      make edge-online    (or: rm {flag}); its alerts arrive with their own times",
            ]
        supervisor.say("\n".join(lines))
