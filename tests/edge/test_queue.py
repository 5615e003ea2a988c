"""The edge agent's local queue: durable, bounded on disk, drops only the oldest readings, and counts them."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.queue import LocalQueue, QueueError

ROOT = Path(__file__).resolve().parents[2]


def readings(n: int, start: float = 0.0, sensor: str = "s1.p-101.vibration") -> list:
    return [(sensor, start + i, float(i), "good") for i in range(n)]


def test_a_batch_stays_until_acknowledged_and_survives_a_reopen(tmp_path: Path):
    queue = LocalQueue(tmp_path / "q.sqlite3", max_bytes=1 << 20)
    assert queue.put_readings(readings(10)) == 10
    batch = queue.readings_batch(4)
    assert [r.ts for r in batch] == [0.0, 1.0, 2.0, 3.0]
    queue.close()

    again = LocalQueue(tmp_path / "q.sqlite3", max_bytes=1 << 20)
    assert [r.ts for r in again.readings_batch(4)] == [0.0, 1.0, 2.0, 3.0]  # not acked: still there
    again.ack_readings(batch[-1].id)
    assert [r.ts for r in again.readings_batch(100)] == [float(i) for i in range(4, 10)]
    assert again.stats().readings == 6


def test_the_readings_of_the_window_outlive_their_forwarding_and_only_the_last_seconds_are_kept(
    tmp_path: Path,
):
    """What a restarted agent refills its windows with: kept with the batch, not with the queue (a reading
    the server acknowledged is still needed by the window being filled), trimmed to ``keep_s``."""
    queue = LocalQueue(tmp_path / "q.sqlite3", max_bytes=1 << 20)
    for start in (0.0, 100.0, 200.0):
        batch = readings(100, start=start)
        queue.put_readings(batch, recent=batch, keep_s=150.0)
    queue.put_readings([], recent=[("s1.p-101.vibration", 299.0, 7.0, "good")], keep_s=150.0)  # resent
    queue.ack_readings(queue.readings_batch(1_000)[-1].id)  # all forwarded
    queue.close()

    again = LocalQueue(tmp_path / "q.sqlite3", max_bytes=1 << 20)
    kept = again.recent_readings()
    assert again.stats().readings == 0
    assert [r.ts for r in kept] == [float(t) for t in range(149, 300)]
    assert kept[-1].value == 99.0  # the first value of a resent (sensor, ts) stays, as in the decider


def test_a_queue_file_of_an_older_agent_keeps_its_readings_and_takes_what_a_reading_continues(
    tmp_path: Path,
):
    """An agent upgraded in place opens the queue its predecessor wrote (no ``continues`` column): the
    readings queued before stay and are sent as they were; new ones keep the time they continue."""
    path = tmp_path / "q.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, sensor TEXT NOT NULL, ts REAL NOT NULL,"
        " value REAL, status TEXT NOT NULL DEFAULT 'good');"
        "INSERT INTO readings (sensor, ts, value, status) VALUES ('s', 1.0, 4.0, 'good');"
    )
    old.close()
    queue = LocalQueue(path, max_bytes=1 << 20)
    queue.put_readings([("s", 31.0, 4.0, "good", 1.0), ("s", 32.0, 4.0, "good")])
    queue.close()
    again = LocalQueue(path, max_bytes=1 << 20)
    assert [(r.ts, r.continues) for r in again.readings_batch(10)] == [(1.0, None), (31.0, 1.0), (32.0, None)]


def test_an_event_key_is_queued_once_and_values_round_trip(tmp_path: Path):
    queue = LocalQueue(tmp_path / "q.sqlite3", max_bytes=1 << 20)
    assert queue.put_event("p-101:opened:1000", {"kind": "opened", "at": 1000.0}) is True
    assert queue.put_event("p-101:opened:1000", {"kind": "opened", "at": 1000.0}) is False
    queue.put_readings([("s", 5.0, None, "bad")])
    [event] = queue.events_batch(10)
    assert event.key == "p-101:opened:1000" and event.body == {"kind": "opened", "at": 1000.0}
    [reading] = queue.readings_batch(10)
    assert reading.value is None and reading.status == "bad"
    assert queue.stats().oldest_ts == 5.0
    queue.ack_events([event.id])
    assert queue.events_batch(10) == []


def test_a_full_queue_drops_the_oldest_readings_counts_them_and_keeps_every_event(tmp_path: Path):
    limit = 256 * 1024
    queue = LocalQueue(tmp_path / "q.sqlite3", max_bytes=limit)
    put = 0
    for k in range(60):
        put += queue.put_readings(readings(1_000, start=k * 1_000.0))
        queue.put_event(f"e{k}", {"at": k * 1_000.0, "kind": "opened"})
        assert queue.stats().bytes_used <= limit
    stats = queue.stats()
    assert 0 < stats.readings < put
    assert stats.dropped_total == put - stats.readings
    drops = queue.pending_drops()
    assert sum(d.count for d in drops) == stats.dropped_total
    # The oldest went first: what is left is one contiguous run ending with the newest reading.
    kept = queue.readings_batch(put)
    assert kept[-1].ts == put - 1.0
    assert [r.ts for r in kept] == [float(t) for t in range(put - len(kept), put)]
    assert max(d.last_ts for d in drops) < kept[0].ts
    assert len(queue.events_batch(1_000)) == 60  # no event dropped
    queue.ack_drops([d.id for d in drops])
    assert queue.pending_drops() == []
    assert queue.stats().dropped_total == stats.dropped_total  # the running total stays


def test_events_alone_over_the_bound_are_kept_and_reported(tmp_path: Path):
    queue = LocalQueue(tmp_path / "q.sqlite3", max_bytes=64 * 1024)
    for k in range(400):
        assert queue.put_event(f"e{k}", {"at": float(k), "note": "x" * 200})
    stats = queue.stats()
    assert stats.events == 400 and stats.over_budget


@pytest.mark.parametrize("limit", [0, 1000, 65_535])
def test_a_limit_too_small_is_refused_with_the_reason(tmp_path: Path, limit: int):
    with pytest.raises(QueueError, match="too small"):
        LocalQueue(tmp_path / "q.sqlite3", max_bytes=limit)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(QueueError, match="cannot open the local queue"):
        LocalQueue(blocker / "q.sqlite3", max_bytes=1 << 20)


WRITER = """
import sys
from pathlib import Path
from edge.queue import LocalQueue
queue = LocalQueue(Path(sys.argv[1]), max_bytes=1 << 30)
total = 0
while True:
    total += queue.put_readings([("s", float(total + i), 1.0, "good") for i in range(100)])
    print(total, flush=True)
"""


def test_a_kill_9_loses_no_put_that_returned(tmp_path: Path):
    path = tmp_path / "q.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acknowledged = 0
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while acknowledged < 5_000 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 5_000

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    queue = LocalQueue(path, max_bytes=1 << 30)
    stored = queue.stats().readings
    assert stored >= acknowledged
    assert stored % 100 == 0  # each put is all or nothing
    ts = [r.ts for r in queue.readings_batch(stored)]
    assert ts == [float(t) for t in range(stored)]  # no hole, no duplicate
