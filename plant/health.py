"""Sensor health: is each sensor reporting, completely and cleanly, right now?

Two questions, kept apart because they send people to different places:

- Data availability (the link, the gateway, the PLC connection): did the readings arrive? Measured by
  completeness, the share of the expected readings that arrived. A GAP flag (the reading after missing
  sample periods) is part of this measure, never a sensor fault: a bridge that connects a few seconds after
  the PLC, or a network blip, says nothing about the transmitter.
- Sensor faults (the instrument or its source): out of range, spike, stuck, drift, source uncertain / bad
  (plant.choices.SENSOR_FAULT_FLAGS). Every sensor sees an isolated flag now and then (one spike an hour on
  a healthy transmitter; the drift rule's rare false findings, a bin or a few of 30 s); a status that turns
  amber for each one teaches the technician to ignore it. So flags are weighed as a share of the readings
  against a stated tolerance, and a fault happening now by the recent readings, over the span a "check
  sensor" alert looks at (VIGIL_SENSOR_FAULT_SPAN_S, 5 min; alerts.services.sensor_faults):
  intermittent flags (spike, out of range, source uncertain / bad) at RECENT_INTERMITTENT_SHARE (1 %: three
  readings in five minutes), half the alert's opening share, because "Degraded" only says "look here": the
  demo's spikes fault gets ~1.5 of its spikes flagged a minute and needs minutes to reach the alert's 2 %,
  while a healthy pump's spikes come singly, at most ~5 an hour (measured on the demo's sensors).
  Persistent flags (stuck, drift) at any reading in the span: the drift rule flags one 30-s bin per finding
  (a real calibration drift's first finding in the demo covered 30 of the span's 300 readings), so a
  drifting sensor shows at its first finding; a rare false finding shows for 5 minutes, then clears.

Status rules, checked in this order for the last `window` (one hour by default):

- SILENT: no reading ever, or none for 5 sample periods (but at least SILENT_MIN_AGE, because gateways
  post in batches every few seconds and a 1 Hz sensor would otherwise flicker between silent and ok).
- BAD: more than BAD_FLAGGED_SHARE (20 %) of the window's readings carry a sensor-fault flag, or the
  latest reading is flagged stuck (the sensor is flatlined right now: reported at once).
- WARN ("Degraded"), any of:
  * more than FAULT_TOLERANCE (1 %) of the window's readings carry an intermittent flag;
  * the recent readings reach the levels above (a fault that started minutes ago shows at once);
  * the latest reading is flagged drift, out of range or source uncertain / bad (not spike: a spike is
    one reading by definition);
  * fewer than WARN_COMPLETENESS (90 %) of the expected readings arrived (availability);
  * the sensor drifts against yesterday (see below).
- OK otherwise. Flags within the tolerance are still listed in the problems, marked as such, and the
  number of gaps is named as an availability note.

Completeness counts the readings in the window. More than the expected count means a second source writes
the sensor (e.g. a gateway and a bridge with different clocks) or its sample period is set too long: the
count shown is capped at the expected one (never "5,417 / 3,600"), and past OVERFULL_TOLERANCE the real
count is reported as a problem (WARN), because the gap and completeness rules rest on that period.

Drift is a sensor-level heuristic on top of the per-reading flags: the median of the window's one-minute
means is compared with the median of the preceding 24 h; a difference of more than DRIFT_MADS robust
standard deviations (1.4826 × MAD) of the baseline is reported as "drifting". It cannot tell a drifting
sensor from a real change of the process (a new set-point, a load change): it says "look here", not
"this sensor is broken".

Cost: one GROUP BY query over Reading for all the given sensors (counts per quality bit by conditional
aggregation; one-minute buckets with drift, over 25 h; otherwise buckets of the recent span) plus one
query for the latest reading of each sensor, whatever the number of sensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from plant.choices import SENSOR_FAULT_FLAGS, HealthStatus, QualityFlag
from plant.models import Reading, Sensor
from plant.series import BucketSeries, load_buckets

SILENT_PERIODS = 5
SILENT_MIN_AGE = timedelta(seconds=60)
BAD_FLAGGED_SHARE = 0.20
FAULT_TOLERANCE = 0.01
RECENT_INTERMITTENT_SHARE = 0.01
OVERFULL_TOLERANCE = (
    1.02  # a poller's jitter may add a few readings; more is a second writer or a wrong period
)
PERSISTENT = (QualityFlag.STUCK, QualityFlag.DRIFT)
INTERMITTENT = tuple(f for f in QualityFlag if f & SENSOR_FAULT_FLAGS and f not in PERSISTENT)
WARN_COMPLETENESS = 0.90
DRIFT_BASELINE = timedelta(hours=24)
DRIFT_MADS = 5.0
DRIFT_MIN_BUCKETS = (30, 5)  # baseline, window: fewer one-minute means than this and drift is not judged

_SEVERITY = {HealthStatus.OK: 0, HealthStatus.WARN: 1, HealthStatus.BAD: 2, HealthStatus.SILENT: 3}


@dataclass(frozen=True)
class SensorHealth:
    """The health of one sensor over a window ending at `now`; `problems` are plain-language sentences."""

    sensor_id: int
    status: HealthStatus
    last_ts: datetime | None
    last_value: float | None
    readings: int
    expected: int
    flag_counts: dict[str, int]
    gap_count: int
    problems: list[str] = field(default_factory=list)
    flagged: int = 0
    faulty: int = 0  # readings with a sensor-fault flag (every flag but GAP)
    received: int = 0  # readings in the window (`readings` is this, capped at `expected`)


def sensor_health(
    sensors: Iterable[Sensor],
    *,
    now: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    drift: bool = True,
) -> dict[int, SensorHealth]:
    """Health of each sensor, keyed by sensor id, from two queries (see the module docstring).

    `drift=False` skips the 24 h baseline read; list pages use it to stay cheap with many sensors (the
    per-reading DRIFT quality flag set at ingest still counts there).
    """
    sensors = list(sensors)
    if not sensors:
        return {}
    now = now or timezone.now()
    ids = [s.pk for s in sensors]
    window_s = window.total_seconds()
    if drift:
        width_s = window_s / 60  # one-minute buckets for a one-hour window
        baseline_buckets = math.ceil(DRIFT_BASELINE.total_seconds() / width_s)
    else:
        # Buckets of the recent span (5 min: twelve for an hour), so the recent share can be read.
        width_s = window_s / max(1, round(window_s / _recent_span_s()))
        baseline_buckets = 0
    start = now - window - timedelta(seconds=baseline_buckets * width_s)
    buckets = load_buckets(ids, start, now, width_s)
    latest = _latest_readings(ids)
    return {
        s.pk: _judge(s, buckets[s.pk], baseline_buckets, latest.get(s.pk), now=now, window_s=window_s)
        for s in sensors
    }


def _recent_span_s() -> float:
    return float(settings.VIGIL_SENSOR_FAULT_SPAN_S)


def asset_health(health: Iterable[SensorHealth]) -> HealthStatus:
    """The worst status among an asset's sensors (OK for an asset without sensors)."""
    return worst(h.status for h in health)


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    return max(statuses, key=_SEVERITY.__getitem__, default=HealthStatus.OK)


def _latest_readings(ids: list[int]) -> dict[int, tuple[datetime, float, int]]:
    last = Reading.objects.filter(sensor_id=OuterRef("pk")).order_by("-ts")
    rows = (
        Sensor.objects.filter(pk__in=ids)
        .annotate(
            last_ts=Subquery(last.values("ts")[:1]),
            last_value=Subquery(last.values("value")[:1]),
            last_quality=Subquery(last.values("quality")[:1]),
        )
        .values_list("pk", "last_ts", "last_value", "last_quality")
    )
    return {pk: (ts, value, quality) for pk, ts, value, quality in rows if ts is not None}


def _judge(
    sensor: Sensor,
    series: BucketSeries,
    baseline_buckets: int,
    latest: tuple[datetime, float, int] | None,
    *,
    now: datetime,
    window_s: float,
) -> SensorHealth:
    in_window = series.index >= baseline_buckets
    readings = int(series.count[in_window].sum())
    flagged = int(series.flagged[in_window].sum())
    per_bucket = series.faulty if series.faulty is not None else series.flagged
    faulty = int(per_bucket[in_window].sum())
    flag_counts = {flag.label: int(series.flag_counts[flag][in_window].sum()) for flag in QualityFlag}
    gaps = flag_counts[QualityFlag.GAP.label]
    expected = max(1, int(window_s / sensor.sample_period_s)) if sensor.sample_period_s > 0 else 0
    last_ts, last_value, last_quality = latest if latest else (None, None, 0)
    unit = f" {sensor.unit}" if sensor.unit else ""
    # The recent span: the last buckets covering VIGIL_SENSOR_FAULT_SPAN_S (at least one bucket).
    total_buckets = baseline_buckets + round(window_s / series.width_s)
    recent = series.index >= total_buckets - max(1, round(_recent_span_s() / series.width_s))
    recent_count = int(series.count[recent].sum())
    hour_share = _share(series, INTERMITTENT, in_window, readings)
    recent_fault = (
        _share(series, INTERMITTENT, recent, recent_count) >= RECENT_INTERMITTENT_SHARE
        or _share(series, PERSISTENT, recent, recent_count) > 0
    )
    recent_faulty = int(per_bucket[recent].sum())

    problems: list[str] = []
    status = HealthStatus.OK
    silent_after = max(timedelta(seconds=SILENT_PERIODS * sensor.sample_period_s), SILENT_MIN_AGE)
    if last_ts is None:
        status = HealthStatus.SILENT
        problems.append("has never reported a reading")
    elif now - last_ts > silent_after:
        status = HealthStatus.SILENT
        problems.append(f"no reading for {_age(now - last_ts)}")

    share = faulty / readings if readings else 0.0
    complete = readings / expected if expected else 1.0
    fault_now = bool(last_quality & SENSOR_FAULT_FLAGS & ~QualityFlag.SPIKE)
    faulty_now = hour_share > FAULT_TOLERANCE or recent_fault or fault_now
    overfull = bool(expected) and readings > expected * OVERFULL_TOLERANCE
    if status != HealthStatus.SILENT:
        stuck_now = bool(last_quality & QualityFlag.STUCK)
        if stuck_now:
            problems.append(f"stuck at {last_value:g}{unit}")
        elif fault_now:
            problems.append(f"latest reading flagged {', '.join(QualityFlag.names_of(last_quality))}")
        if recent_fault:
            problems.append(
                f"{recent_faulty:,} of the last {_age(timedelta(seconds=_recent_span_s()))}'s "
                f"{recent_count:,} readings flagged"
            )
        if share > BAD_FLAGGED_SHARE or stuck_now:
            status = HealthStatus.BAD
        elif faulty_now or complete < WARN_COMPLETENESS or overfull:
            status = HealthStatus.WARN
    if faulty:
        percent = f"{share:.0%}" if share >= 0.01 else "<1%"
        kinds = ", ".join(
            f"{label} {count:,}"
            for label, count in flag_counts.items()
            if count and label != QualityFlag.GAP.label
        )
        within = "" if faulty_now else ", isolated: within the tolerance"
        problems.append(f"{faulty:,} of {readings:,} readings flagged ({percent}{within}): {kinds}")
    if expected and status != HealthStatus.SILENT and complete < WARN_COMPLETENESS:
        problems.append(f"only {complete:.0%} of expected readings ({readings:,} of {expected:,})")
    if gaps:
        problems.append(
            f"{gaps:,} gap{'s' if gaps != 1 else ''} in the data (missing readings: the link, not the sensor)"
        )

    if overfull:
        problems.append(
            f"{readings:,} readings where its {sensor.sample_period_s:g} s sample period allows {expected:,}: "
            "a second source writes this sensor, or its sample period is set too long"
        )

    shift = _drift(series, baseline_buckets, in_window)
    if shift is not None:
        problems.append(f"drifting: {shift:+.1f}{unit} vs yesterday")
        if status == HealthStatus.OK:
            status = HealthStatus.WARN

    return SensorHealth(
        sensor_id=sensor.pk,
        status=status,
        last_ts=last_ts,
        last_value=last_value,
        expected=expected,
        flag_counts=flag_counts,
        gap_count=gaps,
        problems=problems,
        flagged=flagged,
        faulty=faulty,
        received=readings,
        readings=min(readings, expected) if expected else readings,
    )


def _share(series: BucketSeries, flags: tuple[QualityFlag, ...], buckets: np.ndarray, readings: int) -> float:
    """The share of ``readings`` carrying one of ``flags`` in the chosen buckets (a reading with two of
    them counts twice; the share is capped at 1)."""
    if not readings:
        return 0.0
    return min(1.0, sum(int(series.flag_counts[flag][buckets].sum()) for flag in flags) / readings)


def _drift(series: BucketSeries, baseline_buckets: int, in_window: np.ndarray) -> float | None:
    """The shift of the window's median from the baseline's, if it exceeds DRIFT_MADS robust sigmas."""
    if baseline_buckets == 0:
        return None
    base, current = series.mean[~in_window], series.mean[in_window]
    if len(base) < DRIFT_MIN_BUCKETS[0] or len(current) < DRIFT_MIN_BUCKETS[1]:
        return None
    base_median = float(np.median(base))
    sigma = 1.4826 * float(np.median(np.abs(base - base_median)))
    # A perfectly flat baseline has MAD 0; a small floor keeps float noise from reading as drift.
    sigma = max(sigma, 1e-3 * max(abs(base_median), 1.0))
    shift = float(np.median(current)) - base_median
    return shift if abs(shift) > DRIFT_MADS * sigma else None


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
