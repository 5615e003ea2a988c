"""The production run of the README ("Run in production"), exercised end to end (run by .ci/run).

Every command comes from the Procfile — the file the README and deploy/ point to — so the docs and this
check cannot drift: ``release`` (migrate, collectstatic), then ``web`` (uvicorn, 2 processes),
``worker-scoring``, ``worker-default``, ``beat`` and ``bridge`` are started as separate process groups
against DATABASE_URL (PostgreSQL) and REDIS_URL, with VIGIL_LOG_FORMAT=json. The plant comes from the
management commands an operator would use: ``seed_demo`` (site, pumps, gateway token), ``simulate`` (two
hours of history, then live readings, over HTTP), ``train_model`` and ``promote_model``. Then:

- a window is scored by the workers (a Score row of the promoted version),
- ``/readyz`` answers 200 (database, Redis, beat, every queue's worker),
- ``/metrics`` counts exactly the readings stored,
- every process logged JSON lines,
- SIGTERM stops each process (and its children) within STOP_TIMEOUT_S.

Uses DATABASE_URL and REDIS_URL as given: both are emptied first! Exit 0 on success; 1 with the reason
and the tail of every process's log otherwise.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="vigil-production-"))
PROCESSES = ("web", "worker-scoring", "worker-default", "beat", "bridge")
STOP_TIMEOUT_S = 60
MODEL = "ci-pump"
METRICS_TOKEN = secrets.token_hex(16)


class CheckFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"production-run| {message}", flush=True)


def procfile() -> dict[str, str]:
    """name -> command, as the Procfile says."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([\w-]+):\s*(.+)$", line)
        if match:
            commands[match[1]] = match[2]
    missing = [name for name in ("release", *PROCESSES) if name not in commands]
    if missing:
        raise CheckFailed(f"the Procfile has no {missing}")
    return commands


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(port: int) -> dict[str, str]:
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            raise CheckFailed(f"{name} must be set (the production run uses PostgreSQL and Redis)")
    bin_dir = str(Path(sys.executable).parent)  # `python` and `celery` of the Procfile: this virtualenv's
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "VIGIL_REQUIRE_SECRET_KEY": "1",
        "DEBUG": "0",
        "VIGIL_VAR_DIR": str(WORK / "var"),
        "MEDIA_ROOT": str(WORK / "media"),
        "VIGIL_LOG_FORMAT": "json",
        "VIGIL_METRICS_TOKEN": METRICS_TOKEN,
        # Short periods so that the check takes seconds, not minutes.
        "VIGIL_OPS_HEARTBEAT_S": "2",
        "VIGIL_READY_HEARTBEAT_S": "10",
        "VIGIL_SCORING_SWEEP_EVERY_S": "5",
    }


def run(argv: list[str], env: dict[str, str], what: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    (WORK / f"{what}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise CheckFailed(f"{what} exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def start(name: str, command: str, env: dict[str, str]) -> subprocess.Popen:
    out = open(WORK / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
    # bash expands the Procfile's ${VAR:-default} as a Procfile runner does; exec: the process is the command.
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def group_alive(pgid: int, grace: float) -> bool:
    """Whether a process of the group outlives `grace` seconds (exited children are reaped by init)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


def stop_all(processes: dict[str, subprocess.Popen]) -> list[str]:
    """SIGTERM each process (not its group: its own shutdown must stop its children); the problems."""
    problems = []
    for name, process in processes.items():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, process in processes.items():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            problems.append(f"{name} did not stop within {STOP_TIMEOUT_S} s of SIGTERM")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            continue
        if process.returncode not in (0, -signal.SIGTERM):
            problems.append(f"{name} exited {process.returncode} after SIGTERM")
        if group_alive(process.pid, grace=5.0):
            problems.append(f"{name} left processes behind after it exited")
            os.killpg(process.pid, signal.SIGKILL)
    return problems


def wait_for(what: str, predicate, timeout: float, processes: dict[str, subprocess.Popen]):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise CheckFailed(f"{name} exited ({process.returncode}) while waiting for {what}")
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last is True or (last and not isinstance(last, (str, dict))):
                return last
        time.sleep(0.5)
    raise CheckFailed(f"no {what} within {timeout:.0f} s (last: {str(last)[:1500]})")


def reset_stores(env: dict[str, str]) -> None:
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env, "reset-migrate")
    run([sys.executable, "manage.py", "flush", "--noinput", "-v0"], env, "reset-flush")


def django_orm(env: dict[str, str]):
    """This process reads the database the processes write (to see the Score rows)."""
    os.environ.update(
        {k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    )
    sys.path.insert(0, str(ROOT))
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from alerts.models import Score
    from models_registry.models import ModelVersion
    from plant.models import Reading

    return Score, ModelVersion, Reading


def check_json_logs(name: str) -> None:
    records = []
    for line in (WORK / f"{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    if not any({"time", "level", "logger", "message"} <= record.keys() for record in records):
        raise CheckFailed(f"{name} wrote no JSON log line with time, level, logger and message")


def main() -> int:
    port = free_port()
    (WORK / "var").mkdir()
    commands = procfile()
    env = environment(port)
    base = f"http://127.0.0.1:{port}"
    processes: dict[str, subprocess.Popen] = {}
    try:
        reset_stores(env)
        log("release: " + commands["release"])
        run(["bash", "-c", commands["release"]], env, "release")
        seed = run([sys.executable, "manage.py", "seed_demo", "--assets", "2"], env, "seed_demo")
        token = re.search(r"^GATEWAY_TOKEN=(\S+)$", seed, re.M)[1]
        Score, ModelVersion, Reading = django_orm(env)
        # The bridge refuses to start without a connection: the demo's MQTT one, towards no broker (the
        # bridge runs it and reports it disconnected, which /metrics shows).
        from demo.seed import seed_demo_connection

        seed_demo_connection(f"mqtt://127.0.0.1:{free_port()}")

        for name in PROCESSES:
            log(f"start {name}: {commands[name]}")
            processes[name] = start(name, commands[name], env)
        with httpx.Client(base_url=base, timeout=10) as client:
            wait_for("/healthz 200", lambda: client.get("/healthz").status_code == 200, 60, processes)

            simulate = [
                sys.executable,
                "manage.py",
                "simulate",
                "--url",
                base,
                "--token",
                token,
                "--assets",
                "2",
            ]
            run(
                [*simulate, "--backfill", "120", "--duration", "0", "--faults", "none"],
                env,
                "simulate-history",
            )
            trained = run(
                [sys.executable, "manage.py", "train_model", "--asset-type", "centrifugal-pump", "--kind",
                 "anomaly", "--name", MODEL],
                env, "train_model",
            )  # fmt: skip
            log(trained.splitlines()[0])
            run([sys.executable, "manage.py", "promote_model", MODEL, "1", "--reason", "CI"], env, "promote")
            run([*simulate, "--duration", "25", "--faults", "none"], env, "simulate-live")

            version = ModelVersion.objects.get(name=MODEL, version=1)
            scored = wait_for(
                "scored window of the promoted model",
                lambda: Score.objects.filter(model_version=version).count(),
                120,
                processes,
            )
            log(f"{scored} window(s) scored by {version} (workers started from the Procfile)")

            def ready():
                response = client.get("/readyz")
                return True if response.status_code == 200 else response.json()

            wait_for("/readyz 200", ready, 60, processes)
            log("/readyz: 200 (database, Redis, beat and every queue's worker)")

            stored = Reading.objects.count()
            text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
            accepted = re.search(r'^vigil_ingest_readings_total\{outcome="accepted"\} (\S+)$', text, re.M)
            if accepted is None or float(accepted[1]) != stored:
                raise CheckFailed(
                    f"/metrics counts {accepted and accepted[1]} readings accepted, {stored} stored"
                )
            bridge = re.search(r'^vigil_bridge_running\{[^}]*protocol="mqtt"[^}]*\} (\S+)$', text, re.M)
            if bridge is None or float(bridge[1]) != 1.0:
                raise CheckFailed(f"/metrics does not show the bridge running its connection: {bridge}")
            log(f"/metrics: {stored} readings accepted, as stored; the bridge runs its MQTT connection")
        for name in PROCESSES:
            check_json_logs(name)
        log("every process logged JSON lines")
        problems = stop_all(processes)
        if problems:
            raise CheckFailed("; ".join(problems))
        log(f"SIGTERM stopped {', '.join(PROCESSES)} cleanly")
        log("OK")
        return 0
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        stop_all(processes)
        for path in sorted(WORK.glob("*.log")):
            print(f"\n----- {path.name} (last 60 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-60:]))
        return 1
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
