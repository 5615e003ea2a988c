"""Prometheus metrics at ``GET /metrics`` (issue 17, item 5), read by one scrape from shared state.

Vigil runs several web processes (uvicorn ``--workers``, several hosts), several Celery workers and a
bridge; a per-process registry would show whichever process the scrape happened to reach, and
prometheus-client's multiprocess mode only sums processes of one host that share a directory (and wants
that directory wiped at every start). So every figure here is read **at scrape time** from the state all
processes already share:

- the database: scoring lag and due assets per asset type (the due marks), alert openings and closings
  (``AlertEvent`` rows, never deleted: true counters), pending explanations, each bridge connection's
  status (``ConnectionState``);
- Redis: queue depths (``LLEN`` of each Celery queue), and the few event counters no row records, kept in
  one Redis hash by whichever process saw the event: readings accepted / duplicated / rejected by reason
  (every ``ingest_readings`` call, after its transaction commits), the explanation latency histogram
  (each deferred explanation's completion, by a Celery signal in the worker), and the live board's
  WebSocket clients (a sorted set the board consumer refreshes, so a killed web process's sockets age
  out).

A Redis restart resets those counters, which Prometheus' ``rate()`` treats as any counter reset. Recording
is best-effort: an event that cannot reach Redis is dropped (and Redis is not asked again for
``RECORD_BACKOFF_S``), never an ingest slowed or failed by its metrics.

Access: ``VIGIL_METRICS_TOKEN`` (``Authorization: Bearer <token>``) and/or ``VIGIL_METRICS_ALLOWED_NETWORKS``
(client address in one of the CIDRs); with neither set the endpoint does not exist (404), a request that
fails a configured check gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from alerts.choices import CLOSED_STATES, ExplanationStatus
from alerts.consumers import BOARD_CLIENTS_KEY, BOARD_CLIENT_TTL_S
from alerts.models import Alert, AlertEvent, ScoringDue
from config.celery import app
from plant.models import AssetType, ConnectionState

logger = logging.getLogger(__name__)

COUNTERS_KEY = "vigil:metrics:counters"
RECORD_BACKOFF_S = 10.0
# Upper bounds (seconds) of the explanation latency buckets: a SHAP explanation takes ~0.1-5 s, a queue
# backlog or a broker outage minutes.
EXPLANATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# A rejected reading's reason, from the first matching pattern of its error message (plant.ingest).
REJECTION_REASONS = (
    ("unknown_sensor", re.compile(r"^unknown sensor")),
    ("future_timestamp", re.compile(r"^timestamp is more than .* in the future")),
    ("too_old", re.compile(r"^timestamp is more than .* in the past")),
    ("bad_timestamp", re.compile(r"timestamp")),
    ("bad_value", re.compile(r"value")),
    ("bad_sensor_key", re.compile(r"sensor")),
)

_down_until = 0.0


def rejection_reason(error: str) -> str:
    """The metric label of one rejected reading's error message ("other" for anything unforeseen)."""
    for reason, pattern in REJECTION_REASONS:
        if pattern.search(error):
            return reason
    return "other"


def _redis():
    """A client of the broker's Redis (the Celery app's connection pool: its URL and timeouts)."""
    return app.pool.acquire(block=True)


def record(increments: dict[str, float]) -> None:
    """Add to the shared counters in one round trip; dropped (with a back-off) when Redis is down."""
    global _down_until
    increments = {field: amount for field, amount in increments.items() if amount}
    if not increments or time.monotonic() < _down_until:
        return
    try:
        with _redis() as conn:
            pipe = conn.default_channel.client.pipeline(transaction=False)
            for field, amount in increments.items():
                pipe.hincrbyfloat(COUNTERS_KEY, field, amount)
            pipe.execute()
    except Exception as exc:  # a metric must never fail what it measures
        _down_until = time.monotonic() + RECORD_BACKOFF_S
        logger.warning(
            "metrics: could not record %s (Redis: %s); not retrying for %g s",
            increments,
            exc,
            RECORD_BACKOFF_S,
        )


def record_ingest(result: Any) -> None:
    """Count one ingest_readings result: readings accepted, duplicates, and rejections by reason."""
    increments: dict[str, float] = {
        "ingest:accepted": result.accepted,
        "ingest:duplicates": result.duplicates,
    }
    for _index, error in result.rejected:
        key = f"ingest:rejected:{rejection_reason(error)}"
        increments[key] = increments.get(key, 0) + 1
    record(increments)


def on_batch_ingested(sender: Any, result: Any, **kwargs: Any) -> None:
    """plant.ingest's batch_ingested signal: counted once the readings' transaction commits."""
    transaction.on_commit(lambda: record_ingest(result))


def record_explanation_latency(seconds: float) -> None:
    """One deferred explanation completed ``seconds`` after its alert was created."""
    increments = {"explain:count": 1.0, "explain:sum": max(seconds, 0.0)}
    for bound in EXPLANATION_BUCKETS:
        if seconds <= bound:
            increments[f"explain:le:{bound:g}"] = 1.0
    record(increments)


def on_task_postrun(task: Any = None, args: Any = None, retval: Any = None, state: str = "", **kwargs: Any):
    """Celery's task_postrun in the worker: an explanation that completed is observed."""
    if getattr(task, "name", "") != "alerts.tasks.complete_explanation_task" or retval != "ready":
        return
    created = Alert.objects.filter(pk=args[0]).values_list("created_at", flat=True).first() if args else None
    if created is not None:
        record_explanation_latency((timezone.now() - created).total_seconds())


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue in (one per priority step; the plain name is priority 0)."""
    steps = app.conf.broker_transport_options.get("priority_steps", [0, 3, 6, 9])
    sep = app.conf.broker_transport_options.get("sep", "\x06\x16")
    return [queue if step == 0 else f"{queue}{sep}{step}" for step in steps]


class VigilCollector(Collector):
    """Everything /metrics shows, read from the database and Redis at each scrape."""

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "vigil_metrics_source_up", "1 if the source answered this scrape", labels=["source"]
        )
        for source, produce in (("database", self._database), ("redis", self._redis)):
            try:
                families = list(produce())
            except Exception as exc:  # one source down still gives the other's figures
                logger.warning("metrics: %s did not answer: %s", source, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def _database(self) -> Iterator[Any]:
        now = timezone.now()
        lag = GaugeMetricFamily(
            "vigil_scoring_lag_seconds",
            "Age of the oldest due mark (an asset waiting to be scored), per asset type; 0 when none waits",
            labels=["asset_type"],
        )
        due = GaugeMetricFamily(
            "vigil_assets_due", "Assets waiting to be scored, per asset type", labels=["asset_type"]
        )
        waiting = {
            row["asset__asset_type__slug"]: row
            for row in ScoringDue.objects.filter(due=True)
            .values("asset__asset_type__slug")
            .annotate(n=Count("asset_id"), oldest=Min("marked_at"))
            .order_by()
        }
        for slug in AssetType.objects.order_by("slug").values_list("slug", flat=True):
            row = waiting.get(slug)
            oldest = row["oldest"] if row else None
            lag.add_metric([slug], (now - oldest).total_seconds() if oldest else 0.0)
            due.add_metric([slug], row["n"] if row else 0)
        yield lag
        yield due

        # AlertEvent rows are never updated or deleted, so these counts only grow: real counters.
        counts = AlertEvent.objects.aggregate(
            opened=Count("id", filter=Q(from_state="")),
            closed=Count("id", filter=Q(to_state__in=CLOSED_STATES) & ~Q(from_state__in=CLOSED_STATES)),
            opened_shadow=Count("id", filter=Q(from_state="", alert__is_shadow=True)),
            closed_shadow=Count(
                "id",
                filter=Q(to_state__in=CLOSED_STATES, alert__is_shadow=True)
                & ~Q(from_state__in=CLOSED_STATES),
            ),
        )
        for what in ("opened", "closed"):
            family = CounterMetricFamily(
                f"vigil_alerts_{what}", f"Alerts {what} (AlertEvent rows)", labels=["shadow"]
            )
            family.add_metric(["false"], counts[what] - counts[f"{what}_shadow"])
            family.add_metric(["true"], counts[f"{what}_shadow"])
            yield family

        pending = Alert.objects.filter(explanation_status=ExplanationStatus.PENDING).aggregate(
            n=Count("id"), oldest=Min("created_at")
        )
        yield GaugeMetricFamily(
            "vigil_explanations_pending", "Alerts whose explanation is pending", value=pending["n"]
        )
        # Edge alerts whose window's readings the agent has not forwarded yet: no work for the explain
        # queue (so neither pending nor in /readyz's check), but a number to watch for an agent that is gone.
        # Those whose readings will never come are "lost" (alerts.services.edge_readings), not counted here.
        yield GaugeMetricFamily(
            "vigil_explanations_awaiting_readings",
            "Alerts decided at the edge whose explanation awaits the readings of their window",
            value=Alert.objects.filter(explanation_status=ExplanationStatus.AWAITING).count(),
        )
        yield GaugeMetricFamily(
            "vigil_explanation_oldest_pending_seconds",
            "Age of the oldest pending explanation; 0 when none is pending",
            value=(now - pending["oldest"]).total_seconds() if pending["oldest"] else 0.0,
        )

        yield from self._bridge(now)

    def _bridge(self, now) -> Iterator[Any]:
        labels = ["site", "connection", "protocol"]
        families = {
            "running": GaugeMetricFamily(
                "vigil_bridge_running", "1 if the bridge runs this connection", labels=labels
            ),
            "connected": GaugeMetricFamily(
                "vigil_bridge_connected", "1 if the connection is up", labels=labels
            ),
            "rate": GaugeMetricFamily(
                "vigil_bridge_readings_per_second", "Readings stored per second, lately", labels=labels
            ),
            "age": GaugeMetricFamily(
                "vigil_bridge_last_message_age_seconds",
                "Seconds since the last message (-1: none yet)",
                labels=labels,
            ),
            "report": GaugeMetricFamily(
                "vigil_bridge_report_age_seconds",
                "Seconds since the bridge last reported this connection",
                labels=labels,
            ),
            "stored": CounterMetricFamily(
                "vigil_bridge_readings_stored", "Readings the bridge stored", labels=labels
            ),
            "rejected": CounterMetricFamily(
                "vigil_bridge_readings_rejected", "Readings the bridge rejected", labels=labels
            ),
            "errors": CounterMetricFamily("vigil_bridge_errors", "Errors on this connection", labels=labels),
        }
        states = ConnectionState.objects.select_related("connection__site").order_by("connection_id")
        for state in states:
            key = [state.connection.site.slug, state.connection.name, state.connection.protocol]
            # A bridge that stopped reporting (killed) is neither running nor connected, whatever it last said.
            current = state.is_current(now)
            families["running"].add_metric(key, int(state.running and current))
            families["connected"].add_metric(key, int(state.connected and current))
            families["rate"].add_metric(key, state.rate)
            families["age"].add_metric(
                key, (now - state.last_message_at).total_seconds() if state.last_message_at else -1.0
            )
            families["report"].add_metric(
                key, (now - state.updated_at).total_seconds() if state.updated_at else -1.0
            )
            for name in ("stored", "rejected", "errors"):
                families[name].add_metric(key, getattr(state, name))
        yield from families.values()

    def _redis(self) -> Iterator[Any]:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            client = conn.default_channel.client
            pipe = client.pipeline(transaction=False)
            names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
            for name in names:
                for key in queue_keys(name):
                    pipe.llen(key)
            pipe.hgetall(COUNTERS_KEY)
            # Board sockets not refreshed within their TTL belong to a process that died: not counted.
            pipe.zcount(BOARD_CLIENTS_KEY, time.time() - BOARD_CLIENT_TTL_S, "+inf")
            replies = pipe.execute()
        per_queue = len(queue_keys(names[0])) if names else 0
        depth = GaugeMetricFamily("vigil_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"])
        for i, name in enumerate(names):
            depth.add_metric([name], sum(replies[i * per_queue : (i + 1) * per_queue]))
        yield depth
        counters = {key.decode(): float(value) for key, value in replies[-2].items()}
        yield GaugeMetricFamily(
            "vigil_board_websocket_clients",
            "Live board WebSocket connections (all web processes)",
            value=replies[-1],
        )

        accepted = CounterMetricFamily(
            "vigil_ingest_readings", "Readings handled by ingest", labels=["outcome"]
        )
        accepted.add_metric(["accepted"], counters.get("ingest:accepted", 0.0))
        accepted.add_metric(["duplicate"], counters.get("ingest:duplicates", 0.0))
        yield accepted
        rejected = CounterMetricFamily(
            "vigil_ingest_readings_rejected", "Readings rejected by ingest, by reason", labels=["reason"]
        )
        for reason in [name for name, _ in REJECTION_REASONS] + ["other"]:
            rejected.add_metric([reason], counters.get(f"ingest:rejected:{reason}", 0.0))
        yield rejected

        yield HistogramMetricFamily(
            "vigil_explanation_latency_seconds",
            "From an alert's creation to its deferred explanation (explain queue)",
            buckets=[
                (f"{bound:g}", counters.get(f"explain:le:{bound:g}", 0.0)) for bound in EXPLANATION_BUCKETS
            ]
            + [("+Inf", counters.get("explain:count", 0.0))],
            sum_value=counters.get("explain:sum", 0.0),
        )


def _allowed(request: HttpRequest) -> HttpResponse | None:
    """None when the request may scrape; else the 404 (not configured) or 403 answer."""
    token, networks = settings.VIGIL_METRICS_TOKEN, settings.VIGIL_METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return HttpResponse(
            "metrics are off: set VIGIL_METRICS_TOKEN or VIGIL_METRICS_ALLOWED_NETWORKS\n",
            status=404,
            content_type="text/plain",
        )
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse(
                "a valid 'Authorization: Bearer <VIGIL_METRICS_TOKEN>' is required\n",
                status=403,
                content_type="text/plain",
            )
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            address = None
        if address is None or not any(address in ipaddress.ip_network(net, strict=False) for net in networks):
            return HttpResponse(
                "this address may not read the metrics (VIGIL_METRICS_ALLOWED_NETWORKS)\n",
                status=403,
                content_type="text/plain",
            )
    return None


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of VigilCollector."""
    refused = _allowed(request)
    if refused is not None:
        return refused
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VigilCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
