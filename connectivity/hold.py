"""Sample-and-hold for report-by-exception sources, one implementation for every protocol that needs it.

An OPC UA data-change subscription and a Sparkplug B edge node both send a value only when it changes: a
value that stays the same (a frozen transmitter) sends nothing, and without more the reader would see a
silent point, a gap, where the plant has a stuck sensor. So the last value of each point is held and
emitted again at the point's sampling interval (same value and status; times on the grid of its last
value: source time + k x interval), but only for times the source has vouched for: the caller `confirm`s
"the source was alive and would have sent any change, from ``since`` up to ``heard_at``" (OPC UA: its
publish answers and keep-alives; Sparkplug B: the edge node's birth up to now, while no death came and
the broker connection is up). A held sample is emitted up to ``heard_at`` less the point's interval (a
change sampled before then would have come already), and less the lag of the point's last change (how
long after its source time a change arrived), so a held time is never one a real value can still come
with; a point that has not changed since it was first tracked has no lag known, so the source's clock
is assumed to agree with ours. Nothing is ever emitted for times before ``since``: an outage that the
source did not vouch for stays a gap and is never filled in afterwards. A point whose last word carries no
value (Bad or null without a value, not a number) is not held. Held samples go to ``put`` (the client's
batcher), never counted as messages from the source.

A value the source states current when asked (OPC UA's catch-up read when a session starts: ``track``
with ``stated_at``) says more: it has not changed since its own time, however long before the session
that was. Nothing is made up for that time (the session did not vouch for it), but the first sample held
for it carries ``continues`` = the value's own time, when the session vouched without a break from the
statement on: ingest then sees no data gap between the two (`detection.quality`, GAP), so a steady tag is
not flagged "after gap" on its second reading each time the bridge connects. A value whose first held
sample follows a break (the session lost, keep-alives missed) carries no such statement: that stays a gap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from connectivity.points import PointError, Sample, number_field

DEFAULT_SAMPLING_MS = 1000.0
MAX_SAMPLING_MS = 3_600_000.0
# Vouched spans and statements are converted from the client's monotonic clock to epoch seconds at
# slightly different moments: a span that began with the statement itself may start this much after it.
STATED_SLACK_S = 1e-3

Put = Callable[[Sample, float], None]  # (held sample, now): the client's batcher


def parse_sampling_interval(fields: Mapping[str, str]) -> float:
    """The optional ``sampling_interval_ms`` address field (default DEFAULT_SAMPLING_MS; the bridge and the
    mapping export fill in the sensor's sample period, `with_sample_period`): the interval at which a value
    that did not change is held. ValueError naming the field and the problem."""
    interval = number_field(fields, "sampling_interval_ms", DEFAULT_SAMPLING_MS)
    if not 0 < interval <= MAX_SAMPLING_MS:
        raise ValueError(f"sampling_interval_ms must be in (0, {MAX_SAMPLING_MS:.0f}], got {interval:g}")
    return interval


def holds(protocol: str, fields: Mapping[str, str]) -> bool:
    """Whether a point of ``protocol`` with these address fields is sampled and held (OPC UA, Sparkplug B)."""
    fmt = (fields.get("format") or "").strip().lower()
    return protocol == "opcua" or (protocol == "mqtt" and fmt == "sparkplug")


def with_sample_period(
    protocol: str, fields: Mapping[str, str], sample_period_s: float | None
) -> dict[str, str]:
    """A mapping row's address fields with ``sampling_interval_ms`` set to its sensor's sample period when
    the point is held and the row gives none (a value in the row wins): a frozen value is held at the rate
    its sensor is read at, not at DEFAULT_SAMPLING_MS whatever that is. A period of none or <= 0 leaves
    the default; one longer than MAX_SAMPLING_MS is held at that. The one rule of the bridge (its points)
    and of the mapping export (the edge agent's points file, which knows no sensor periods)."""
    out = dict(fields)
    given = (out.get("sampling_interval_ms") or "").strip()
    if given or not holds(protocol, out) or not sample_period_s or sample_period_s <= 0:
        return out
    out["sampling_interval_ms"] = f"{min(sample_period_s * 1000.0, MAX_SAMPLING_MS):.10g}"
    return out


@dataclass(slots=True)
class _Held:
    sample: Sample  # the point's last value from the server
    interval: float  # seconds: the item's sampling interval
    next_k: int = 1  # the next held sample is at sample.ts + next_k x interval
    last_ts: float | None = None  # the last held sample's time
    lag: float = 0.0  # seconds from the source time of the point's last change to its arrival
    stated_at: float | None = None  # when the source stated the value current (a read), before any held


class SampleHold:
    """Sample-and-hold of a source's points (see the module docstring): `track` each value the source
    sends, `confirm` each time span it vouched for; held samples go to ``put``."""

    def __init__(self, put: Put, clock: Callable[[], float] = time.time) -> None:
        self.put = put
        self.clock = clock  # epoch seconds now
        self._held: dict[str, _Held] = {}

    def track(
        self,
        key: str,
        interval_s: float,
        item: Sample | PointError,
        since: float | None = None,
        stated_at: float | None = None,
    ) -> None:
        """The source's latest word on point ``key``: a value is held from its time on, every ``interval_s``
        seconds; no value, nothing. With ``since`` (the source has vouched for itself without a break
        since then, this word included), the value held until now is first emitted up to the new one's
        time (never past the present): the source would have sent any change in between. With
        ``stated_at`` the source stated at that time that the value is the point's current one (a read;
        see the module docstring); the same value again (no newer time) keeps an earlier statement."""
        before = self._held.get(key)
        if before is not None and since is not None and isinstance(item, Sample):
            self._emit(before, since, min(item.ts, self.clock()), inclusive=False)
        if isinstance(item, PointError) or item.value is None:
            self._held.pop(key, None)
            return
        held = _Held(item, interval_s, stated_at=stated_at)
        if before is not None:
            held.last_ts = before.last_ts  # held times never go back (a value older than one held)
            if stated_at is None and item.ts <= before.sample.ts:
                held.stated_at = before.stated_at
            # A change arrives this long after its source time (the server's queue, a gateway, the
            # clocks): held times stay that far behind, where no real value can come any more.
            held.lag = max(0.0, self.clock() - item.ts) if item.ts > before.sample.ts else before.lag
        self._held[key] = held

    def confirm(self, heard_at: float, since: float) -> int:
        """The source vouched for itself from ``since`` up to ``heard_at`` (epoch seconds; OPC UA: its
        publish answers without a missed keep-alive): emit every point's held samples after ``since`` up to
        ``heard_at`` less its sampling interval (a change sampled before then would have come already), and less the lag of its changes. Returns how many were emitted."""
        return sum(
            self._emit(held, since, heard_at - held.interval - held.lag) for held in self._held.values()
        )

    def _emit(self, held: _Held, since: float, until: float, inclusive: bool = True) -> int:
        """Put ``held``'s samples after ``since`` (and after the last one held) up to ``until``."""
        base, interval, k = held.sample.ts, held.interval, held.next_k
        floor = since if held.last_ts is None else max(since, held.last_ts)
        k = max(k, math.floor((floor - base) / interval))
        while base + k * interval <= floor:
            k += 1
        emitted = 0
        # The first sample held for a value stated current carries it on from its own time, if the span
        # vouched for reaches back to the statement (a span that began later followed a break: a gap).
        stated = held.stated_at
        continues = (
            held.sample.ts
            if held.last_ts is None and stated is not None and since <= stated + STATED_SLACK_S
            else None
        )
        # Times counted from the base, so no rounding error adds up.
        while (ts := base + k * interval) < until or (inclusive and ts == until):
            self.put(held.sample._replace(ts=ts, continues=continues), self.clock())
            continues = None
            held.last_ts = ts
            emitted += 1
            k += 1
        held.next_k = k
        return emitted
