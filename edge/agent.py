"""The edge agent: local sources → durable queue → local decisions → local publication, and the forwarder.

``Agent.sink`` is the sink every source client is given (``connectivity.points.Sink``): it feeds each
asset's ``AssetDecider`` and decides at once (a reading's decision takes one scoring of the new windows,
whether or not the server is reachable), hands the events to the local publisher, then stores the batch and
the events in the local queue before it returns (durable: a source acknowledges its protocol only after
the sink returned). Each decided event is queued for the server (in
the same moment as the decider's saved state, so a restart neither loses nor repeats it) and handed to the
local publisher (MQTT retained topic / OPC UA node / Modbus coil through the protocol clients' write-back,
or any async callable); a publisher failure is logged and never blocks the decisions.

With each batch the readings that go into the decisions are kept beside the queue (its ``recent`` table, one
window plus a few steps), so a restarted agent (a kill, a power blip, a watchdog) refills its windows and
decides the next one at once, continuing the saved rule state. The alerts opened in the last 24 h, which
the heartbeat reports, are counted from the queue's log of openings (``LocalQueue.opened_since``), so a
restart does not reset the figure; their times are the gateway clock's, moved with each jump of it. The
agent's own timing (state saves, log rates) runs on the monotonic clock; the gateway's wall clock is
watched against a clock nobody sets (``GatewayClock``): a jump is said in the log and handed to the
deciders (edge.decide), and "ahead of the gateway's clock" is judged against the latest time that clock has
shown, so a clock set back does not shut correctly dated readings out of the decisions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from connectivity.points import Sample, SampleStatus, run_until_stopped
from detection.bundle import Bundle, BundleError, load_bundle
from edge.config import AgentConfig
from edge.decide import AlertEvent, AssetDecider, decide_all
from edge.forward import Forwarder
from edge.model import EdgeModel
from edge.queue import LocalQueue
from edge.updates import ModelStore, ShadowTrial, SwitchWatch

logger = logging.getLogger("edge.agent")

AGENT_VERSION = "1"
Publisher = Callable[[AlertEvent], Awaitable[None]]
Source = Callable[[Callable[[list[Sample]], Awaitable[None]]], Awaitable[None]]
# The decider's state is saved with every event and at least this often — in seconds of time and of windows
# decided (a backlog is decided faster than real time) — so a restart resumes close to where the agent
# stopped: the windows after the save are decided again on the kept readings (``recent``), which reach that
# far back.
STATE_EVERY_S = 30.0
# A reading dated further ahead of this gateway's clock than this (the server's VIGIL_INGEST_MAX_FUTURE_S
# default) is a source whose clock jumped: it stays out of the local decisions, whose "latest time" it would
# otherwise become — every later reading would look old and no window would be decided until real time
# caught up with the jump. It is still queued: the server's ingest judges it (and counts a refusal).
MAX_FUTURE_S = 300.0
FUTURE_LOG_EVERY_S = 60.0
# A change of the gateway's wall clock against the steady clock larger than this between two batches is a
# jump (an NTP step, an operator setting the time); NTP's slewing stays far below it.
CLOCK_JUMP_S = 5.0
# The span of the heartbeat's count of the alerts opened here (``local_alerts_24h``).
LOCAL_ALERTS_S = 86_400.0


def _steady() -> float:
    """Seconds of a clock nobody sets: Linux's boot time counts a suspend too (a gateway that slept saw
    time pass, its wall clock did not jump), elsewhere the monotonic clock."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class GatewayClock:
    """The gateway's wall clock (``time.time``) as the agent reads it, watched against a steady clock."""

    def __init__(self) -> None:
        self._offset = time.time() - _steady()
        self._latest_offset = self._offset

    def now(self) -> float:
        return time.time()

    def jumped(self) -> float:
        """The jump of the wall clock since the last call, in seconds (0.0: none beyond CLOCK_JUMP_S)."""
        offset = time.time() - _steady()
        previous, self._offset = self._offset, offset
        self._latest_offset = max(self._latest_offset, offset)
        if abs(offset - previous) < CLOCK_JUMP_S:
            return 0.0
        return round(offset - previous, 3)  # two clock readings apart: no finer than that

    def saw(self, ts: float) -> None:
        """``ts`` was a time of this gateway's clock (the saved state's, before a restart)."""
        self._latest_offset = max(self._latest_offset, ts - _steady())

    def latest(self) -> float:
        """The latest time the wall clock has shown since the agent started, carried on by the steady clock:
        the clock now, or where it would be had it not been set back."""
        now, steady = time.time(), _steady()
        return steady + max(self._latest_offset, now - steady)


class Agent:
    """See the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        publisher: Publisher | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.config = config
        self.clock = GatewayClock()
        self.queue = LocalQueue(Path(config.data_dir) / "queue.sqlite3", config.queue_max_bytes)
        self.store = ModelStore(Path(config.data_dir) / "models")
        # A switched model stays watched across a restart (a kill or a reboot right after a switch must not
        # leave a flooding model in place for good).
        saved_watches = self.queue.load_state("watches") or {}
        # Models that failed to load at start and were rolled back: (asset, assignment or None, why), for
        # the updater to report to the server.
        self.load_failures: list[tuple[str, int | None, str]] = []
        self.deciders: dict[str, AssetDecider] = {}
        for asset in config.assets:
            # The config's bundle is the first model; installed into the store, so that an update can be
            # rolled back to it. A model installed by an update (edge.updater) wins over it afterwards.
            if self.store.current(asset.tag) is None:
                load_bundle(
                    str(asset.bundle)
                )  # a missing or damaged first bundle: BundleError, nothing installed
                data = Path(asset.bundle).read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                self.store.install(asset.tag, sha, data)
                self.store.switch(asset.tag, sha)
            bundle, model = self._current_model(asset.tag, saved_watches.get(asset.tag))
            sensors = dict(bundle.spec.get("sensors") or {})
            decider = AssetDecider(asset.tag, model, sensors)
            decider.restore(self.queue.load_state(f"decider:{asset.tag}"))
            self.deciders[asset.tag] = decider
        # The readings kept for a restart: a window and a few steps, and those since the last state save (the
        # windows after it are decided again on start, on the same readings).
        self._keep_s = max(d.horizon for d in self.deciders.values()) + STATE_EVERY_S
        self._restore_windows()
        self._sensors = {key for decider in self.deciders.values() for key in decider.sensors}
        self.publisher = publisher
        self.forwarder = forwarder or Forwarder(
            self.queue,
            config.server_url,
            config.token,
            heartbeat_s=config.heartbeat_s,
            agent_version=AGENT_VERSION,
            heartbeat_extra=self._heartbeat_extra,
        )
        self.shadows: dict[str, tuple[AssetDecider, ShadowTrial]] = {}
        failed = {tag for tag, _, _ in self.load_failures}
        self.watches: dict[str, SwitchWatch] = {
            tag: SwitchWatch.from_state(body)
            for tag, body in saved_watches.items()
            if tag in self.deciders and tag not in failed
        }
        self.decision_latencies: list[float] = []  # seconds from a batch's arrival to its decisions
        self.events: list[AlertEvent] = []
        self._saved_at = -math.inf
        self._saved_ends: dict[str, float | None] = {}
        self.ahead_of_clock = 0  # readings left out of the decisions: dated too far ahead (_not_ahead)
        self._ahead_logged_at = -math.inf

    def _current_model(self, tag: str, watch_state: dict | None) -> tuple[Bundle, EdgeModel]:
        """The asset's current model; one that no longer loads (a damaged file, a runtime that refuses it)
        is rolled back to the previous model by itself, and the failure recorded for the server."""
        try:
            bundle = load_bundle(str(self.store.bundle_path(tag)))
            return bundle, EdgeModel(bundle)
        except BundleError as exc:
            current, previous = self.store.current(tag), self.store.previous(tag)
            if previous is None:
                raise
            self.store.rollback(tag)
            why = f"model {str(current)[:12]}… failed to load ({exc}); rolled back to {previous[:12]}…"
            logger.error("%s: %s", tag, why)
            assignment = (watch_state or {}).get("assignment")
            self.load_failures.append((tag, assignment, why))
            bundle = load_bundle(str(self.store.bundle_path(tag)))
            return bundle, EdgeModel(bundle)

    def _restore_windows(self) -> None:
        """Each asset's windows refilled with the kept readings (the queue's ``recent`` table): the next
        window after a restart is decided at once, with the restored rule state."""
        now = self.clock.now()
        kept = [Sample(r.sensor, r.ts, r.value, SampleStatus(r.status)) for r in self.queue.recent_readings()]
        saved = max(
            [s.ts for s in kept] + [d.last_end for d in self.deciders.values() if d.last_end], default=None
        )
        set_back = saved is not None and saved > now + MAX_FUTURE_S
        if set_back:
            # The clock is behind what the agent saw before it stopped: set back meanwhile (a flat RTC battery,
            # a gateway booted before NTP answered). Its readings are judged against the latest time seen.
            logger.warning(
                "the gateway's clock (%s) is %.0f s behind the saved state: set back while the agent was "
                "stopped? Local decisions go on by the readings' own times",
                datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="seconds"),
                saved - now,
            )
            self.clock.saw(saved)
            # The downtime is not known: the logged openings are moved as the deciders' state is (once: the
            # deciders' saved state is moved again on each start until a batch saves it moved).
            self.queue.shift_opened(now - saved, once_for=saved)
        since = now - self._keep_s
        for tag, decider in self.deciders.items():
            taken = decider.restore_window(kept, since)
            if set_back:
                decider.clock_jumped(now - saved, measured=False)
            if taken:
                logger.info(
                    "%s: %d reading(s) of the windows being decided restored (last decided window ends %s)",
                    tag,
                    taken,
                    "none" if decider.last_end is None else f"{decider.last_end:.0f}",
                )

    # --- the sink of every source ---------------------------------------------------------------------------
    async def sink(self, samples: list[Sample]) -> None:
        arrived = time.perf_counter()
        jump = self.clock.jumped()
        if jump:
            self._clock_jumped(jump)
        # Decide first: a decision waits for no disk. The batch is stored durably before this returns, so a
        # source still acknowledges only stored readings; a crash in between has the source resend them and
        # the same windows decide the same events (same keys) again.
        decided = self._not_ahead(samples)
        events = decide_all([d for d in self.deciders.values() if d.add(decided)])
        self.decision_latencies.append(time.perf_counter() - arrived)
        del self.decision_latencies[:-10_000]
        events = [self.deciders[event.asset].explained(event) for event in events]
        for event in events:
            self.events.append(event)
            await self._publish(event)
        self._store(samples, decided)
        if events or self._state_due():
            decided_at = self.clock.now()
            for event in events:
                opened_at = decided_at if event.kind == "opened" else None
                self.queue.put_event(event.key, event.body(), opened_at=opened_at)
            # Here, after this batch's check for a clock jump (a count may be asked before one is seen).
            self.queue.forget_opened(decided_at - LOCAL_ALERTS_S)
            self._save_states()
        self._shadow_step(decided, events)

    def _store(self, samples: list[Sample], decided: list[Sample]) -> None:
        """The batch into the queue and, in the same transaction, the readings of the windows being decided
        (rewritten from the decider for an asset whose readings were moved by a clock jump)."""
        moved = [d for d in self.deciders.values() if d.following_jump]
        skip = {key for d in moved for key in d.sensors}
        self.queue.put_readings(
            ((s.point, s.ts, s.value, s.status.value, s.continues) for s in samples),
            recent=[
                (s.point, s.ts, s.value, s.status.value)
                for s in decided
                if s.point in self._sensors and s.point not in skip
            ],
            keep_s=self._keep_s,
        )
        for decider in moved:
            self.queue.replace_recent(decider.sensors, decider.window_rows())
        if moved:  # the saved state on the same time line as the kept readings
            self._save_states()

    def _clock_jumped(self, delta: float) -> None:
        logger.warning(
            "the gateway's clock jumped %s by %.1f s (now %s): local decisions go on by the readings' own "
            "times",
            "forward" if delta > 0 else "back",
            abs(delta),
            datetime.fromtimestamp(self.clock.now(), tz=timezone.utc).isoformat(timespec="seconds"),
        )
        for decider in [*self.deciders.values(), *(candidate for candidate, _ in self.shadows.values())]:
            decider.clock_jumped(delta)
        self.queue.shift_opened(delta)

    def _not_ahead(self, samples: list[Sample]) -> list[Sample]:
        """The samples dated at most MAX_FUTURE_S ahead of this gateway's clock (the latest time it has
        shown: ``GatewayClock.latest``); the others are counted and said in the log (at most every
        FUTURE_LOG_EVERY_S)."""
        limit = self.clock.latest() + MAX_FUTURE_S
        if not samples or max(s.ts for s in samples) <= limit:
            return samples
        ahead = [s for s in samples if s.ts > limit]
        self.ahead_of_clock += len(ahead)
        if time.monotonic() - self._ahead_logged_at >= FUTURE_LOG_EVERY_S:
            self._ahead_logged_at = time.monotonic()
            logger.warning(
                "%d reading(s) dated ahead of this gateway's clock by more than %.0f s (e.g. %s at %.0f s "
                "ahead; %d so far): left out of the local decisions (a source's clock jumped?), still "
                "forwarded",
                len(ahead),
                MAX_FUTURE_S,
                ahead[0].point,
                ahead[0].ts - limit + MAX_FUTURE_S,
                self.ahead_of_clock,
            )
        return [s for s in samples if s.ts <= limit]

    # --- model updates (edge.updater drives these) --------------------------------------------------------------
    def _shadow_step(self, samples: list[Sample], events: list[AlertEvent]) -> None:
        """Candidates decide on the same readings, after the live decisions (which they never delay)."""
        for tag, (candidate, trial) in self.shadows.items():
            if not candidate.add(samples):
                continue
            would = candidate.decide()
            live = self.deciders[tag]
            trial.record(live.last_scored, candidate.last_scored)
            trial.count_alerts(
                current=sum(e.kind == "opened" and e.asset == tag for e in events),
                candidate=sum(e.kind == "opened" for e in would),
                in_alert_current=len(live.last_scored) if live.in_alert else 0,
                in_alert_candidate=len(candidate.last_scored) if candidate.in_alert else 0,
            )
        for tag, watch in self.watches.items():
            live = self.deciders[tag]
            watch.observe(
                [end for end, _ in live.last_scored],
                sum(e.kind == "opened" and e.asset == tag for e in events),
                len(live.last_scored) if live.in_alert else 0,
            )

    def start_shadow(self, tag: str, model: EdgeModel, sha256: str) -> ShadowTrial:
        live = self.deciders[tag]
        trial = ShadowTrial(tag, sha256)
        self.shadows[tag] = (AssetDecider(tag, model, live.sensors), trial)
        return trial

    def switch(
        self,
        tag: str,
        model: EdgeModel,
        *,
        expected_per_hour: float,
        expected_share: float,
        factor: float,
        assignment: int | None = None,
    ) -> None:
        """The candidate becomes the live model of ``tag``: it decides the next window with the readings
        already buffered and continues the active alert (``AssetDecider.take_over``)."""
        old = self.deciders[tag]
        new = AssetDecider(tag, model, old.sensors)
        new.take_over(old)
        self.deciders[tag] = new
        self.shadows.pop(tag, None)
        self.watches[tag] = SwitchWatch(
            tag,
            expected_per_hour=expected_per_hour,
            factor=factor,
            expected_share=expected_share,
            assignment=assignment,
        )
        self._save_states()

    def restore_model(self, tag: str, model: EdgeModel) -> None:
        """After a rollback: the previous model decides again (no watch), from where the rolled-back one is."""
        old = self.deciders[tag]
        new = AssetDecider(tag, model, old.sensors)
        new.take_over(old)
        self.deciders[tag] = new
        self.watches.pop(tag, None)
        self._save_states()

    def _save_states(self) -> None:
        for tag, decider in self.deciders.items():
            self.queue.save_state(f"decider:{tag}", decider.state_json())
        self.queue.save_state("watches", {tag: watch.state() for tag, watch in self.watches.items()})
        self._saved_at = time.monotonic()
        self._saved_ends = {tag: decider.last_end for tag, decider in self.deciders.items()}

    def _state_due(self) -> bool:
        if time.monotonic() - self._saved_at >= STATE_EVERY_S:
            return True
        for tag, decider in self.deciders.items():
            saved = self._saved_ends.get(tag)
            if decider.last_end is not None and (saved is None or decider.last_end - saved >= STATE_EVERY_S):
                return True
        return False

    async def _publish(self, event: AlertEvent) -> None:
        if self.publisher is None:
            return
        try:
            await self.publisher(event)
        except Exception:  # the plant's own display failing must not stop the decisions
            logger.exception("publishing %s locally failed", event.key)

    def _heartbeat_extra(self) -> dict:
        return {
            "models": {tag: d.sha256 for tag, d in self.deciders.items()},
            "local_alerts_24h": self.queue.opened_since(self.clock.now() - LOCAL_ALERTS_S),
        }

    # --- running --------------------------------------------------------------------------------------------
    async def run(self, sources: Sequence[Source], stop: asyncio.Event) -> None:
        """Run the sources and the forwarder until ``stop`` is set; then save the state and close."""
        # The plant hears each asset's state again: the last publication before a stop may have been lost.
        for decider in self.deciders.values():
            await self._publish(decider.state_event())
        tasks = [asyncio.create_task(source(self.sink)) for source in sources]
        tasks.append(asyncio.create_task(self.forwarder.run(stop)))
        try:
            await run_until_stopped(stop, tasks)
        finally:
            self._save_states()
            await self.forwarder.close()
            self.queue.close()
