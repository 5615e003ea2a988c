"""The edge agent's durable local queue: readings and local alert events waiting for the server.

One SQLite file in WAL mode with ``synchronous=FULL``: a ``put_*`` that returned is on disk and survives a
kill -9 or a power cut; a batch leaves the queue only when the server acknowledged it (``ack_*``), so a
crash between sending and acknowledging sends the batch again — the server de-duplicates readings by
(sensor, time) and alert events by their idempotency key, which makes delivery exactly once on the server.

Disk is bounded by ``max_bytes`` (the pages in use; freed pages are reused, so the file stays near the
bound plus the WAL). When a put would exceed it, the OLDEST raw readings are dropped first, in the same
transaction, and each drop is recorded (how many, the time range) for the server: never silent. Alert
events are never dropped; if events alone exceed the bound they are still stored and the overrun is
reported in ``stats()``. Thread-safe: the scorer and the forwarder share one connection under a lock.

Beside the queue, in the same file, the agent keeps what a restart needs to decide at once: its saved
state (``save_state``: rule state per asset, switch watches) and the readings of the windows being filled
(``recent``: written in the transaction that queues them, trimmed to the last ``keep_s`` seconds; a forwarded
reading leaves the queue but stays there until it is too old for any window). It also keeps a log of the
alerts it opened (``opened``: the event's key and when the agent decided it, by the gateway's clock, written
with the event), which forwarding does not empty: the agent's "alerts opened in the last 24 h" counts it, so
the figure survives a restart, and an event decided again after one (same key) is counted once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    ts REAL NOT NULL,
    value REAL,
    status TEXT NOT NULL DEFAULT 'good',
    continues REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    count INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recent (
    sensor TEXT NOT NULL,
    ts REAL NOT NULL,
    value REAL,
    status TEXT NOT NULL DEFAULT 'good',
    PRIMARY KEY (sensor, ts)
);
CREATE INDEX IF NOT EXISTS recent_ts ON recent (ts);
CREATE TABLE IF NOT EXISTS opened (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# A reading to queue: (sensor, ts, value, status), or with the time it continues (Reading.continues).
Row = tuple[str, float, float | None, str] | tuple[str, float, float | None, str, float | None]

# A put over the bound drops at least this many of the oldest readings at once (or a tenth of those
# queued, if more), so a full queue is not trimmed a few rows per put with a size check each time.
MIN_DROP = 500


@dataclass(frozen=True)
class Reading:
    id: int
    sensor: str
    ts: float
    value: float | None
    status: str
    # The time of the sensor's earlier reading this one carries on unchanged (connectivity.points.Sample),
    # forwarded to the server's GAP rule; None: no such statement (and in the ``recent`` table).
    continues: float | None = None


@dataclass(frozen=True)
class Event:
    id: int
    key: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Drop:
    """Readings dropped from a full queue: how many and the span of their times."""

    id: int
    at: float
    count: int
    first_ts: float
    last_ts: float


@dataclass(frozen=True)
class QueueStats:
    readings: int
    events: int
    oldest_ts: float | None  # time of the oldest unsent reading or event
    bytes_used: int
    max_bytes: int
    dropped_total: int  # readings dropped since the queue was created
    over_budget: bool  # alert events alone exceed max_bytes (they are kept anyway)


class QueueError(Exception):
    """The queue file cannot be opened or used (a clear message for the agent's exit)."""


class LocalQueue:
    """See the module docstring. ``max_bytes`` below a few pages is refused."""

    def __init__(self, path: Path, max_bytes: int, *, clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 64 * 1024:
            raise QueueError(f"queue size limit {max_bytes} bytes is too small (at least 65536)")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._upgrade()
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"cannot open the local queue {self.path}: {exc}") from exc

    def _upgrade(self) -> None:
        """A queue file written by an older agent gets the columns added since (its readings keep None)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(readings)")}
        if "continues" not in columns:
            self._db.execute("ALTER TABLE readings ADD COLUMN continues REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing -------------------------------------------------------------------------------------------
    def put_readings(
        self,
        rows: Iterable[Row],
        *,
        recent: Iterable[tuple[str, float, float | None, str]] = (),
        keep_s: float = 0.0,
    ) -> int:
        """Store (sensor, ts, value, status[, continues]) rows durably; returns how many were stored. May
        drop the oldest queued readings (counted) to stay within ``max_bytes``. ``recent``: the rows that go
        into the windows being decided, kept in the same transaction (the first value of a (sensor, ts)
        stays, as in the decider) with those more than ``keep_s`` older than the newest of them removed."""
        batch = [_row(row) for row in rows]
        window = [_row(row)[:4] for row in recent]
        if not batch and not window:
            return 0
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO readings (sensor, ts, value, status, continues) VALUES (?, ?, ?, ?, ?)", batch
            )
            if window:
                self._db.executemany(
                    "INSERT OR IGNORE INTO recent (sensor, ts, value, status) VALUES (?, ?, ?, ?)", window
                )
                self._db.execute(
                    "DELETE FROM recent WHERE ts < ?", (max(row[1] for row in window) - float(keep_s),)
                )
            self._enforce_bound()
        return len(batch)

    def recent_readings(self) -> list[Reading]:
        """The kept readings of the windows being filled (``put_readings(recent=...)``), oldest first;
        ``id`` is 0 (they are not queue entries)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sensor, ts, value, status FROM recent ORDER BY ts, sensor"
            ).fetchall()
        return [Reading(0, *row) for row in rows]

    def replace_recent(
        self, sensors: Iterable[str], rows: Iterable[tuple[str, float, float | None, str]]
    ) -> None:
        """The kept readings of ``sensors`` become ``rows`` (after the decider re-dated its window, a
        gateway clock jump: edge.decide)."""
        keys = [(str(sensor),) for sensor in sensors]
        window = [_row(row)[:4] for row in rows]
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM recent WHERE sensor = ?", keys)
            self._db.executemany(
                "INSERT OR IGNORE INTO recent (sensor, ts, value, status) VALUES (?, ?, ?, ?)", window
            )

    def put_event(self, key: str, body: dict[str, Any], *, opened_at: float | None = None) -> bool:
        """Store a local alert event under its idempotency key; False if that key is already queued.
        Events are never dropped (a full queue drops readings to make room). ``opened_at``: the event opens
        an alert, decided then; logged in the same transaction for ``opened_since`` (once per key)."""
        with self._lock, self._transaction():
            if opened_at is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO opened (key, at) VALUES (?, ?)", (key, float(opened_at))
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (key, body) VALUES (?, ?)",
                (key, json.dumps(body, sort_keys=True, allow_nan=False)),
            )
            if cursor.rowcount:
                self._enforce_bound()
            return bool(cursor.rowcount)

    # --- forwarding ----------------------------------------------------------------------------------------
    def readings_batch(self, limit: int) -> list[Reading]:
        """The oldest ``limit`` unsent readings (send them, then ``ack_readings`` with the last id)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, sensor, ts, value, status, continues FROM readings ORDER BY id LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [Reading(*row) for row in rows]

    def ack_readings(self, upto_id: int) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM readings WHERE id <= ?", (int(upto_id),))

    def events_batch(self, limit: int) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, body FROM events ORDER BY id LIMIT ?", (int(limit),)
            ).fetchall()
        return [Event(i, k, json.loads(b)) for i, k, b in rows]

    def ack_events(self, ids: Sequence[int]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM events WHERE id = ?", [(int(i),) for i in ids])

    def pending_drops(self) -> list[Drop]:
        """Drops not yet reported to the server (report them, then ``ack_drops``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, count, first_ts, last_ts FROM drops ORDER BY id"
            ).fetchall()
        return [Drop(*row) for row in rows]

    def ack_drops(self, ids: Sequence[int]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM drops WHERE id = ?", [(int(i),) for i in ids])

    def opened_since(self, since: float) -> int:
        """How many alerts the agent opened at or after ``since`` (``put_event(opened_at=...)``), across
        restarts. It forgets none: the heartbeat asks it on its own timer, maybe after a jump of the clock
        that no batch has shown yet (``shift_opened`` then still has the openings to move)."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM opened WHERE at >= ?", (float(since),)).fetchone()[0]
            )

    def forget_opened(self, before: float) -> None:
        """The logged openings decided before ``before`` forgotten (the agent's, after a batch's jump check)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM opened WHERE at < ?", (float(before),))

    def shift_opened(self, delta: float, *, once_for: float | None = None) -> None:
        """The logged opening times moved by ``delta`` seconds: the gateway's clock jumped by it, and the
        times are the clock's (edge.agent), so each alert keeps its age. ``once_for``: the saved time a
        clock set back at start is measured from; a start that repeats before anything new is saved (a
        restart loop without readings) finds the same one, and the times already moved for it."""
        with self._lock, self._transaction():
            if once_for is not None:
                row = self._db.execute("SELECT body FROM state WHERE name = 'opened_moved_for'").fetchone()
                if row is not None and json.loads(row[0]) == float(once_for):
                    return
                self._db.execute(
                    "INSERT INTO state (name, body) VALUES ('opened_moved_for', ?) "
                    "ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                    (json.dumps(float(once_for)),),
                )
            self._db.execute("UPDATE opened SET at = at + ?", (float(delta),))

    # --- the agent's own state (rule state per asset), kept beside the queue ----------------------------------
    def save_state(self, name: str, body: dict[str, Any]) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO state (name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                (name, json.dumps(body, allow_nan=False)),
            )

    def load_state(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def stats(self) -> QueueStats:
        with self._lock:
            readings, oldest_r = self._db.execute("SELECT COUNT(*), MIN(ts) FROM readings").fetchone()
            events = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            oldest_e = self._oldest_event_ts()
            used = self._bytes_used()
            dropped = self._counter("dropped_total")
        oldest = min((t for t in (oldest_r, oldest_e) if t is not None), default=None)
        return QueueStats(
            readings=int(readings),
            events=int(events),
            oldest_ts=oldest,
            bytes_used=used,
            max_bytes=self.max_bytes,
            dropped_total=dropped,
            over_budget=readings == 0 and used > self.max_bytes,
        )

    # --- internals -----------------------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _bytes_used(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _oldest_event_ts(self) -> float | None:
        row = self._db.execute("SELECT body FROM events ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        at = json.loads(row[0]).get("at")
        return float(at) if isinstance(at, int | float) else None

    def _enforce_bound(self) -> None:
        """Inside the caller's transaction: drop the oldest readings until the pages in use fit."""
        while self._bytes_used() > self.max_bytes:
            queued = int(self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
            if queued == 0:
                return  # only alert events left: kept, reported as over budget by stats()
            n = min(queued, max(MIN_DROP, queued // 10))
            count, first_ts, last_ts, last_id = self._db.execute(
                "SELECT COUNT(*), MIN(ts), MAX(ts), MAX(id) FROM "
                "(SELECT id, ts FROM readings ORDER BY id LIMIT ?)",
                (n,),
            ).fetchone()
            self._db.execute("DELETE FROM readings WHERE id <= ?", (last_id,))
            self._db.execute(
                "INSERT INTO drops (at, count, first_ts, last_ts) VALUES (?, ?, ?, ?)",
                (self._clock(), count, first_ts, last_ts),
            )
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped_total', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (count,),
            )


def _row(row: Row) -> tuple[str, float, float | None, str, float | None]:
    sensor, ts, value, status, *more = row
    continues = more[0] if more else None
    return (
        str(sensor),
        float(ts),
        None if value is None else float(value),
        str(status),
        None if continues is None else float(continues),
    )


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection (ROLLBACK on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
