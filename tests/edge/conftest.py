"""Fixtures of the edge tests: the bundle and simulated pump of bench/edgekit.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.edgekit import (  # noqa: F401  (re-exported for the edge tests)
    ROLES,
    STEP_S,
    TAG,
    TRAIN_S,
    WINDOW_S,
    MadeBundle,
    make_bundle,
    samples_of,
    sensors,
    series_of,
    simulator,
)

from bench.live_server import ROOT, free_port
from edge.config import AgentConfig, AssetConfig


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> MadeBundle:
    return make_bundle(tmp_path_factory.mktemp("edge-bundle"))


@pytest.fixture
def devices():
    """The simulated pump P-101 as a Modbus TCP device (`python -m demo.devices`); yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demo.devices",
            "--opcua-port",
            str(free_port()),
            "--modbus-port",
            str(port),
            "--modbus-tag",
            "P-101",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        proc.stdout.readline()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def unreachable_server_config(bundle_path, data_dir, queue_max_bytes: int = 64 << 20):
    """An agent config for P-101 with ``bundle_path``, whose server is never reached (http://vigil.invalid)."""
    return AgentConfig(
        server_url="http://vigil.invalid",
        token="t",
        data_dir=data_dir,
        queue_max_bytes=queue_max_bytes,
        heartbeat_s=60,
        assets=(AssetConfig("p-101", bundle_path),),
        raw={},
    )
