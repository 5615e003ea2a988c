"""The bridge: one asyncio task per enabled connection, its samples stored through plant.ingest.

Each connection's client (connectivity.<protocol>.run) hands batches of samples to a sink that stores
them with `ingest_readings` (the readings API's validation, quality flags and due marks) in one
transaction per batch, in a thread of its own so the event loop never waits on the database. The sink
returns only once the batch is stored: while the database is unreachable it retries with backoff and
the client, not acknowledging, stops taking messages (back-pressure), so nothing acknowledged is lost.
A disconnected client is restarted with `backoff_delays`. A connection whose configuration cannot be
used does not start; its status (ConnectionState) says why. Every few seconds each connection's status
(connected, last message, counts, rate, last errors) is written for the site page and the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db import connections as db_connections
from django.db.models import F
from django.utils import timezone

from connectivity import protocols
from connectivity.hold import with_sample_period
from connectivity.points import (
    CONNECT,
    WRITE,
    ConnectionStatus,
    PointError,
    Sample,
    SampleStatus,
    backoff_delays,
    failed_try,
)
from plant.connections.secrets import SecretError, password_of
from plant.ingest import SOURCE_FLAGS, ParsedBatch, ingest_readings
from plant.models import Connection, ConnectionState, PointMapping, Sensor, Site, WriteBack

log = logging.getLogger(__name__)
# A client that stayed up this long before it dropped is reconnected after the shortest delay again.
STABLE_S = 60.0
# A point sending more than this many times its sensor's expected rate is reported on the status.
RATE_FACTOR = 10.0
RATE_WINDOW_S = 10.0


class ConfigError(Exception):
    """Why a connection cannot start (shown on its status)."""


def prepare(connection: Connection) -> tuple[protocols.ConnectionConfig, dict[str, Any]]:
    """The client's settings and parsed points of `connection`; ConfigError naming the first problem."""
    try:
        protocols.module(connection.protocol)
        options = protocols.parse_options(connection.protocol, connection.options or {})
        protocols.parse_endpoint(connection.protocol, connection.endpoint)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        password = password_of(connection)
    except SecretError as exc:
        raise ConfigError(f"password: {exc}") from None
    points: dict[str, Any] = {}
    for mapping in connection.mappings.select_related("sensor").order_by("sensor__key"):
        try:
            fields = with_sample_period(
                connection.protocol, mapping.address or {}, mapping.sensor.sample_period_s
            )
            points[mapping.sensor.key] = protocols.parse_point(connection.protocol, fields)
        except ValueError as exc:
            raise ConfigError(f"mapping of sensor {mapping.sensor.key}: {exc}") from None
    if not points and not connection.write_back:
        raise ConfigError("no point mappings: import or add some")
    config = protocols.ConnectionConfig(
        name=connection.name,
        endpoint=connection.endpoint,
        username=connection.username or None,
        password=password,
        ca_file=connection.tls_ca_file or None,
        cert_file=connection.tls_cert_file or None,
        key_file=connection.tls_key_file or None,
        verify_tls=connection.tls_verify,
        interval_s=connection.interval_s,
        options=options,
        client_id=f"vigil-{connection.site.slug}-{connection.pk}",
    )
    return config, points


@dataclass
class Stored:
    """What storing one batch did (the ingest's counts, and the points whose stale mark changed)."""

    accepted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (sensor key, reason)
    flagged: list[tuple[str, str]] = field(default_factory=list)  # (sensor key, source status) stored flagged


def store_samples(connection: Connection, samples: list[Sample], stale: set[str]) -> Stored:
    """Store the samples that carry a value through ingest, the source's verdict as a quality flag (an
    UNCERTAIN one flagged SOURCE_UNCERTAIN, a BAD one SOURCE_BAD: shown on the charts, never scored).
    A BAD sample without a value (OPC UA servers null the value of a Bad status) has nothing to store and
    no value is invented: it is counted, and like a STALE one it marks its point's mapping stale until
    the point sends a good or uncertain value again (`stale` is the connection's set of stale keys,
    updated)."""
    result = Stored()
    values: list[Sample] = []
    flagged: list[Sample] = []
    gaps: list[Sample] = []  # STALE, and BAD without a value
    good = SampleStatus.GOOD
    for sample in samples:  # one pass: this runs for every reading the bridge stores
        if sample.value is None:
            gaps.append(sample)
        else:
            values.append(sample)
            if sample.status is not good:
                flagged.append(sample)
    result.rejected = [
        (s.point, "the source's status is Bad and it sent no value: the point is marked stale")
        for s in gaps
        if s.status == SampleStatus.BAD
    ]
    if values:
        points, times, numbers, _, continued = zip(*values, strict=True)
        flags = [SOURCE_FLAGS[s.status] for s in values] if flagged else None
        if continued.count(None) == len(continued):  # the usual batch: no statement (counted in C)
            continued = None
        batch = ParsedBatch.from_arrays(points, times, numbers, source_flags=flags, continues=continued)
        ingested = ingest_readings(connection.site, batch)
        result.accepted = ingested.accepted
        result.rejected += [(values[index].point, reason) for index, reason in ingested.rejected]
        result.flagged = list(dict.fromkeys((s.point, s.status.value) for s in flagged))
    went_stale: set[str] = set()
    came_back: set[str] = set()
    if gaps or stale:
        # In arrival order: the point's last word decides whether it ends the batch stale.
        watched = stale | {s.point for s in gaps}
        last = {s.point: s for s in samples if s.point in watched}
        went_stale = {k for k, s in last.items() if s.value is None} - stale
        came_back = {k for k, s in last.items() if s.value is not None and s.status != SampleStatus.BAD}
        came_back &= stale
    mappings = PointMapping.objects.filter(connection=connection)
    if went_stale:
        mappings.filter(sensor__key__in=went_stale).update(stale_since=timezone.now())
        stale |= went_stale
    if came_back:
        mappings.filter(sensor__key__in=came_back).update(stale_since=None)
        stale -= came_back
    return result


def _moment(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


class ConnectionRunner:
    """Runs one connection's client, its sink and its status reports until cancelled."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.status = ConnectionStatus()
        self.stored = 0
        self.rejected = 0
        self.stale: set[str] = set()  # sensor keys whose mapping is marked stale, read when starting
        # One thread per connection: its own database connection, and batches stored in order.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bridge-{connection.pk}")
        self._rate_mark = (time.monotonic(), 0)
        # Samples per point since the last status report, against the sensors' expected periods.
        self.periods: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        self._counts_since = time.monotonic()
        self._spans: dict[str, list[float]] = {}  # [first, last] source time per point

    async def _db(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, _in_thread, function, *args)

    async def sink(self, samples: list[Sample]) -> None:
        """Store `samples`; return only once they are stored (retrying while the database is away)."""
        delays = backoff_delays(first=0.5, cap=settings.VIGIL_BRIDGE_RETRY_CAP_S)
        while True:
            try:
                result: Stored = await self._db(store_samples, self.connection, samples, self.stale)
                break
            except DatabaseError as exc:
                self.status.error(PointError(f"database unavailable, retrying: {exc}"[:300]), time.time())
                await asyncio.sleep(next(delays))
        self.stored += result.accepted
        counts, spans = self._counts, self._spans
        for sample in samples:  # per reading: kept to plain dict and list operations
            point, ts = sample[0], sample[1]
            counts[point] += 1
            span = spans.get(point)
            if span is None:
                spans[point] = [ts, ts]
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
        self.rejected += len(result.rejected)
        now = time.time()
        for key, reason in result.rejected:
            self.status.error(PointError(reason, point=key, source=key), now)
        # Values the source itself doubts are stored flagged; the status says so, once per point and batch.
        for key, status in result.flagged:
            reason = f"stored flagged: the source marks the value {status}"
            self.status.error(PointError(reason, point=key, source=key), now)

    async def run_client(self, config: protocols.ConnectionConfig, points: Mapping[str, Any]) -> None:
        client = protocols.module(self.connection.protocol)
        delays = backoff_delays()
        while True:
            started = time.monotonic()
            connects = self.status.connects
            try:
                await client.run(config, points, self.sink, self.status)
                reason = "the server closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any client failure is a disconnect, never the bridge's end
                # The status page reads "disconnected: not reachable: ..." while the device is not up.
                reason = failed_try(exc, self.status.connects > connects)[:300]
            self.status.connected = False
            self.status.error(PointError(reason), time.time(), resolved_by=CONNECT)
            log.warning("connection %s (%s): %s", self.connection.pk, self.connection.name, reason)
            if time.monotonic() - started > STABLE_S:
                delays = backoff_delays()
            await asyncio.sleep(next(delays))

    def check_rates(self) -> None:
        """Every RATE_WINDOW_S, a point whose samples are more than RATE_FACTOR times as dense as its
        sensor's period (by their own timestamps, so a backfill of history at the right rate is fine) is an
        error on the status; its readings are still stored: they are valid, only too many."""
        if time.monotonic() - self._counts_since < RATE_WINDOW_S:
            return
        at = time.time()
        for key, count in self._counts.items():
            period = self.periods.get(key)
            first, last = self._spans[key]
            expected = (last - first) / period + 1 if period else None
            if expected and count > RATE_FACTOR * max(expected, RATE_WINDOW_S / period):
                reason = (
                    f"{count} readings over {last - first:.1f} s of source time: more than "
                    f"{RATE_FACTOR:g}× the expected {1 / period:g}/s"
                )
                self.status.error(PointError(reason, point=key, source=key), at)
                log.warning("connection %s, %s: %s", self.connection.pk, key, reason)
        self._counts.clear()
        self._spans.clear()
        self._counts_since = time.monotonic()

    def state_fields(self) -> dict[str, Any]:
        now = time.monotonic()
        then, stored_then = self._rate_mark
        self.check_rates()
        rate = (self.stored - stored_then) / (now - then) if now > then else 0.0
        self._rate_mark = (now, self.stored)
        status = self.status
        return {
            "running": True,
            "connected": status.connected,
            "config_error": "",
            "connected_at": _moment(status.connected_at),
            "written_at": _moment(status.written_at),
            "last_message_at": _moment(status.last_message_at),
            "messages": status.messages,
            "stored": self.stored,
            "rejected": self.rejected,
            "errors": status.errors,
            "rate": round(rate, 2),
            "last_error": status.last_error or "",
            "last_error_at": _moment(status.last_error_at),
            "last_error_resolved_by": status.last_error_resolved_by,
            "last_error_resolved_at": _moment(status.last_error_resolved_at),
            "recent_errors": [
                {"reason": e.reason, "point": e.point, "source": e.source} for e in status.recent_errors
            ],
            "updated_at": timezone.now(),
        }

    async def report(self) -> None:
        """Write the status now (the reporter loop, and once more when stopping)."""
        try:
            await self._db(_save_state, self.connection.pk, self.state_fields())
        except DatabaseError as exc:
            log.warning("connection %s: status not written: %s", self.connection.pk, exc)

    async def _prepare(self) -> tuple[protocols.ConnectionConfig, dict[str, Any]] | None:
        """The client's settings, or None after recording why the connection cannot start; waits out a
        database outage (of any of the start's reads and writes: one failing must not end the runner)."""
        delays = backoff_delays(first=0.5, cap=settings.VIGIL_BRIDGE_RETRY_CAP_S)
        while True:
            try:
                config, points = await self._db(prepare, self.connection)
                await self._db(
                    _save_state, self.connection.pk, {"started_at": timezone.now(), "config_error": ""}
                )
                self.stale = await self._db(_stale_keys, self.connection)
                self.periods = await self._db(_sample_periods, list(points))
                return config, points
            except ConfigError as exc:
                log.error("connection %s (%s) not started: %s", self.connection.pk, self.connection.name, exc)
                fields = {"running": False, "connected": False, "config_error": str(exc)}
                await self._db(_save_state, self.connection.pk, fields | {"updated_at": timezone.now()})
                return None
            except DatabaseError as exc:
                log.warning("connection %s: database unavailable at start: %s", self.connection.pk, exc)
                await asyncio.sleep(next(delays))

    async def run(self) -> None:
        try:
            prepared = await self._prepare()
            if prepared is not None:
                await self._run(*prepared)
        finally:
            # The thread's database connection is closed with it (a test database can then be dropped).
            await asyncio.shield(self._db(db_connections.close_all))
            self.executor.shutdown(wait=False)

    async def run_write_back(self, config: protocols.ConnectionConfig) -> None:
        """Publish the outbox (plant.WriteBack) of this connection until cancelled, reconnecting with
        backoff; a failed attempt is counted on the rows and they are sent again."""
        client = protocols.module(self.connection.protocol)
        in_flight: dict[int, list[int]] = {}  # the state's row id -> every row it stands for
        taken_at = [0.0]  # when the states being written were taken

        async def take() -> list[protocols.OutgoingState]:
            taken_at[0] = time.time()
            while True:
                rows = await self._db(_pending_write_backs, self.connection.pk)
                if rows:
                    break
                await asyncio.sleep(settings.VIGIL_WRITEBACK_POLL_S)
            latest: dict[int, tuple[int, str, dict]] = {}
            covered: dict[int, list[int]] = {}
            for pk, asset_id, key, payload in rows:  # oldest first: the last one of an asset wins
                latest[asset_id] = (pk, key, payload)
                covered.setdefault(asset_id, []).append(pk)
            in_flight.clear()
            for asset_id, (pk, _, _) in latest.items():
                in_flight[pk] = covered[asset_id]
            return [protocols.OutgoingState(pk, key, payload) for pk, key, payload in latest.values()]

        async def confirm(ids: list[int]) -> None:
            done = [pk for state_id in ids for pk in in_flight.pop(state_id, [state_id])]
            await self._db(_mark_written, done)
            # Written back, cleanly, only if the client recorded no error for this pass (a state the PLC
            # refused is confirmed too, so it is not sent for ever): the error stays current.
            last = self.status.last_error_at
            if last is None or last < taken_at[0]:
                self.status.written_at = time.time()

        delays = backoff_delays()
        while True:
            try:
                await client.write_back(config, take, confirm, self.status)
                reason = "write-back: the server closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed write-back never stops reading
                reason = f"write-back: {type(exc).__name__}: {exc}"[:300]
            self.status.error(PointError(reason), time.time(), resolved_by=WRITE)
            failed = [pk for pks in in_flight.values() for pk in pks]
            if failed:
                try:
                    await self._db(_mark_failed, failed, reason)
                except DatabaseError as exc:  # the rows stay unwritten and are sent again: only a count lost
                    log.warning("connection %s: write-back failure not recorded: %s", self.connection.pk, exc)
            await asyncio.sleep(next(delays))

    async def _run(self, config: protocols.ConnectionConfig, points: dict[str, Any]) -> None:
        client = asyncio.create_task(self.run_client(config, points), name=f"client-{self.connection.pk}")
        writer = None
        if self.connection.write_back and hasattr(protocols.module(self.connection.protocol), "write_back"):
            writer = asyncio.create_task(self.run_write_back(config), name=f"write-back-{self.connection.pk}")
        try:
            while not client.done():
                await self.report()
                await asyncio.wait([client], timeout=settings.VIGIL_BRIDGE_STATUS_S)
            client.result()
        finally:
            # The client stores and acknowledges what it holds before it ends (a restart loses nothing).
            client.cancel()
            if writer is not None:
                writer.cancel()
            await asyncio.gather(client, *([writer] if writer else []), return_exceptions=True)
            self.status.connected = False
            fields = self.state_fields() | {"running": False, "connected": False}
            await asyncio.shield(self._db(_save_state, self.connection.pk, fields))


def _in_thread(function: Any, *args: Any) -> Any:
    # A connection the database dropped is replaced before the next attempt.
    close_old_connections()
    try:
        return function(*args)
    except DatabaseError:
        close_old_connections()
        raise


WRITE_BACK_BATCH = 500


def _pending_write_backs(connection_id: int) -> list[tuple[int, int, str, dict]]:
    """(row id, asset id, "<site>/<asset tag>", payload) of the connection's unwritten states, oldest first."""
    rows = (
        WriteBack.objects.filter(connection_id=connection_id, published_at__isnull=True)
        .order_by("id")
        .values_list("pk", "asset_id", "asset__site__slug", "asset__tag", "payload")[:WRITE_BACK_BATCH]
    )
    return [(pk, asset_id, f"{site}/{tag}", payload) for pk, asset_id, site, tag, payload in rows]


# Written rows are kept this long (the console shows what was sent), then deleted as new ones are written.
WRITTEN_KEPT = timedelta(days=1)


def _mark_written(ids: list[int]) -> None:
    now = timezone.now()
    WriteBack.objects.filter(pk__in=ids, published_at__isnull=True).update(published_at=now)
    WriteBack.objects.filter(published_at__lt=now - WRITTEN_KEPT).delete()


def _mark_failed(ids: list[int], reason: str) -> None:
    WriteBack.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1, last_error=reason[:300])


def _sample_periods(keys: list[str]) -> dict[str, float]:
    return dict(Sensor.objects.filter(key__in=keys).values_list("key", "sample_period_s"))


def _stale_keys(connection: Connection) -> set[str]:
    return set(connection.mappings.filter(stale_since__isnull=False).values_list("sensor__key", flat=True))


def _save_state(connection_id: int, fields: dict[str, Any]) -> None:
    ConnectionState.objects.update_or_create(connection_id=connection_id, defaults=fields)


def connections_to_run(site: Site | None = None, ids: list[int] | None = None) -> list[Connection]:
    """The enabled connections (of `site`, or among `ids`), with what the bridge reads of them."""
    queryset = Connection.objects.filter(enabled=True).select_related("site")
    if site is not None:
        queryset = queryset.filter(site=site)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    return list(queryset.order_by("pk"))


Scope = Callable[[], list[Connection]]


def config_fingerprints(connections: list[Connection]) -> dict[int, str]:
    """A digest of everything the bridge reads of each connection (its own fields and its point mappings,
    not the stale marks it writes itself): it changes exactly when the connection must be restarted."""
    ids = [c.pk for c in connections]
    parts: dict[int, list[Any]] = {pk: [] for pk in ids}
    fields = [f.attname for f in Connection._meta.concrete_fields]
    for row in Connection.objects.filter(pk__in=ids).values_list(*fields):
        parts[row[0]].append(row)
    mappings = (
        PointMapping.objects.filter(connection_id__in=ids)
        .order_by("connection_id", "pk")
        .values_list("connection_id", "pk", "sensor_id", "sensor__key", "sensor__sample_period_s", "address")
    )
    for row in mappings:
        parts[row[0]].append(row)
    return {
        pk: hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
        for pk, rows in parts.items()
    }


def _current(scope: Scope) -> dict[int, tuple[Connection, str]]:
    connections = scope()
    fingerprints = config_fingerprints(connections)
    return {c.pk: (c, fingerprints[c.pk]) for c in connections}


async def _end(task: asyncio.Task) -> None:
    """Stop one connection's runner: its client stores and acknowledges what it holds, then it ends."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def run_bridge(
    connections: list[Connection], stop: asyncio.Event | None = None, scope: Scope | None = None
) -> None:
    """Run every connection until `stop` is set (or forever); each one's failure stays its own.

    Every VIGIL_BRIDGE_RELOAD_S the configurations are compared with what runs (`scope()` gives the
    connections to run now; by default the given ones while they stay enabled): a connection whose fields
    or point mappings changed is restarted alone, after its client stored and acknowledged what it had
    received; an added or re-enabled one starts and a disabled or deleted one stops. No restart of
    `manage.py bridge` is needed for a mapping change.
    """
    stop = stop or asyncio.Event()
    ids = [c.pk for c in connections]
    scope = scope or (lambda: connections_to_run(ids=ids))
    loop = asyncio.get_running_loop()
    watcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-watch")

    async def db(function: Any, *args: Any) -> Any:
        return await loop.run_in_executor(watcher, _in_thread, function, *args)

    running: dict[int, tuple[asyncio.Task, str | None]] = {}

    def start(connection: Connection, fingerprint: str | None) -> None:
        task = asyncio.create_task(ConnectionRunner(connection).run(), name=f"connection-{connection.pk}")
        running[connection.pk] = (task, fingerprint)

    try:
        fingerprints = await db(config_fingerprints, connections)
    except DatabaseError:
        fingerprints = {}  # taken at the first check that reaches the database
    for connection in connections:
        start(connection, fingerprints.get(connection.pk))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.VIGIL_BRIDGE_RELOAD_S)
            if stop.is_set():
                break
            try:
                current = await db(_current, scope)
            except DatabaseError as exc:
                log.warning("bridge: configuration not checked: %s", exc)
                continue
            for pk in running.keys() - current.keys():
                log.info("connection %s: disabled or deleted, stopping", pk)
                await _end(running.pop(pk)[0])
            for pk, (connection, fingerprint) in current.items():
                task, known = running.get(pk, (None, None))
                if task is not None and known is None:
                    running[pk] = (task, fingerprint)
                    continue
                if task is not None and known == fingerprint:
                    continue
                if task is not None:
                    log.info("connection %s (%s): configuration changed, restarting", pk, connection.name)
                    await _end(task)
                start(connection, fingerprint)
    finally:
        await asyncio.gather(*(_end(task) for task, _ in running.values()))
        await asyncio.shield(db(db_connections.close_all))
        watcher.shutdown(wait=False)
