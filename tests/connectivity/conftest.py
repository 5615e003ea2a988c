from __future__ import annotations

import subprocess
import sys

import pytest

from bench.live_server import ROOT, free_port
from tests.brokers import mosquitto  # noqa: F401 (fixture)


@pytest.fixture
def devices():
    """`python -m demo.devices` on two free ports: ((opcua port, modbus port), the process); the process
    has printed that both servers listen before the test starts."""
    ports = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.devices", "--opcua-port", str(ports[0]), "--modbus-port", str(ports[1])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield ports, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
