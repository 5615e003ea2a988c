"""/healthz and /readyz with real processes: a Celery worker started WITHOUT -Q serves every Vigil queue
(so `celery -A config worker` scores: the scoring queue's heartbeat is run by it), beat sends each
queue's heartbeat, /readyz is ready while both run, names beat once beat is stopped and the stale queues
once the worker is stopped, within the heartbeat limit; a database or Redis outage is a 503 with the
reason, never a 500."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.celery import app
from bench.live_server import free_port
from config.embedded_redis import start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.fixture
def redis_url(tmp_path):
    """A Redis of this test's own (the embedded server on a free port): heartbeats are per queue name."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = start_embedded_redis(url, tmp_path / "redis")
    try:
        yield url
    finally:
        server.stop()


def start(kind: str, env: dict, tmp: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "celery", "-A", "config"]
    if kind == "worker":
        argv += ["worker", "--pool", "solo", "-l", "warning", "-n", f"readyz-{os.getpid()}@%h"]
    else:
        argv += ["beat", "-l", "warning", "--schedule", str(tmp / "beat-schedule")]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def wait_for(client, predicate, timeout: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = readyz(client)
        if predicate(status, body) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)


def test_readyz_follows_the_worker_and_beat(db, client, settings, redis_url, tmp_path, monkeypatch):
    settings.VIGIL_READY_HEARTBEAT_S = 4.0
    monkeypatch.setattr(app.conf, "broker_url", redis_url)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "VIGIL_OPS_HEARTBEAT_S": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    status, body = readyz(client)
    assert status == 503 and any(c["name"] == "queue:scoring" and not c["ok"] for c in body["checks"])

    worker, beat = start("worker", env, tmp_path), start("beat", env, tmp_path)
    try:
        status, body = wait_for(client, lambda s, b: s == 200, timeout=60)
        assert status == 200, body
        names = {c["name"] for c in body["checks"]}
        assert {
            "database",
            "redis",
            "beat",
            "queue:default",
            "queue:ingest",
            "queue:scoring",
            "queue:explain",
            "queue:notify",
        } <= names

        # Beat stopped, the worker running: within the heartbeat limit, beat is named.
        stopped = time.monotonic()
        beat.send_signal(signal.SIGTERM)
        beat.wait(timeout=30)
        status, body = wait_for(client, lambda s, b: s == 503, timeout=30)
        assert status == 503 and time.monotonic() - stopped <= 4.0 + 5.0, body
        checks = {c["name"]: c for c in body["checks"]}
        assert (
            not checks["beat"]["ok"]
            and "start exactly one `celery -A config beat`" in checks["beat"]["error"]
        )

        beat = start("beat", env, tmp_path)
        status, body = wait_for(client, lambda s, b: s == 200, timeout=60)
        assert status == 200, body

        # The worker stopped, beat running: every queue it served is named, beat is fine.
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        status, body = wait_for(client, lambda s, b: s == 503, timeout=30)
        assert status == 503 and time.monotonic() - stopped <= 4.0 + 5.0, body
        checks = {c["name"]: c for c in body["checks"]}
        assert checks["beat"]["ok"], checks["beat"]
        for queue in ("default", "ingest", "scoring", "explain"):
            check = checks[f"queue:{queue}"]
            assert not check["ok"] and f"no worker serves '{queue}'" in check["error"], check
    finally:
        for proc in (worker, beat):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_readyz_reports_redis_down_as_503(db, client, monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    status, body = readyz(client)
    assert status == 503
    redis = next(c for c in body["checks"] if c["name"] == "redis")
    assert not redis["ok"] and redis["error"]
