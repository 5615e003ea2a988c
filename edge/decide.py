"""Local decisions: each asset's readings → windows → scores → the server's alert rules, as readings arrive.

An ``AssetDecider`` keeps the last stretch of each role's readings (one window plus a few steps), and on
``decide()`` scores every window that has become complete since the last call through the asset's
``EdgeModel`` (the server's pipeline) and steps the server's rule engine (``detection.rules.step``) over
them. A window ending at e is complete when every role that is still reporting has readings up to e; a role
silent for longer than a window stops holding the others back (its windows then lack its data, which the
pipeline treats as missing, as on the server).

Opened and cleared alerts become ``AlertEvent``s with an idempotency key made of the asset, the model, the
first window of the episode and the episode's number (``episodes``: the episodes this asset's deciders have
opened, saved with the rule state and carried across a model switch):
``<tag>/<sha256[:16]>/<first window end, 3 decimals>/<episode>/<kind>``. The same episode decided again
(after a restart, from the saved state) is the same event on the server and in the local queue, which both
keep one event per key; a later episode is another event even when its first window has the time of an
earlier one's (a clock set back by whole hours repeats the window ends of a regular grid). The server does
not parse keys: those of agents from before the number (``<tag>/<sha256[:16]>/<first>/<kind>``) are
recorded as they are. The rule state and the last window decided are saved (``state_json``/``restore``) and
the agent keeps the readings of the windows being filled beside its queue (``restore_window`` on start), so
a restarted agent continues the episode instead of opening it again and decides the next window at once.

Windows are built on the readings' own timestamps. When the gateway's clock jumps (``clock_jumped``: the
agent measures the jump against the monotonic clock) and this asset's readings turn out to be dated by it —
the first reading after the jump is dated nearer the jumped clock than the old one — the decider moves what
it holds by the jump (its buffered readings, its last window, its rule state) and readings dated before the
jump that arrive late are moved alike, so the windows go on across the jump without a pause and the rules
keep their order. Only the decider's own copies move: the queued readings keep the times they came with.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from connectivity.points import Sample, SampleStatus
from detection import gate, quality, rules
from edge.model import EdgeModel, EdgeScores, score_many

logger = logging.getLogger(__name__)

OPENING_INPUTS_KEPT = 16
# How long after an asset's first reading following a gateway clock jump a reading may still be dated by the
# clock before it (sent before the jump, delivered after it); readings of an asset whose source keeps its own
# clock are left as they are.
JUMP_GRACE_S = 30.0


@dataclass(frozen=True)
class AlertEvent:
    """An alert decided at the edge: ``kind`` "opened" or "cleared", at the end of window ``at``."""

    key: str
    kind: str
    asset: str
    at: float
    first: float
    peak_at: float
    peak_score: float
    level: int
    model_sha256: str
    # Filled in by ``AssetDecider.explained`` for the local HMI (the server explains from the readings):
    # the sensor that pushed the opening window's score most and the board's sentence about it, and where
    # to look first (detection.gate: machine_fault, sensor_fault or data_link; "" not said).
    sensor: str = ""
    reason: str = ""
    category: str = ""

    @property
    def what(self) -> str:
        """What the alert is about in the words of the server's one-line texts (detection.gate)."""
        return gate.category_what(self.category, self.sensor) if self.category else self.sensor

    def body(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "asset": self.asset,
            "at": self.at,
            "first": self.first,
            "peak_at": self.peak_at,
            "peak_score": self.peak_score,
            "level": self.level,
            "model_sha256": self.model_sha256,
        }


@dataclass(frozen=True)
class _Flagging:
    """One sensor's settings for the ingest's quality rules (the bundle's ``quality``)."""

    valid_min: float | None
    valid_max: float | None
    sample_period_s: float
    rules: Mapping[str, Any]


@dataclass
class _RoleBuffer:
    ts: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)

    def fresh(self, rows: list[tuple[float, float, int, float]]) -> list[tuple[float, float, int, float]]:
        """The new (ts, value, source bits, continues) rows in time order, without a resent reading (a time
        already buffered): the first value stays, as on the server (plant.ingest.service keeps the first of a
        repeated (sensor, ts) and writes nothing over a stored one), so the agent decides on the readings the
        server will hold."""
        seen = set()
        fresh = []
        for row in sorted(rows, key=lambda row: row[0]):  # stable: the first of a repeated time stays
            i = bisect.bisect_left(self.ts, row[0])
            if row[0] not in seen and not (i < len(self.ts) and self.ts[i] == row[0]):
                seen.add(row[0])
                fresh.append(row)
        return fresh

    def context(self, since: float, reach: int) -> tuple[list[float], list[float]]:
        """The buffered readings the quality rules look back on for new readings from ``since``: ``reach``
        before it (the spike rule's window, a stuck run's length) and every one after it (a late reading
        meets its true neighbours)."""
        start = max(0, bisect.bisect_left(self.ts, since) - reach)
        return self.ts[start:], self.values[start:]

    def insert(self, fresh: list[tuple[float, float, int, float]], flags: Sequence[int]) -> None:
        for (ts, value, bits, _), flag in zip(fresh, flags, strict=True):
            i = bisect.bisect_left(self.ts, ts)
            self.ts.insert(i, ts)
            self.values.insert(i, value)
            self.quality.insert(i, bits | flag)

    def shift(self, delta: float) -> None:
        self.ts = [ts + delta for ts in self.ts]

    def trim(self, before: float, keep: int = 0) -> None:
        """Forget the readings before ``before`` but the last ``keep`` of them."""
        cut = max(bisect.bisect_left(self.ts, before) - keep, 0)
        if cut:
            del self.ts[:cut]
            del self.values[:cut]
            del self.quality[:cut]

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ts = np.asarray(self.ts, dtype=np.float64)
        return ts, np.asarray(self.values, dtype=np.float64), np.asarray(self.quality, dtype=np.uint16)


class AssetDecider:
    """See the module docstring. ``sensors`` maps the sensor keys of this asset to their roles."""

    def __init__(self, tag: str, model: EdgeModel, sensors: Mapping[str, str]) -> None:
        self.tag = tag
        self.model = model
        self.sensors = dict(sensors)
        self.params = model.rule_params
        self.sha256 = str((model.spec.get("model") or {}).get("sha256", ""))
        self.state = rules.RuleState()
        # Episodes opened on this asset (the current one's number while one is open): part of the event keys.
        self.episodes = 0
        # What ``explained`` said of the active episode's opening (episode, category, sensor, sentence): said
        # again when the agent publishes the asset's state on start (``state_event``).
        self._told: tuple[int, str, str, str] | None = None
        self.last_end: float | None = None
        self.last_scored: list[
            tuple[float, float]
        ] = []  # (end, score) of the last decide(), for shadow trials
        self._buffers = {role: _RoleBuffer() for role in model.roles}
        self._flagging = _flagging(model.spec, self.sensors)
        self._opening_inputs: dict[str, np.ndarray] = {}  # event key -> input of its opening window
        self._opening_flags: dict[str, dict[str, int]] = {}  # event key -> its opening window's flags
        self._latest: dict[str, float] = {}
        # Enough history for the next window and the steps between two decisions.
        self.horizon = model.window_s + 4 * model.step_s
        # And for the quality rules the readings the ingest's context holds before a new one (a spike window,
        # a stuck run), whatever their age: a sensor sampled every 10 s has 10 readings in 100 s, and its run
        # of 20 stuck values would never be flagged here while the server flags it.
        self._reach = _reach(next(iter(self._flagging.values())).rules) if self._flagging else 0
        self._jump: _Jump | None = None

    # --- input ---------------------------------------------------------------------------------------------
    def add(self, samples: Iterable[Sample]) -> int:
        """Buffer the samples of this asset's sensors (others ignored); returns how many were taken. BAD
        and STALE samples carry no value: the window sees a gap there, as on the server."""
        taken = 0
        fresh: dict[str, list[tuple[float, float, int, float]]] = {}
        for sample in samples:
            role = self.sensors.get(sample.point)
            buffer = self._buffers.get(role) if role is not None else None
            if buffer is None:
                continue
            taken += 1
            ts = sample.ts if self._jump is None else self._placed(sample.ts)
            self._latest[role] = max(self._latest.get(role, ts), ts)
            if sample.value is None or sample.status == SampleStatus.STALE:
                continue
            # A BAD value is kept flagged, as the server stores it: the windows leave it out
            # (detection.features.EXCLUDED_QUALITY), the rules still see a reading there (no gap).
            continues = math.nan if sample.continues is None else sample.continues + (ts - sample.ts)
            source = quality.SOURCE_FLAGS[sample.status.value]
            fresh.setdefault(role, []).append((ts, float(sample.value), source, continues))
        if fresh:
            self._buffer(fresh)
        return taken

    def _buffer(self, rows: Mapping[str, list[tuple[float, float, int, float]]]) -> None:
        """Buffer each role's new rows with the quality flags the ingest gives them (detection.quality:
        judged against the buffered readings before them, never re-judging those), when the bundle ships
        the rules: one call for all the roles of the batch (the rules' cost is mostly per call)."""
        fresh = {role: new for role, given in rows.items() if (new := self._buffers[role].fresh(given))}
        flagged = {role: new for role, new in fresh.items() if role in self._flagging}
        flags: dict[str, list[int]] = {}
        if flagged:
            rules_ = next(iter(self._flagging.values())).rules
            reach = self._reach
            group, ts, values, continues, target, low, high, period = [], [], [], [], [], [], [], []
            for number, (role, new) in enumerate(flagged.items()):
                old_ts, old_values = self._buffers[role].context(new[0][0], reach)
                setting = self._flagging[role]
                n = len(old_ts) + len(new)
                group += [number] * n
                ts += old_ts + [row[0] for row in new]
                values += old_values + [row[1] for row in new]
                continues += [math.nan] * len(old_ts) + [row[3] for row in new]
                target += [False] * len(old_ts) + [True] * len(new)
                low += [math.nan if setting.valid_min is None else setting.valid_min] * n
                high += [math.nan if setting.valid_max is None else setting.valid_max] * n
                period += [setting.sample_period_s] * n
            order = np.lexsort((np.asarray(ts), np.asarray(group)))  # by role, then time (stable)
            computed = quality.compute_flags(
                np.asarray(group)[order],
                np.asarray(ts, dtype=np.float64)[order],
                np.asarray(values, dtype=np.float64)[order],
                np.asarray(target)[order],
                valid_min=np.asarray(low, dtype=np.float64)[order],
                valid_max=np.asarray(high, dtype=np.float64)[order],
                sample_period_s=np.asarray(period, dtype=np.float64)[order],
                continues_s=np.asarray(continues, dtype=np.float64)[order],
                **rules_,
            )
            back = np.empty_like(computed)
            back[order] = computed
            mine = back[np.asarray(target)]
            at = 0
            for role, new in flagged.items():  # the targets in the order they were laid out
                flags[role] = [int(flag) for flag in mine[at : at + len(new)]]
                at += len(new)
        for role, new in fresh.items():
            self._buffers[role].insert(new, flags.get(role) or [0] * len(new))

    def restore_window(self, samples: Iterable[Sample], since: float) -> int:
        """Refill the windows being decided with the kept readings (edge.queue ``recent``) when the agent
        starts, after ``restore``: readings from before ``since`` (the agent's bound: long ago) or too old
        for any window after the last one decided stay out. Returns how many were taken."""
        if self.last_end is not None:
            since = max(since, self.last_end - self.model.window_s)
        return self.add(s for s in samples if s.ts > since)

    def take_over(self, old: AssetDecider) -> None:
        """Continue where ``old``, the decider of the model this one replaces (a switch or a rollback), is:
        its buffered readings of the roles both models read, the last window it decided, its clock-jump
        mapping, the episode count and the active alert with the previous alert's boundary, as the server
        continues an asset's alert across a promotion (``alerts.services.lifecycle`` finds the active alert
        by asset, not by version). So the first window after the switch is decided at once, an episode in progress
        is cleared by the new model's clear threshold instead of being dropped (the HMI would show it
        until the new model opened and cleared one of its own), and an ongoing fault is not raised a second
        time. The recent scores are the old model's and stay behind: the new model's own windows fill
        them."""
        for role, buffer in self._buffers.items():
            kept = old._buffers.get(role)
            if kept is not None:
                buffer.ts, buffer.values, buffer.quality = (
                    list(kept.ts),
                    list(kept.values),
                    list(kept.quality),
                )
        self._latest = {role: ts for role, ts in old._latest.items() if role in self._buffers}
        self._jump = None if old._jump is None else replace(old._jump)
        self.last_end = old.last_end
        self.episodes = old.episodes
        self._told = old._told
        self.state = rules.RuleState(active=old.state.active, boundary=old.state.boundary)

    def window_rows(self) -> list[tuple[str, float, float | None, str]]:
        """The buffered readings as (sensor, ts, value, status) rows, for the agent's ``recent`` store."""
        key_of = {role: key for key, role in self.sensors.items()}
        return [
            (key_of[role], ts, value, _status(bits).value)
            for role, buffer in self._buffers.items()
            if role in key_of
            for ts, value, bits in zip(buffer.ts, buffer.values, buffer.quality, strict=True)
        ]

    # --- the gateway's clock ---------------------------------------------------------------------------------
    def clock_jumped(self, delta: float, *, measured: bool = True) -> None:
        """The gateway's clock jumped by ``delta`` seconds (see the module docstring). ``measured`` False:
        the jump happened while the agent was stopped and ``delta`` is only its bound (the downtime is not
        known): a decider that follows it moves its last window and rule state, and starts its windows
        afresh instead of moving readings by a wrong amount."""
        newest = max(self._latest.values()) if self._latest else self.last_end
        pending = self._jump
        if (
            pending is not None
            and pending.at is None
            and not pending.followed
            and pending.measured
            and measured
        ):
            # A second jump before any reading of this asset came: its readings, when they come, are dated
            # by the clock after both.
            pending.delta += delta
        elif newest is not None:
            # Seen stopped, where the old clock would be is known from the first reading on only.
            self._jump = _Jump(delta, newest, None, measured, seen=time.monotonic() if measured else None)

    @property
    def following_jump(self) -> bool:
        """Whether the decider moved its readings after a clock jump and may still move late ones."""
        return self._jump is not None and self._jump.followed

    def _placed(self, ts: float) -> float:
        """``ts`` on this decider's time line after a clock jump: moved by the jump if it was dated by the
        clock before it while the decider follows the clock after it; the first reading dated by the jumped
        clock makes the decider follow it (``_shift``)."""
        jump = self._jump
        assert jump is not None
        now = time.monotonic()
        if jump.at is None:
            # The grace runs from this asset's first reading after the jump, however late it comes (a source
            # reconnecting, a slow poll): until then nothing says whether its readings follow the jump.
            jump.at = now
            jump.seen = now if jump.seen is None else jump.seen
        if now - jump.at > JUMP_GRACE_S:
            self._jump = None
            return ts
        before = jump.newest + (now - jump.seen)  # where a reading dated by the clock before it would lie
        dated_after = abs(ts - (before + jump.delta)) < abs(ts - before)
        if dated_after and not jump.followed:
            self._shift(jump.delta)
            jump.followed = True
        elif jump.followed and not dated_after and jump.measured:
            return ts + jump.delta
        return ts

    def _shift(self, delta: float) -> None:
        logger.warning(
            "%s: readings dated by the gateway's clock: windows and alert state moved by %+.1f s",
            self.tag,
            delta,
        )
        if self._jump is not None and not self._jump.measured:
            for buffer in self._buffers.values():
                buffer.trim(math.inf)
            self._latest = {}
        for buffer in self._buffers.values():
            buffer.shift(delta)
        self._latest = {role: ts + delta for role, ts in self._latest.items()}
        if self.last_end is not None:
            self.last_end += delta
        state, active = self.state, self.state.active
        self.state = rules.RuleState(
            recent=tuple((key + delta, score) for key, score in state.recent),
            active=None
            if active is None
            else active._replace(
                first=active.first + delta,
                opened=active.opened + delta,
                last_seen=active.last_seen + delta,
                peak=active.peak + delta,
            ),
            boundary=None if state.boundary is None else state.boundary + delta,
        )

    def complete_until(self) -> float | None:
        """The end of the last complete window's data: every still-reporting role has readings up to it."""
        if not self._latest:
            return None
        newest = max(self._latest.values())
        live = [ts for ts in self._latest.values() if newest - ts <= self.model.window_s]
        return min(live)

    # --- decisions -----------------------------------------------------------------------------------------
    def decide(self) -> list[AlertEvent]:
        """Score the windows completed since the last call and apply the rules; the events they raise."""
        request = self.pending()
        if request is None:
            return []
        series, start, until = request
        return self.conclude(self.model.score(series, start_s=start, end_s=until), until)

    def pending(self) -> tuple[dict, float | None, float] | None:
        """What ``decide`` would score now — (series, start_s, end_s) — or None when no window completed;
        the agent scores many assets' requests in one batch (edge.model.score_many) and ``conclude``s each."""
        until = self.complete_until()
        self.last_scored = []
        if until is None or (self.last_end is not None and until <= self.last_end):
            return None
        series = {role: buf.series() for role, buf in self._buffers.items() if buf.ts}
        if not series:
            return None
        # Windows end on multiples of step_s in [start_s + window_s, end_s]: the first new one ends just after
        # the last decided (the live scorer's rule, alerts.scoring) — or, after a long silence or a clock set
        # forward, the first that can hold a buffered reading (the empty ones between are never built: years
        # of them would be more windows than one call may ask for).
        start = None
        if self.last_end is not None:
            oldest = min(float(ts[0]) for ts, _, _ in series.values())
            start = max(self.last_end, oldest - self.model.step_s) - self.model.window_s + 1e-6
        return series, start, until

    def conclude(self, scored: EdgeScores, until: float) -> list[AlertEvent]:
        """Apply the rules to the windows ``pending`` asked for; the events they raise."""
        windows = [
            rules.Window(float(end), float(score))
            for end, score in zip(scored.ends, scored.scores, strict=True)
            if score is not None and (self.last_end is None or end > self.last_end)
        ]
        self.last_scored = [(w.key, w.score) for w in windows]
        if len(scored.ends):
            self.last_end = max(float(scored.ends[-1]), self.last_end or float("-inf"))
        for buffer in self._buffers.values():
            buffer.trim(until - self.horizon, self._reach)
        if not windows:
            return []
        self.state, transitions = rules.step(self.state, windows, self.params)
        events = [event for t in transitions if (event := self._event(t)) is not None]
        if any(event.kind == "opened" for event in events):
            by_end = {float(scored.ends[i]): i for i in scored.inputs}
            for event in events:
                if event.kind == "opened" and event.at in by_end:
                    i = by_end[event.at]
                    self._opening_inputs[event.key] = scored.inputs[i].copy()  # not the batch
                    self._opening_flags[event.key] = dict(scored.flagged[i]) if scored.flagged else {}
            # Deciders whose events nobody explains (a shadow trial's) keep only the last few.
            for key in list(self._opening_inputs)[:-OPENING_INPUTS_KEPT]:
                del self._opening_inputs[key]
                self._opening_flags.pop(key, None)
        return events

    def explained(self, event: AlertEvent) -> AlertEvent:
        """``event`` with its category — the server's quality gate (``detection.gate.categorize``) on the
        opening window's flags and explanation — and the sensor that opened it and the sentence about it,
        from the SHAP values of the opening window's input (``EdgeModel.reason``). Without an explanation (a
        bundle without a background sample, a model the gateway cannot explain) the category is the gate's
        provisional one, as on the server while an explanation is pending; a clear is returned as it is.
        Called after the decisions, so explaining never delays one; a failure is logged, never raised."""
        x = self._opening_inputs.pop(event.key, None)
        flagged = self._opening_flags.pop(event.key, {})
        if x is None:
            return event
        try:
            explanation = self.model.explanation(x)
            found = self.model.reason(x, explanation) if explanation is not None else None
        except Exception:  # the words are a courtesy to the HMI: the alert itself must go out regardless
            logger.warning("%s: explaining the alert %s locally failed", self.tag, event.key, exc_info=True)
            explanation = found = None
        told = replace(event, category=gate.categorize(explanation, flagged))
        if found is not None:
            told = replace(told, sensor=found.sensor, reason=found.sentence)
        if told.category == gate.DATA_LINK:
            # Readings went missing: the HMI hears to check the link, as the server's write-back says it.
            told = replace(told, reason=gate.went_missing((told.sensor or "driving").lower()))
        active = self.state.active
        if active is not None and event.key == self._alert_event("opened", active, float(active.opened)).key:
            self._told = (self.episodes, told.category, told.sensor, told.reason)
        return told

    def _event(self, transition: rules.Transition) -> AlertEvent | None:
        if isinstance(transition, rules.Opened):
            kind = "opened"
            self.episodes += 1  # counted in the order of the transitions: a clear then a return in one batch
        elif isinstance(transition, rules.Cleared):
            kind = "cleared"
        else:
            return None  # peaks and runs above the threshold reach the server with the readings
        return self._alert_event(kind, transition.alert, float(transition.key))

    def _alert_event(self, kind: str, alert: rules.ActiveAlert, at: float) -> AlertEvent:
        first = float(alert.first)
        return AlertEvent(
            key=f"{self.tag}/{self.sha256[:16]}/{first:.3f}/{self.episodes}/{kind}",
            kind=kind,
            asset=self.tag,
            at=at,
            first=first,
            peak_at=float(alert.peak),
            peak_score=float(alert.peak_score),
            level=self.params.level(alert.peak_score),
            model_sha256=self.sha256,
        )

    def state_event(self) -> AlertEvent:
        """The asset's state now, as the event that brought it about: the active alert's opening, or a
        clear. The agent publishes it locally when it starts, since what it published before it stopped
        (a kill, a power cut while the plant's broker was away) may never have reached the plant."""
        active = self.state.active
        if active is not None:
            event = self._alert_event("opened", active, float(active.opened))
            if self._told is not None and self._told[0] == self.episodes:
                _, category, sensor, reason = self._told
                event = replace(event, category=category, sensor=sensor, reason=reason)
            return event
        at = float(self.last_end or 0.0)
        return AlertEvent(
            f"{self.tag}/{self.sha256[:16]}/state", "cleared", self.tag, at, at, at, 0.0, 0, self.sha256
        )

    @property
    def in_alert(self) -> bool:
        return self.state.active is not None

    # --- persistence ---------------------------------------------------------------------------------------
    def state_json(self) -> dict[str, Any]:
        active = self.state.active
        return {
            "model_sha256": self.sha256,
            "episodes": self.episodes,
            "last_end": self.last_end,
            "recent": [list(item) for item in self.state.recent],
            "boundary": self.state.boundary,
            "told": None if self._told is None else list(self._told),
            "active": None
            if active is None
            else [
                active.first,
                active.opened,
                active.last_seen,
                active.peak,
                active.peak_score,
                active.count,
            ],
        }

    def restore(self, saved: Mapping[str, Any] | None) -> bool:
        """Continue from a saved state of the same model (another model starts fresh, but keeps counting the
        episodes: its keys stay apart from the earlier ones); True if restored. A state saved before episodes
        were counted counts from 0."""
        if saved:
            self.episodes = int(saved.get("episodes") or 0)
        if not saved or saved.get("model_sha256") != self.sha256:
            return False
        active = saved.get("active")
        self.state = rules.RuleState(
            recent=tuple((float(k), float(s)) for k, s in saved.get("recent") or ()),
            active=None if active is None else rules.ActiveAlert(*active),
            boundary=saved.get("boundary"),
        )
        self.last_end = saved.get("last_end")
        told = saved.get("told")
        self._told = None if not told else (int(told[0]), str(told[1]), str(told[2]), str(told[3]))
        return True


@dataclass
class _Jump:
    """A jump of the gateway's clock by ``delta`` s, seen at monotonic time ``seen`` (None: the agent was
    stopped; taken as the first reading's) when this asset's newest reading was dated ``newest``; ``at``:
    when this asset's first reading after it came (None: none yet), which starts the grace (JUMP_GRACE_S);
    ``measured``: see ``clock_jumped``; ``followed``: its readings turned out to be dated by that clock."""

    delta: float
    newest: float
    at: float | None
    measured: bool = True
    followed: bool = False
    seen: float | None = None


def decide_all(deciders: list[AssetDecider]) -> list[AlertEvent]:
    """``decide`` for several assets at once: the pending windows of the assets whose models share a group
    are built and scored in one batch (edge.model.score_many), then each asset's rules run."""
    groups: dict[tuple, list[tuple[AssetDecider, tuple]]] = {}
    for decider in deciders:
        request = decider.pending()
        if request is not None:
            groups.setdefault(decider.model.group, []).append((decider, request))
    events: list[AlertEvent] = []
    for members in groups.values():
        scored = score_many([(d.model, *request) for d, request in members])
        for (decider, (_series, _start, until)), result in zip(members, scored, strict=True):
            events += decider.conclude(result, until)
    return events


def _flagging(spec: Mapping[str, Any], sensors: Mapping[str, str]) -> dict[str, _Flagging]:
    """Each role's quality-rule settings from the bundle (``spec["quality"]``: the ingest's rules and each
    sensor's valid range and sample period); none for a bundle exported before they were shipped (its
    readings go unflagged, as they did)."""
    shipped = spec.get("quality") or {}
    given = dict(shipped.get("rules") or {})
    if not {"spike_mads", "stuck_samples", "gap_factor"} <= set(given):
        return {}
    rules_ = {
        name: given[name] for name in ("spike_mads", "stuck_samples", "gap_factor", "window") if name in given
    }
    out = {}
    for key, role in sensors.items():
        settings = (shipped.get("sensors") or {}).get(key)
        if settings is not None:
            low, high, period = settings
            out[role] = _Flagging(low, high, float(period), rules_)
    return out


def _reach(rules_: Mapping[str, Any]) -> int:
    """How many readings before a new one the quality rules look back on (the ingest's context: the spike
    rule's window, a stuck run's length), and one more."""
    return max(int(rules_.get("window", 30)), int(rules_.get("stuck_samples", 0))) + 1


def _status(bits: int) -> SampleStatus:
    """The source's status a buffered reading's bits hold (the inverse of ``quality.SOURCE_FLAGS``)."""
    if bits & quality.SOURCE_BAD:
        return SampleStatus.BAD
    return SampleStatus.UNCERTAIN if bits & quality.SOURCE_UNCERTAIN else SampleStatus.GOOD
