"""`python -m edge` killed with SIGKILL (no handler runs, nothing is flushed) while it forwards a backlog
to a real Vigil server through the demo's cuttable link: the agent restarted on the same data directory
loses nothing and duplicates nothing — the server stores every queued reading once and records every queued
local alert event once. And a queue that fills up during the cut: the agent drops the oldest readings, counts
them, keeps the alert events, and the server shows the drop after reconnection."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.live_server import ROOT, LiveServer, free_port
from edge.queue import LocalQueue
from tests.edge.conftest import ROLES, make_bundle
from tests.edge.test_agent_offline import SETUP
from tests.edge.test_main import agent, write_config

BACKLOG_S = 6_000  # seconds of the pump's five sensors queued during the cut: 30 000 readings, 6 batches
EVENTS = 600  # local alert events queued with them: 3 batches


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, dict, Path]]:
    """A live server with the north site's P-101 and its champion model; the agent's exported bundle."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    made = make_bundle(workdir)
    exported = workdir / "p-101.zip"
    background = workdir / "background.json"
    background.write_text(json.dumps(made.background))
    live = LiveServer(workdir)
    try:
        facts = live.setup(
            SETUP.format(roles=ROLES, bundle=str(made.path), out=str(exported), background=str(background))
        )
        live.start()
        yield live, facts, exported
    finally:
        live.stop()
    output = live.output()
    assert " 500 " not in output and "Internal Server Error" not in output, output[-3000:]


@pytest.fixture
def link(tmp_path: Path, server) -> Iterator[tuple[str, Path]]:
    """`python -m demo.edge_link` in front of the server, cut (its flag file exists) until a test removes
    the flag; yields the agent's server URL and the flag."""
    live = server[0]
    flag = tmp_path / "offline"
    flag.touch()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.edge_link", "--listen", str(port), "--to", f"127.0.0.1:{live.port}"]
        + ["--flag", str(flag)],
        cwd=ROOT,
    )
    try:
        yield f"http://127.0.0.1:{port}", flag
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def queued(data: Path, upto: float = math.inf) -> tuple[int, int]:
    """(readings with a time up to ``upto``, events) in the agent's queue file, read beside the running
    agent (WAL: a reader never blocks the writer)."""
    db = sqlite3.connect(f"file:{data / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return (
            db.execute("SELECT COUNT(*) FROM readings WHERE ts <= ?", (upto,)).fetchone()[0],
            db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        )
    finally:
        db.close()


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 40.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the agent exited while waiting for {what}:\n{proc.stdout.read()[-3000:]}")
        value = check()
        if value:
            return value
        time.sleep(every)
    proc.kill()  # a failed wait: the agent must not outlive the test (and hold its ports and files)
    proc.wait(timeout=10)
    raise AssertionError(f"timed out waiting for {what}")


def fill_backlog(
    data: Path, sha256: str, now: float, seconds: int = BACKLOG_S, events: int = 1
) -> tuple[float, float, list[str]]:
    """What the agent queued during the cut (written with the agent's own queue, as the agent writes it):
    ``seconds`` of readings from BACKLOG_S + 60 s ago and ``events`` local alert events ("opened", ten
    minutes apart, keyed as an agent from before the episode number in edge.decide's keys named them: a
    queue an upgraded agent inherits, which the server records alike). Returns the readings' time span and
    the events' keys."""
    queue = LocalQueue(data / "queue.sqlite3", 16 * 1024 * 1024)
    t0 = now - 60.0 - BACKLOG_S
    rows = [
        (f"north.p-101.{role}", t0 + i, 10.0 + (i % 97) * 0.01 + k, "good")
        for i in range(seconds)
        for k, role in enumerate(ROLES)
    ]
    assert queue.put_readings(rows) == len(rows)
    keys = []
    for j in range(events):
        at = now - 600.0 * (j + 1)
        key = f"p-101/{sha256[:16]}/{at - 80.0:.3f}/opened"
        body = {
            "key": key,
            "kind": "opened",
            "asset": "p-101",
            "at": at,
            "first": at - 80.0,
            "peak_at": at - 10.0,
            "peak_score": 42.0,
            "level": 2,
            "model_sha256": sha256,
        }
        assert queue.put_event(key, body)
        keys.append(key)
    queue.close()
    return t0, t0 + seconds - 1, keys


COUNTS = """
from alerts.models import Alert, EdgeEvent
from plant.models import Reading
# 1 ms of slack: the server keeps microseconds, so the first second's readings may be stored just below t0.
backlog = Reading.objects.filter(ts__gte=datetime.fromtimestamp({t0} - 1e-3, tz=timezone.utc),
                                 ts__lte=datetime.fromtimestamp({t1} + 1e-3, tz=timezone.utc))
print(json.dumps({{
    "backlog": backlog.count(),
    "backlog_per_sensor": sorted(set(backlog.values_list("sensor__key", flat=True))),
    "all": Reading.objects.count(),
    "events": list(EdgeEvent.objects.values_list("key", flat=True)),
    "edge_alerts": Alert.objects.filter(raised_at_edge=True).count(),
    "alerts": Alert.objects.count(),
}}))
"""


def server_counts(live: LiveServer, t0: float, t1: float) -> dict:
    script = "from datetime import datetime, timezone\n" + COUNTS.format(t0=t0, t1=t1)
    return live.setup(script)


def test_an_agent_killed_while_forwarding_loses_nothing_and_duplicates_nothing(
    server, link, devices, tmp_path: Path
):
    live, facts, bundle = server
    url, flag = link
    work = tmp_path / "agent"
    work.mkdir()
    config = write_config(work, url, devices, site="north", bundle=bundle)
    data = work / "data"
    t0, t1, keys = fill_backlog(data, facts["sha256"], time.time(), events=EVENTS)
    total = BACKLOG_S * len(ROLES)

    # The agent runs while the link is still cut: its Modbus readings join the backlog, nothing leaves.
    proc = agent(config, token=facts["token"], background=True)
    wait_for("the agent to queue the device's readings", lambda: queued(data)[0] > total + 20, proc)
    assert queued(data)[1] == EVENTS

    # The link comes back; the agent is killed three times in the middle of forwarding the backlog (after
    # the first batch of alert events went, after the first batch of readings, after more than half of
    # them), restarted each time on the same data directory.
    flag.unlink()
    at = wait_for("part of the events to leave", lambda: (q := queued(data)[1]) < EVENTS and q, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert queued(data)[1] > 0, "the kill came after the events were forwarded: nothing was tested"
    kills = [at]
    proc = agent(config, token=facts["token"], background=True)
    for left_below in (total, total // 2):
        at = wait_for(
            "part of the backlog to leave", lambda: (q := queued(data, t1)[0]) < left_below and q, proc
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert queued(data, t1)[0] > 0, "the kill came after the backlog was forwarded: nothing was tested"
        kills.append(at)
        proc = agent(config, token=facts["token"], background=True)

    # The restarted agent drains the rest (the device's readings keep coming), then stops cleanly.
    wait_for("the backlog to drain", lambda: queued(data, t1) == (0, 0), proc, timeout=60, every=0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]

    seen = server_counts(live, t0, t1)
    assert seen["backlog"] == total, (seen, kills)  # every queued reading, once (none lost)
    assert seen["backlog_per_sensor"] == [f"north.p-101.{role}" for role in ROLES]
    assert seen["all"] > total  # and the device's own readings after it
    assert sorted(seen["events"]) == sorted(keys)  # every local alert event recorded once…
    assert seen["edge_alerts"] == 1 and seen["alerts"] == 1  # …the first opening the alert, the rest merged


DROPS = """
from django.contrib.auth import get_user_model
from django.test import Client
from plant.models import EdgeAgent, EdgeDrop, Reading
# 1 ms of slack: the server keeps microseconds, so the first second's readings may be stored just below t0.
backlog = Reading.objects.filter(ts__gte=datetime.fromtimestamp({t0} - 1e-3, tz=timezone.utc),
                                 ts__lte=datetime.fromtimestamp({t1} + 1e-3, tz=timezone.utc))
user = get_user_model().objects.create_superuser("edge-admin", "a@example.com", "x")
client = Client()
client.force_login(user)
page = client.get("/models/edge/")
print(json.dumps({{
    "backlog": backlog.count(),
    "oldest": backlog.order_by("ts").first().ts.timestamp(),
    "drops": [[d.count, d.first_ts.timestamp(), d.last_ts.timestamp()] for d in EdgeDrop.objects.all()],
    "dropped_total": EdgeAgent.objects.get().dropped_total,
    "page": page.status_code,
    "page_says": page.content.decode(),
}}))
"""


def test_a_full_queue_during_a_cut_drops_the_oldest_readings_and_the_server_shows_the_drop(
    server, link, devices, tmp_path: Path
):
    live, facts, bundle = server
    url, flag = link
    work = tmp_path / "agent"
    work.mkdir()
    # The smallest queue the config allows (1 MiB), the device read five times a second.
    config = write_config(
        work,
        url,
        devices,
        site="north",
        bundle=bundle,
        **{"queue_max_mb = 16": "queue_max_mb = 1", "interval_s = 0.5": "interval_s = 0.2"},
    )
    data = work / "data"
    limit = 1024 * 1024
    # The cut has lasted long enough to fill the queue to within one page of its bound (filled through a
    # larger bound, so that the drop is the agent's own), and the queued local alert must survive it.
    now = time.time()
    t0, _, keys = fill_backlog(data, facts["sha256"], now, seconds=0)
    queue = LocalQueue(data / "queue.sqlite3", 2 * limit)
    second = 0
    while queue.stats().bytes_used < limit - 4096:
        queue.put_readings(
            (f"north.p-101.{role}", t0 + second + i, float(i), "good") for i in range(20) for role in ROLES
        )
        second += 20
    assert queue.stats().dropped_total == 0 and queue.stats().bytes_used <= limit
    backlog = queue.stats().readings
    queue.close()
    t1 = t0 + second - 1

    proc = agent(config, token=facts["token"], background=True)
    dropped = wait_for("the agent to drop readings", lambda: dropped_so_far(data), proc)
    flag.unlink()
    wait_for("the queue to drain and the drops to be reported", lambda: reported(data, t1), proc, every=0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    dropped = dropped_so_far(data)

    seen = live.setup("from datetime import datetime, timezone\n" + DROPS.format(t0=t0, t1=t1))
    # Only the oldest readings went, every one of them counted; the rest arrived once, the alert too.
    assert seen["backlog"] == backlog - dropped
    assert sum(d[0] for d in seen["drops"]) == dropped == seen["dropped_total"]
    assert min(d[1] for d in seen["drops"]) == pytest.approx(t0)
    # A drop may end inside a second (by queue order); the server keeps microseconds (1 ms of slack).
    assert seen["oldest"] >= max(d[2] for d in seen["drops"]) - 1e-3
    assert server_counts(live, t0, t1)["events"] == keys
    # The Edge page says so.
    assert seen["page"] == 200 and f"{dropped} readings" in seen["page_says"]


def dropped_so_far(data: Path) -> int:
    db = sqlite3.connect(f"file:{data / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM counters WHERE name = 'dropped_total'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def reported(data: Path, upto: float) -> bool:
    db = sqlite3.connect(f"file:{data / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return queued(data, upto) == (0, 0) and db.execute("SELECT COUNT(*) FROM drops").fetchone()[0] == 0
    finally:
        db.close()
