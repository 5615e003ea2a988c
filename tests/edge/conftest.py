"""Fixtures of the edge tests: the bundle and simulated pump of bench/edgekit.py."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

import numpy as np

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
from detection.bundle import load_bundle
from edge import decide
from edge.config import AgentConfig, AssetConfig
from edge.model import EdgeModel


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


def set_back_episodes(bundle_path, monkeypatch: pytest.MonkeyPatch) -> list[decide.AlertEvent]:
    """The events a decider raises over a fault, its clear, the gateway's clock set back an hour, and a
    fault again an hour later, dated by the set-back clock: the same readings at the same times as the first
    fault, so the new episode's first window is the first one's. The steady clock (the jump's grace) runs
    with the readings, as it does when they arrive live."""
    steady = SimpleNamespace(now=0.0)
    monkeypatch.setattr(decide, "time", SimpleNamespace(monotonic=lambda: steady.now))
    d = decide.AssetDecider(
        TAG, EdgeModel(load_bundle(str(bundle_path))), {k: r for r, k in sensors().items()}
    )
    fault_at = TRAIN_S + 600.0

    def feed(sim, t0: float, t1: float, set_back: float = 0.0) -> list[decide.AlertEvent]:
        events = []
        for t in np.arange(t0, t1, 5.0):
            steady.now = t + set_back
            d.add(samples_of(sim, t, t + 5.0))
            events += d.decide()
        return events

    events = feed(simulator(fault_at=fault_at), TRAIN_S, fault_at + 900.0)
    events += feed(simulator(), fault_at + 900.0, fault_at + 1_800.0)
    # The source comes back a few minutes later (no window holds readings of both simulators), and its first
    # batch shows the agent the jump (edge.agent: ``GatewayClock.jumped`` at each batch).
    steady.now = fault_at + 2_100.0
    d.clock_jumped(-3_600.0)
    again = simulator(fault_at=fault_at)
    again.step(TRAIN_S, fault_at - 1_500.0)
    return events + feed(again, fault_at - 1_500.0, fault_at + 400.0, set_back=3_600.0)
