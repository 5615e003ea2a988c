"""Real MQTT brokers for the tests: Debian's mosquitto, started on a free loopback port.

A missing `mosquitto` binary fails the test that needs it (CI installs it: .ci/run's apt list); it is
never a skip. Persistence is on, so a restarted broker keeps the queued QoS 1 messages of persistent
sessions, as a production broker does.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """One mosquitto process with a data directory that survives `restart()`."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if binary is None:
            raise RuntimeError(
                "mosquitto is not installed (apt-get install -y mosquitto): the MQTT tests need it"
            )
        self.binary = binary
        self.port = free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {directory}/\nmax_queued_messages 100000\n"
            f"log_dest file {directory}/mosquitto.log\n"
            # Run as whoever runs the tests (as root, mosquitto would drop to a user that cannot write here).
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.directory / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A running mosquitto on a free loopback port (stopped after the test)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()
