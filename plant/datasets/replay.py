"""Replay a recorded dataset run through the HTTP ingestion API as if it were a live asset.

The run's rows are posted to ``POST /api/v1/readings`` with a gateway token (``ReadingsSender``, the
simulator's client: batching, retries, clear errors), at ``speed`` recorded seconds per real second, with
every timestamp shifted by one constant so that the last row lands at the moment the replay ends. At speed
1 the first row is stamped "now"; faster, the run starts ``duration * (1 - 1/speed)`` in the past and
catches up with the wall clock at its end — the API refuses timestamps ahead of now, and the recorded
spacing (hence every feature window) stays exactly as recorded.

A replay never writes over an earlier one: when the asset already has readings after the planned start, the
run starts just after them instead, and the stream is capped at the wall clock (it catches up at
``speed``, then goes on in real time). The asset is created on the gateway's site if needed (tag ``replay-<dataset>-<run tag>``, same asset type
and sensors as the loaded dataset), and the dataset's labels of the part replayed are recorded on it,
shifted the same way, so the live alert can be checked against the truth.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from plant.datasets import UnknownSubset
from plant.datasets.common import LabelSpec, Unit, ensure_asset, ensure_asset_type, sync_labels
from plant.datasets.registry import DATASETS
from django.db.models import Max

from plant.models import Asset, Reading, Site
from plant.simulator_client import ReadingsSender


def parse_ref(ref: str) -> tuple[str, str]:
    """``"skab/valve1/3"`` → ("skab", "valve1/3"); UnknownSubset for an unknown dataset or no run."""
    dataset, _, selector = ref.strip().strip("/").partition("/")
    if dataset not in DATASETS or not selector:
        raise UnknownSubset(
            f"cannot replay {ref!r}: give <dataset>/<run>, e.g. skab/valve1/3 "
            f"(datasets: {', '.join(sorted(DATASETS))})"
        )
    return dataset, selector


def read_run(ref: str, *, limit_rows: int | None = None, base=None) -> tuple[str, Unit]:
    """The one recorded unit ``ref`` names (pure); UnknownSubset when it names none or several."""
    dataset, selector = parse_ref(ref)
    module = importlib.import_module(DATASETS[dataset].module)
    units = module.read_units([selector], limit_rows=limit_rows, base=base)
    if len(units) != 1:
        raise UnknownSubset(
            f"{ref!r} names {len(units)} runs; replay one, e.g. {dataset}/{units[0].ref if units else '...'}"
        )
    unit = units[0]
    # A stream moves forward in time: rows repeating or stepping back (two NAB files have them) are dropped.
    forward = unit.ts > np.maximum.accumulate(np.r_[-np.inf, unit.ts[:-1]])
    if not forward.all():
        unit = replace(unit, ts=unit.ts[forward], values={k: v[forward] for k, v in unit.values.items()})
    return dataset, unit


def replay_unit(dataset: str, unit: Unit) -> Unit:
    """The unit as the live asset it becomes: its own tag and name, no labels yet."""
    return replace(
        unit,
        tag=f"replay-{dataset}-{unit.tag}"[:60],
        name=f"{unit.name} (replay)",
        location=f"replay of {dataset} {unit.ref}",
        labels=[],
    )


def ensure_replay_asset(site: Site, dataset: str, unit: Unit) -> tuple[Asset, dict[str, str]]:
    """The live asset on ``site`` with the dataset's asset type and sensors (idempotent)."""
    live = replay_unit(dataset, unit)
    return ensure_asset(site, ensure_asset_type(live.asset_type), live)


def wall_clock() -> float:
    """The clock the stream is capped at (a function of its own so tests can lift the cap)."""
    return time.time()


def shift_for(unit: Unit, speed: float, now: float, after: float | None = None) -> float:
    """Seconds added to every recorded timestamp so that the run ends when the replay ends, or, when
    the asset has data up to ``after`` (epoch s) later than that start, so that it starts one period later."""
    if not len(unit.ts):
        return 0.0
    duration = float(unit.ts[-1] - unit.ts[0])
    shift = now + duration / speed - float(unit.ts[-1])
    if after is not None:
        shift = max(shift, after + unit.sample_period_s - float(unit.ts[0]))
    return shift


def latest_reading(asset: Asset) -> float | None:
    """Epoch seconds of the asset's latest reading, if any."""
    latest = Reading.objects.filter(sensor__asset=asset).aggregate(last=Max("ts"))["last"]
    return latest.timestamp() if latest is not None else None


@dataclass
class ReplayRun:
    """Streams one unit's rows through ``sender`` at ``speed``; ``cursor`` is the index of the next row."""

    unit: Unit
    keys: dict[str, str]
    sender: ReadingsSender
    speed: float
    shift: float
    batch_seconds: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] | None = None  # default: wall_clock
    cursor: int = 0

    def run(self) -> None:
        """Send every row when its (scaled) time has come, never one stamped after the wall clock;
        returns after the last row."""
        ts = self.unit.ts
        if not len(ts):
            return
        real0 = self.monotonic()
        wall = self.wall or wall_clock
        while self.cursor < len(ts):
            elapsed = self.monotonic() - real0
            until = min(ts[0] + elapsed * self.speed, wall() - self.shift)
            due = int(np.searchsorted(ts, until, side="right"))
            if due > self.cursor:
                self.send(self.cursor, due)
            if self.cursor < len(ts):
                self.sleep(max(0.0, self.batch_seconds - (self.monotonic() - real0 - elapsed)))

    def send(self, begin: int, end: int) -> None:
        roles = list(self.keys)
        part = slice(begin, end)
        n = end - begin
        keys = np.array([self.keys[role] for role in roles for _ in range(n)], dtype=object)
        ts = np.tile(self.unit.ts[part] + self.shift, len(roles))
        values = np.concatenate([self.unit.values[role][part] for role in roles])
        self.sender.send(keys, ts, values)
        self.cursor = end

    @property
    def replayed_until(self) -> float | None:
        """Recorded time of the last row sent (None before the first)."""
        return float(self.unit.ts[self.cursor - 1]) if self.cursor else None


def record_labels(asset: Asset, unit: Unit, shift: float, until: float | None) -> int:
    """Store the dataset labels of the part replayed (recorded time <= ``until``), shifted; returns how many
    were new. Labels of earlier replays of the asset stay."""
    if until is None:
        return 0
    shifted = [
        LabelSpec(
            spec.start + shift,
            min(spec.end, until) + shift,
            spec.kind,
            spec.fault_type,
            spec.reason,
            f"{spec.note} (replayed, shifted by {shift:+.0f} s)".strip(),
        )
        for spec in unit.labels
        if spec.start <= until
    ]
    created, _, _ = sync_labels(asset, shifted, keep_others=True)
    return created
