"""Drives plant.simulator and posts its readings through the public ingestion API, like a real gateway.

The ORM is read once (which sensors the site's assets have) and written only for ground-truth labels;
every reading goes over HTTP to `POST /api/v1/readings`, so a simulated plant exercises the same path as
a real one.
"""

from __future__ import annotations

import threading
import signal
import math
import time
from datetime import timedelta
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson

from django.db.models import Max

from plant.models import Reading, Site
from plant.simulator import ROLES, SEAM_WINDOW_S, FaultOccurrence, PlantSimulator, Seam, SimAsset, seam_level
from plant.simulator_labels import LabelRecorder

READINGS_PATH = "/api/v1/readings"
MAX_READINGS_PER_REQUEST = 20_000
_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
_RETRY_STATUSES = {429, 500, 502, 503, 504}


class IngestError(Exception):
    """The server refused our data in a way that retrying will not fix (bad token, wrong URL, bad request)."""


def sim_assets(site: Site, limit: int | None = None) -> tuple[list[SimAsset], list[str]]:
    """The site's active assets as SimAssets (by tag), and the tags skipped for having no simulated role or
    a role the simulator does not produce (such as a dataset replay's SKAB pump, fed by `manage.py replay`)."""
    assets, skipped = [], []
    for asset in site.assets.filter(is_active=True).order_by("tag").prefetch_related("sensors__role"):
        sensors = {s.role.key: s.key for s in asset.sensors.all() if s.role.key in ROLES}
        if sensors and all(s.role.key in ROLES for s in asset.sensors.all()):
            assets.append(SimAsset(asset.tag, sensors))
        else:
            skipped.append(asset.tag)
        if limit is not None and len(assets) >= limit:
            break
    return assets, skipped


def check_url(base_url: str) -> str:
    """``base_url`` if it is an http(s) URL with a host; ValueError saying what is wrong otherwise (httpx
    would raise InvalidURL at the first request, after the run has started)."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{base_url[:100]!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{base_url[:100]!r} is not an http:// or https:// URL of a server")
    if url.port is not None and not 0 < url.port < 65536:  # httpx takes any number; a socket does not
        raise ValueError(f"{base_url[:100]!r}: port {url.port} is not a TCP port (1-65535)")
    return base_url


def last_stored(assets: list[SimAsset]) -> dict[str, Seam]:
    """Where the stored history of each simulated sensor that has one ends: the time (epoch seconds) of its
    last stored reading and its level there, from its readings in the SEAM_WINDOW_S up to it.

    A restarted simulator backfills only after these times: the pumps that reach the server through a bridge
    or an edge agent are stamped with the receive time (sub-second, off the simulator's sample grid), so
    the backfill's grid samples of the same seconds would not be de-duplicated on (sensor, ts) and the
    history of the last run would be stored twice. And it starts each sensor from that level (see
    PlantSimulator.resume): a run started afresh would step away from it at the seam, a fake fault.
    """
    keys = [key for asset in assets for key in asset.sensors.values()]
    rows = (
        Reading.objects.filter(sensor__key__in=keys)
        .values("sensor_id", "sensor__key")
        .annotate(last=Max("ts"))
    )
    seams = {}
    for row in rows:
        last = row["last"]
        recent = Reading.objects.filter(
            sensor_id=row["sensor_id"], ts__gt=last - timedelta(seconds=SEAM_WINDOW_S), ts__lte=last
        ).values_list("ts", "value")
        ts = np.array([stamp.timestamp() for stamp, _value in recent])
        values = np.array([value for _stamp, value in recent])
        seams[row["sensor__key"]] = Seam(last.timestamp(), seam_level(ts, values, last.timestamp()))
    return seams


def http_client(base_url: str, token: str, timeout_s: float = 30.0) -> httpx.Client:
    """The gateway's HTTP client (tests replace this function to plug in a mock transport)."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=timeout_s,
    )


@dataclass
class SendTotals:
    """Counts from the server's answers, summed over a run."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    requests: int = 0
    rejection_examples: list[str] = field(default_factory=list)


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if data.get(key):
                return str(data[key])[:300]
    return str(data)[:200]


class ReadingsSender:
    """Posts readings in batches; retries with backoff on connection errors and 5xx, fails fast on 4xx."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        max_retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] = print,
        max_per_request: int = MAX_READINGS_PER_REQUEST,
    ) -> None:
        self.client = client
        self.max_retries = max_retries
        self.sleep = sleep
        self.warn = warn
        self.max_per_request = max_per_request
        self.totals = SendTotals()

    @property
    def url(self) -> str:
        return str(self.client.base_url).rstrip("/") + READINGS_PATH

    def send(self, keys: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        for begin in range(0, len(keys), self.max_per_request):
            chunk = slice(begin, begin + self.max_per_request)
            self._send_chunk(keys[chunk].tolist(), ts[chunk].tolist(), values[chunk].tolist())

    def _send_chunk(self, keys: list[str], ts: list[float], values: list[float]) -> None:
        if not keys:
            return
        body = orjson.dumps(
            {
                "readings": [
                    {"sensor": k, "ts": round(t, 3), "value": round(v, 5)}
                    for k, t, v in zip(keys, ts, values, strict=True)
                    if math.isfinite(v)
                ]
            }
        )
        response = self._post(body)
        if response.status_code == 413 and len(keys) > 1:
            # The server's body limit is smaller than our batch: halve until it fits.
            half = len(keys) // 2
            self._send_chunk(keys[:half], ts[:half], values[:half])
            self._send_chunk(keys[half:], ts[half:], values[half:])
            return
        if response.status_code in (401, 403):
            raise IngestError(
                f"the server at {self.url} refused the gateway token (HTTP {response.status_code}: "
                f"{_detail(response)}). Check --token / GATEWAY_TOKEN; `manage.py seed_demo` or "
                "`manage.py create_gateway <site> <name>` prints a valid one."
            )
        if response.status_code == 404:
            raise IngestError(f"no ingestion API at {self.url} (HTTP 404); is --url the Vigil server?")
        if response.status_code >= 400:
            raise IngestError(
                f"the server at {self.url} rejected the batch"
                f" (HTTP {response.status_code}: {_detail(response)})"
            )
        try:
            answer = response.json()
            accepted, duplicates = int(answer.get("accepted", 0)), int(answer.get("duplicates", 0))
            rejected = answer.get("rejected") or []
        except (ValueError, AttributeError, TypeError):
            raise IngestError(
                f"unexpected answer from {self.url} (HTTP {response.status_code}): {response.text[:200]!r}"
            ) from None
        totals = self.totals
        totals.sent += len(keys)
        totals.requests += 1
        totals.accepted += accepted
        totals.duplicates += duplicates
        totals.rejected += len(rejected)
        for item in rejected[: max(0, 3 - len(totals.rejection_examples))]:
            totals.rejection_examples.append(str(item)[:200])
            self.warn(f"server rejected a reading: {str(item)[:200]}")

    def _post(self, body: bytes) -> httpx.Response:
        delay = _BACKOFF_START_S
        for attempt in range(1, self.max_retries + 2):
            try:
                response = self.client.post(READINGS_PATH, content=body)
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.url} ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return response
                problem = f"{self.url} answered HTTP {response.status_code} ({_detail(response)})"
            if attempt > self.max_retries:
                raise IngestError(
                    f"gave up after {attempt} attempts: {problem}."
                    " Is the server running (`manage.py runserver`)?"
                )
            self.warn(f"{problem}; retry {attempt}/{self.max_retries} in {delay:.1f} s")
            self.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
        raise AssertionError("unreachable")


class SimulationRun:
    """Backfills history quickly, then streams in (scaled) real time; labels injected faults as it goes."""

    def __init__(
        self,
        simulator: PlantSimulator,
        sender: ReadingsSender,
        labels: LabelRecorder | None = None,
        *,
        log: Callable[[str], None] = print,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.simulator = simulator
        self.sender = sender
        self.labels = labels
        self.log = log
        self.monotonic = monotonic
        self.sleep = sleep
        self.sim_start: float | None = None
        self.sim_cursor: float | None = None
        self._announced: set[tuple[str, str, float]] = set()

    def backfill(self, start: float, end: float, after: Mapping[str, Seam] | None = None) -> None:
        """Send [start, end) as fast as the server takes it, in request-sized chunks of simulated time;
        a sensor named in ``after`` (key -> Seam, see ``last_stored``) only from after its seam, continuing
        its stored level there."""
        if after:
            self.simulator.resume(after)
        sensors = sum(len(asset.sensors) for asset in self.simulator.assets) or 1
        chunk_s = max(1.0, self.sender.max_per_request // sensors * self.simulator.dt)
        # The samples before ``after`` are still computed and dropped: the simulator carries state between
        # steps (the temperature's lag), and measures its offset to the stored level in the seam's window.
        t = start
        while t < end:
            self._send(t, min(t + chunk_s, end), after)
            t += chunk_s

    def live(self, start: float, speed: float, batch_seconds: float, duration_s: float | None) -> None:
        """Stream from `start` at `speed` simulated seconds per real second until duration_s (or Ctrl-C)."""
        real0 = self.monotonic()
        cursor = start
        while True:
            elapsed = self.monotonic() - real0
            done = duration_s is not None and elapsed >= duration_s
            target = start + (min(elapsed, duration_s) if done else elapsed) * speed
            if target > cursor:
                self._send(cursor, target)
                cursor = target
            if done:
                return
            wait = batch_seconds - (self.monotonic() - real0 - elapsed)
            if duration_s is not None:
                wait = min(wait, duration_s - (self.monotonic() - real0))
            if wait > 0:
                self.sleep(wait)

    def finish(self) -> None:
        """Bring open labels up to the last data sent (also after Ctrl-C)."""
        if self.labels is not None and self.sim_start is not None and self.sim_cursor is not None:
            occurrences = self.simulator.occurrences(self.sim_start, self.sim_cursor)
            self.labels.record(occurrences, self.sim_cursor, force=True)

    def _send(self, t0: float, t1: float, after: Mapping[str, Seam] | None = None) -> None:
        keys, ts, values = self.simulator.step(t0, t1)
        if after:
            no_seam = Seam(-math.inf, math.nan)
            keep = ts > np.array([after.get(key, no_seam).ts for key in keys.tolist()])
            keys, ts, values = keys[keep], ts[keep], values[keep]
        self.sender.send(keys, ts, values)
        self.sim_start = t0 if self.sim_start is None else self.sim_start
        self.sim_cursor = t1
        occurrences = self.simulator.occurrences(t0, t1)
        for occ in occurrences:
            self._announce(occ, t0, t1)
        if self.labels is not None and occurrences:
            self.labels.record(occurrences, t1)

    def _announce(self, occ: FaultOccurrence, t0: float, t1: float) -> None:
        fault = occ.fault
        what = f"{fault.kind} on {fault.asset_tag}" + (f".{fault.sensor_role}" if fault.sensor_role else "")
        key = (fault.asset_tag, fault.kind, occ.start)
        if key not in self._announced:
            self._announced.add(key)
            state = "started" if occ.start >= t0 else "in progress"
            self.log(f"fault {state}: {what} (for {fault.duration_s:g} s, severity {fault.severity:g})")
        if t0 < occ.end <= t1:
            self.log(f"fault ended: {what}")


def stop_on_sigterm():
    """Treat SIGTERM (how the demo's supervisor and process managers stop a client) like Ctrl-C, so the
    command ends with its summary. Returns the previous handler (None off the main thread: no change)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
