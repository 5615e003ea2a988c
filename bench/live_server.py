"""A real web server for the tests and benches that need one: uvicorn serving config.asgi over a scratch database.

pytest-django's test database lives inside the pytest process, so the server gets a fresh SQLite file of
its own, migrated and filled by a setup script run with the same settings. Used by the tests of what only a
real server shows: how much of a request body is read (tests/plant/test_body_limit.py) and what a
WebSocket handshake answers while Redis is down (tests/alerts/test_consumer_outage.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from demo.supervisor import web_server_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The web process (demo.supervisor.web_server_command) on a free port, as `manage.py demo` starts it."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'server.sqlite3'}",
            "VIGIL_VAR_DIR": str(workdir / "var"),
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
            # Nothing in these tests needs Redis unless a test passes its own; a closed port, not a shared one.
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(dir=workdir)

    def setup(self, script: str) -> dict:
        """Migrate the scratch database, run `script` (Django set up) and return the JSON it prints last."""
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=300,
        )
        code = "import django, json\ndjango.setup()\n" + script
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start(self, timeout: float = 60.0) -> None:
        argv = web_server_command("127.0.0.1", self.port)
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.output()}"
            try:
                httpx.get(self.url + "/api/v1/openapi.json", timeout=2.0)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{self.output()}")

    def rss(self) -> int:
        assert self.process is not None
        return psutil.Process(self.process.pid).memory_info().rss

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
