"""A live Vigil for the dashboard benchmark and the browser tests (tests/e2e import it from here): its own database, Redis, web server
(uvicorn, WebSockets) and Celery worker, started through `manage.py demo --no-simulator`.

pytest-django's test database lives inside the pytest process and cannot be shared with subprocesses, so
this module builds a separate world: a fresh SQLite file in a temp dir (or, when DATABASE_URL names
PostgreSQL, a `<db>_e2e` database that it drops and re-creates), migrates it, seeds the demo plant with a
champion anomaly model trained on fault-free history, scores that history once, then starts the demo's
processes. Faults are injected through the real gateway API (`POST /api/v1/readings`), so an alert takes
the product's whole path: ingestion → due mark → Celery → scorer → alert → broadcast → WebSocket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psutil

from bench.common import free_port
from config.scratch_db import prepare_postgres

ROOT = Path(__file__).resolve().parent.parent
# A Redis DB number of its own when the suite runs against a shared Redis (CI): the worker and the channel
# layer of this world must not take tasks or messages meant for anyone else.
SHARED_REDIS_DB = 14
# The seeded history ends this long before "now", so every asset has a timeline of its own to inject
# readings into (the API accepts readings up to VIGIL_INGEST_MAX_FUTURE_S = 300 s ahead of the clock).
HISTORY_ENDS_AGO_S = 600.0
READY_RE = re.compile(r"Vigil demo running at (http://\S+)/")
# Every alert of the world's database, for `World.alerts` (a healthy world starts without any).
ALERTS_SCRIPT = """
import json
from alerts.models import Alert
print("ALERTS=" + json.dumps([
    {"id": a.pk, "asset": a.asset.tag, "category": a.category, "kind": a.kind, "state": a.state,
     "title": str(a), "sensor": a.sensor.key if a.sensor_id else None, "role": a.dominant_role,
     "opened_at": a.opened_at.isoformat(), "peak_score": a.peak_score,
     "events": [e.reason for e in a.events.order_by("pk")]}
    for a in Alert.objects.select_related("asset", "sensor").order_by("pk")
]))
"""

SEED_SCRIPT = """
import json, time
from pathlib import Path
from django.db.models import Max
from alerts.scoring import score_assets
from plant.models import Asset, Reading
from demo.seed import bootstrap_demo_champion, seed_demo

seed = seed_demo(assets={assets}, credentials_path=Path({credentials!r}))
bootstrap_demo_champion(hours={hours}, now=time.time() - {ends_ago}, log=lambda line: None)
assets = list(Asset.objects.select_related("site").order_by("pk"))
score_assets([a.pk for a in assets])  # the history once, here, so that the worker starts idle
last = dict(
    Reading.objects.values("sensor__asset__tag").annotate(m=Max("ts")).values_list("sensor__asset__tag", "m")
)
print("WORLD=" + json.dumps({{
    "token": seed.gateway_token,
    "users": {{u: p for u, p, _ in seed.users}},
    "assets": {{a.tag: {{"id": a.pk, "name": a.name, "site": a.site.slug,
                         "last_ts": last[a.tag].timestamp() if a.tag in last else None}} for a in assets}},
}}))
"""


@dataclass
class AssetInfo:
    """A seeded asset and the end of its readings' timeline (where the next injection continues)."""

    tag: str
    id: int
    name: str
    site: str
    last_ts: float | None
    fault_origin: float | None = None  # start of the fault being injected, so that a later batch continues it


@dataclass
class World:
    """A running Vigil: its URL, gateway token, users' passwords and assets; see `start_world`."""

    base_url: str
    token: str
    passwords: dict[str, str]
    assets: dict[str, AssetInfo]
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)
    redis: object | None = None  # config.embedded_redis.EmbeddedRedis when this world started its own
    # The alerts present once the world was up (see `start_world`): none unless the product raised one on
    # the healthy seeded history.
    startup_alerts: list[dict] = field(default_factory=list)
    _seen: dict[int, psutil.Process] = field(default_factory=dict)
    _inject_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- readings through the gateway API ---------------------------------------------------------------
    def post_readings(self, readings: list[dict]) -> dict:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            response = client.post(
                "/api/v1/readings",
                content=json.dumps({"readings": readings}),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
        if response.status_code != 200:
            raise AssertionError(f"POST /api/v1/readings gave {response.status_code}: {response.text[:300]}")
        body = response.json()
        if body.get("rejected"):
            raise AssertionError(f"readings rejected: {body['rejected'][:3]}")
        return body

    def fault_readings(self, tag: str, seconds: float = 180.0, severity: float = 1.0) -> list[dict]:
        """Readings that continue `tag`'s timeline for `seconds`: 30 s normal, then simulated bearing wear
        ramping up over 5 minutes (a later call continues the same fault). A gradual ramp keeps the quality
        flags quiet (no spikes), so the alert is a machine fault, and 3 windows past the open threshold
        arrive within one batch, so one scoring run opens it."""
        return self._simulated(tag, seconds, fault=("bearing_wear", None, 300.0, severity))

    def sensor_fault_readings(
        self,
        tag: str,
        kind: str,
        role: str,
        seconds: float = 180.0,
        *,
        duration_s: float = 600.0,
        severity: float = 1.0,
    ) -> list[dict]:
        """Readings that continue `tag`'s timeline for `seconds`: 30 s normal, then the simulator's sensor
        fault `kind` (plant.simulator.SENSOR_FAULTS: stuck_sensor, spikes, calibration_drift) on the `role`
        sensor for `duration_s` (a later call continues the same fault; the machine itself stays healthy)."""
        from plant.simulator import SENSOR_FAULTS

        if kind not in SENSOR_FAULTS:
            raise ValueError(f"{kind!r} is not a sensor fault of the simulator ({', '.join(SENSOR_FAULTS)})")
        return self._simulated(tag, seconds, fault=(kind, role, duration_s, severity))

    def normal_readings(self, tag: str, seconds: float = 90.0) -> list[dict]:
        """Fault-free readings that continue `tag`'s timeline (enough of them close its alert)."""
        return self._simulated(tag, seconds, fault=None)

    def _simulated(
        self, tag: str, seconds: float, fault: tuple[str, str | None, float, float] | None
    ) -> list[dict]:
        """`seconds` of `tag`'s readings after its timeline's end; `fault` is (kind, sensor role or None,
        duration s, severity), starting 30 s into the first call that names one."""
        from plant.simulator import Fault, FaultSchedule, PlantSimulator, SimAsset

        with self._inject_lock:
            asset = self.assets[tag]
            last = float(asset.last_ts or time.time() - HISTORY_ENDS_AGO_S)
            start, end = last + 1.0, last + 1.0 + seconds
            if end > time.time() + 290.0:
                raise AssertionError(
                    f"{tag}'s timeline is used up (it would reach {end - time.time():.0f} s ahead)"
                )
            asset.last_ts = end - 1.0
            if fault is None:
                asset.fault_origin = None
            elif asset.fault_origin is None:
                asset.fault_origin = start + 30.0
            origin = asset.fault_origin or start
        sensors = {
            role: f"{asset.site}.{tag}.{role}"
            for role in ("vibration", "temperature", "current", "pressure", "flow")
        }
        faults = FaultSchedule([Fault(fault[0], tag, fault[1], 0.0, fault[2], fault[3])] if fault else [])
        simulator = PlantSimulator([SimAsset(tag, sensors)], seed=0, faults=faults, origin=origin)
        simulator.step(start - 900.0, start)  # carries the temperature lag into the posted part
        keys, ts, values = simulator.step(start, end)
        return [
            {"sensor": k, "ts": round(float(t), 3), "value": round(float(v), 5)}
            for k, t, v in zip(keys.tolist(), ts.tolist(), values.tolist(), strict=True)
            if np.isfinite(v)
        ]

    # --- the database, through manage.py (the pytest process has its own test database) ---------------
    def manage(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)[:80]} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def alerts(self) -> list[dict]:
        """Every alert of the world's database: id, asset, category, kind, state, title, sensor, role,
        opened_at, peak_score and its events' reasons."""
        out = self.shell(ALERTS_SCRIPT)
        line = next((x for x in out.splitlines() if x.startswith("ALERTS=")), None)
        if line is None:
            raise AssertionError(f"the alert listing printed no ALERTS= line:\n{out[-2000:]}")
        return json.loads(line.removeprefix("ALERTS="))

    # --- lifecycle ---------------------------------------------------------------------------------------
    def log_tail(self, lines: int = 80) -> str:
        return "".join(self.output[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Ctrl-C to the demo (it stops its children), then make sure nothing it started is left."""
        if self.process is not None:
            self._record_processes()
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGINT)
                    self.process.wait(timeout)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            for proc in [
                *self._seen.values(),
                psutil.Process(self.process.pid) if self.process.poll() is None else None,
            ]:
                if proc is not None and _alive(proc):
                    proc.kill()
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(10)
        if self.redis is not None:
            self.redis.stop()

    def _record_processes(self) -> None:
        if self.process is None:
            return
        try:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self._seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            pass


def describe_alerts(alerts: list[dict]) -> str:
    """One line per alert of `World.alerts`: what, when, how bad, and why it opened."""
    return "\n".join(
        f"  {a['title']} [{a['kind']}{', ' + a['sensor'] if a['sensor'] else ''}] opened {a['opened_at']},"
        f" peak score {a['peak_score']:.3g}: {'; '.join(a['events'])}"
        for a in alerts
    )


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _prepare_redis(env: dict[str, str], workdir: Path) -> object | None:
    """Point the world at a Redis of its own: a private DB of REDIS_URL's server (flushed), or an embedded
    redis-server on a free port when REDIS_URL is unset."""
    from config.embedded_redis import start_embedded_redis

    if env.get("REDIS_URL"):
        import redis

        parts = urlsplit(env["REDIS_URL"])
        # VIGIL_E2E_REDIS_DB: another number, for people who run several worlds against one Redis.
        db = int(env.get("VIGIL_E2E_REDIS_DB") or SHARED_REDIS_DB)
        url = urlunsplit(parts._replace(path=f"/{db}"))
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        env["REDIS_URL"] = url
        return None
    handle = start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", workdir / "redis")
    env["REDIS_URL"] = handle.url
    return handle


def start_world(
    workdir: Path | None = None,
    *,
    database_url: str | None = None,
    db_suffix: str = "_e2e",
    assets: int = 6,
    history_hours: float = 1.0,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
    demo_script: Path = ROOT / "manage.py",
) -> World:
    """Build and start a world (see the module docstring); the caller must call `stop()`.

    `demo_script` runs `demo` (manage.py, or a test wrapper such as tests/e2e/slow_retrain.py)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="vigil-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    # Ingestion must wake the worker (a caller may have turned that off for its own in-process work).
    env.update({"VIGIL_VAR_DIR": str(workdir / "var"), "PYTHONUNBUFFERED": "1", "VIGIL_SCORING_ENQUEUE": "1"})
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env.update(extra_env or {})
    url = database_url or os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"] = prepare_postgres(url, db_suffix)
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'e2e.sqlite3'}"
    redis_handle = _prepare_redis(env, workdir)
    world = World(
        base_url="", token="", passwords={}, assets={}, env=env, workdir=workdir, redis=redis_handle
    )
    try:
        world.manage("migrate", "--noinput", "-v", "0", timeout=300)
        # The web server runs with DEBUG off, so static files (htmx, plotly, board.js) come from STATIC_ROOT
        # through WhiteNoise, as in `make demo`.
        world.manage("collectstatic", "--noinput", "-v", "0", timeout=300)
        script = SEED_SCRIPT.format(
            assets=assets,
            credentials=str(workdir / "credentials.json"),
            hours=history_hours,
            ends_ago=HISTORY_ENDS_AGO_S,
        )
        out = world.shell(script)
        line = next((x for x in out.splitlines() if x.startswith("WORLD=")), None)
        if line is None:
            raise AssertionError(f"the seed script printed no WORLD= line:\n{out[-2000:]}")
        seeded = json.loads(line[len("WORLD=") :])
        world.token, world.passwords = seeded["token"], seeded["users"]
        world.assets = {tag: AssetInfo(tag=tag, **info) for tag, info in seeded["assets"].items()}
        _start_demo(world, ready_timeout, demo_script)
        world.startup_alerts = world.alerts()
        if world.startup_alerts:
            # Not fatal here (the tests that need a quiet asset say so), but diagnosable from any failure.
            print(f"the world started with alerts:\n{describe_alerts(world.startup_alerts)}", file=sys.stderr)
    except BaseException:
        world.stop()
        raise
    return world


def _start_demo(world: World, timeout: float, demo_script: Path) -> None:
    port = free_port()
    log = (world.workdir / "demo.log").open("w")
    world.process = subprocess.Popen(
        [
            sys.executable, str(demo_script), "demo", "--no-simulator", "--port", str(port),
            "--token", world.token, "--ready-timeout", str(timeout), "--stop-timeout", "10",
        ],
        cwd=ROOT,
        env=world.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip

    def copy() -> None:
        assert world.process is not None and world.process.stdout is not None
        for text in world.process.stdout:
            world.output.append(text)
            log.write(text)
            log.flush()
        log.close()

    threading.Thread(target=copy, name="e2e-demo-output", daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        world._record_processes()
        if match := READY_RE.search("".join(world.output)):
            world.base_url = match.group(1)
            return
        if world.process.poll() is not None:
            time.sleep(0.2)  # let the reader copy the last lines
            raise AssertionError(
                f"manage.py demo exited with {world.process.returncode}:\n{world.log_tail()}"
            )
        time.sleep(0.2)
    raise AssertionError(f"manage.py demo was not ready within {timeout:.0f} s:\n{world.log_tail()}")
