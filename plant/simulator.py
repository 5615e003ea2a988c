"""Plant simulator: correlated centrifugal-pump signals with injectable faults, as pure NumPy.

No ORM and no HTTP here: `plant.simulator_client` reads the assets from the database, drives a
`PlantSimulator` and posts what it returns to the ingestion API.

Model, per asset (all times in epoch seconds on a fixed grid of `sample_period_s`):
  load L      duty level changing every few minutes (smoothed steps) plus a slow sinusoid
  speed n     = L (variable-speed drive)
  flow Q      = Q_r * L
  pressure P  from the pump curve at speed n: P_r * (1.2 n^2 - 0.2 (Q/Q_r)^2)
  current I   = I_0 + (I_r - I_0) * (Q/Q_r) * (P/P_r)        (hydraulic power, plus no-load current)
  temperature first-order lag (tau 5 min) towards ambient + rise * (I/I_r)^2
  vibration   RMS proportional to speed
each with Gaussian noise. Everything random is derived from (seed, asset tag, sample index), so a run is
deterministic given its seed, and slicing time into different step() calls gives the same samples.

A run that resumes a stored history (`resume`, a `Seam` per sensor) starts each sensor from the level its
stored readings ended at: the difference to this run's own signal fades with the temperature's time
constant, as a plant's state carries on, so a restart never puts a step (a fake fault) into the series.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

ROLES: tuple[str, ...] = ("vibration", "temperature", "current", "pressure", "flow")

MACHINE_FAULTS = ("bearing_wear", "cavitation")
SENSOR_FAULTS = ("stuck_sensor", "spikes", "calibration_drift")
FAULT_KINDS = MACHINE_FAULTS + SENSOR_FAULTS

_NOISE_BLOCK = 256  # samples per generator block: the unit of randomness that step() slices from
_TEMP_TAU_S = 300.0
_DUTY_RAMP_S = 90.0  # a drive ramps between duty points; eased so that it does not look like a step
_CAVITATION_ONSET_S = 30.0
_SPIKE_BUCKET = (
    10  # at most one spike per bucket, never in its first or last two samples: spikes stay isolated
)

SEAM_WINDOW_S = 30.0  # the stored and simulated readings compared before a resumed run's seam
_SEAM_SETTLE_S = _TEMP_TAU_S  # how fast a resumed run's difference to the stored history fades

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash, vectorised; used for per-segment randomness without Generator objects."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _hash_uniform(seed: int, salt: int, keys: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (seed, salt, key)."""
    base = _splitmix64(np.array([(seed & 0xFFFFFFFF) << 32 | (salt & 0xFFFFFFFF)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys.astype(np.uint64) ^ base)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def tag_hash(tag: str) -> int:
    return zlib.crc32(tag.encode())


@dataclass(frozen=True)
class SimAsset:
    """One simulated pump: its tag and the sensor key of each role it has (roles it lacks are not sent).

    `size` scales the rated flow and current so that pumps differ; by default it comes from the tag.
    `noise` multiplies the healthy machine's measurement and process noise on every role (a rough large
    pump, a worn transmitter); fault signatures are not scaled. 1.0 gives exactly the default signals.
    `duty` names the duty schedule the pump follows (default its own tag): pumps given the same one share
    their load changes, as pumps on one header do.
    """

    tag: str
    sensors: dict[str, str]
    size: float | None = None
    noise: float = 1.0
    duty: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"asset {self.tag}: noise must be a positive number, got {self.noise!r}")
        unknown = set(self.sensors) - set(ROLES)
        if unknown:
            raise ValueError(
                f"asset {self.tag}: unknown sensor roles {sorted(unknown)}; known: {', '.join(ROLES)}"
            )

    @property
    def rated(self) -> _Rated:
        size = self.size if self.size is not None else 0.7 + (tag_hash(self.tag) % 7) / 10
        return _Rated(
            flow=150.0 * size,
            pressure=6.0 + (tag_hash(self.tag) >> 8) % 5 * 0.5,
            current=60.0 * size,
            vibration=1.8 + (tag_hash(self.tag) >> 12) % 4 * 0.2,
            ambient=22.0 + (tag_hash(self.tag) >> 16) % 6,
        )


@dataclass(frozen=True)
class _Rated:
    flow: float  # m³/h at full load
    pressure: float  # bar at the duty point
    current: float  # A at the duty point
    vibration: float  # mm/s RMS at full speed
    ambient: float  # °C

    def nominal(self, role: str) -> float:
        """A typical reading of the role: the scale that spikes and drifts are expressed in."""
        return {
            "vibration": self.vibration,
            "temperature": self.ambient + 30.0,
            "current": self.current,
            "pressure": self.pressure,
            "flow": self.flow,
        }[role]


@dataclass(frozen=True)
class Fault:
    """A fault to inject: `start_s` is relative to the simulator's origin; sensor faults name a role."""

    kind: str
    asset_tag: str
    sensor_role: str | None
    start_s: float
    duration_s: float
    severity: float = 1.0

    @property
    def spec(self) -> str:
        """As `--faults` names it: kind@tag[.role]."""
        return f"{self.kind}@{self.asset_tag}" + (f".{self.sensor_role}" if self.sensor_role else "")

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.kind in SENSOR_FAULTS and self.sensor_role not in ROLES:
            raise ValueError(
                f"fault {self.kind} on {self.asset_tag} needs a sensor role, one of: {', '.join(ROLES)}"
                f" (got {self.sensor_role!r})"
            )
        if self.kind in MACHINE_FAULTS and self.sensor_role is not None:
            raise ValueError(f"fault {self.kind} affects the whole machine; do not give a sensor role")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"fault {self.kind} on {self.asset_tag}: duration must be > 0 s")
        if not math.isfinite(self.start_s):
            raise ValueError(f"fault {self.kind} on {self.asset_tag}: start must be a number of seconds")
        if not (math.isfinite(self.severity) and 0 < self.severity <= 5):
            raise ValueError(f"fault {self.kind} on {self.asset_tag}: severity must be in (0, 5]")


@dataclass(frozen=True)
class FaultOccurrence:
    """One occurrence of a fault in absolute (epoch) time."""

    fault: Fault
    start: float
    end: float

    def progress(self, t: np.ndarray) -> np.ndarray:
        return np.clip((t - self.start) / (self.end - self.start), 0.0, 1.0)

    def active(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.start) & (t < self.end)


_SPEC_ITEM = re.compile(
    r"^(?P<kind>[a-z_]+)@(?P<tag>[A-Za-z0-9_-]+)(?:\.(?P<role>[a-z_]+))?"
    r":(?P<start>-?[0-9.]+[smh]?):(?P<duration>[0-9.]+[smh]?)(?::(?P<severity>[0-9.]+))?$"
)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    unit = _UNITS.get(text[-1], None)
    return float(text[:-1]) * unit if unit else float(text)


class FaultSchedule:
    """The faults of a run, repeating every `period_s` seconds (a long demo keeps showing them)."""

    def __init__(self, faults: Sequence[Fault] = (), period_s: float | None = None) -> None:
        self.faults = tuple(faults)
        self.period_s = period_s
        if period_s is not None:
            for fault in self.faults:
                if fault.start_s < 0 or fault.start_s + fault.duration_s > period_s:
                    raise ValueError(
                        f"fault {fault.kind} on {fault.asset_tag} does not fit in the {period_s:g} s period"
                    )

    def __len__(self) -> int:
        return len(self.faults)

    def starting_outside(self, earliest_s: float, latest_s: float) -> list[Fault]:
        """The one-off faults that start before ``earliest_s`` or at / after ``latest_s`` (seconds from the
        origin): a run that simulates only that span never injects (nor labels) them. A repeating
        schedule's faults come back each period and are not judged by one span."""
        if self.period_s is not None:
            return []
        return [fault for fault in self.faults if not earliest_s <= fault.start_s < latest_s]

    def occurrences(self, origin: float, t0: float, t1: float) -> list[FaultOccurrence]:
        """Occurrences overlapping [t0, t1), in start order."""
        found = []
        for fault in self.faults:
            if self.period_s is None:
                cycles: Iterable[int] = (0,)
            else:
                first = math.floor((t0 - origin - fault.start_s - fault.duration_s) / self.period_s)
                cycles = range(max(first, 0), max(math.floor((t1 - origin) / self.period_s) + 1, 0))
            for cycle in cycles:
                start = origin + fault.start_s + cycle * (self.period_s or 0.0)
                occurrence = FaultOccurrence(fault, start, start + fault.duration_s)
                if occurrence.start < t1 and occurrence.end > t0:
                    found.append(occurrence)
        return sorted(found, key=lambda o: (o.start, o.fault.asset_tag))

    @classmethod
    def default(cls, asset_tags: Sequence[str]) -> FaultSchedule:
        """The demo schedule: one fault kind per asset, staggered over the first ~7 minutes, repeating hourly.

        With fewer assets than fault kinds the later kinds are left out rather than piled onto one pump.
        """
        plan = [
            ("bearing_wear", None, 60, 900, 1.0),
            ("cavitation", None, 150, 300, 1.0),
            ("stuck_sensor", "pressure", 240, 600, 1.0),
            ("spikes", "vibration", 330, 240, 1.0),
            ("calibration_drift", "temperature", 420, 600, 1.0),
        ]
        faults = [
            Fault(kind, tag, role, float(start), float(duration), severity)
            for tag, (kind, role, start, duration, severity) in zip(asset_tags, plan, strict=False)
        ]
        return cls(faults, period_s=3600.0)

    @classmethod
    def parse(cls, spec: str, asset_tags: Sequence[str]) -> FaultSchedule:
        """Read `--faults`: 'default', 'none', or comma-separated `kind@tag[.role]:start:duration[:severity]`.

        start and duration take an optional s/m/h suffix, e.g. `spikes@p-101.vibration:2m:5m:1.5`.
        """
        spec = spec.strip()
        if spec in ("", "default"):
            return cls.default(asset_tags)
        if spec == "none":
            return cls()
        faults = []
        for item in spec.split(","):
            match = _SPEC_ITEM.match(item.strip())
            if not match:
                raise ValueError(
                    f"cannot read fault {item.strip()!r}: expected kind@tag[.role]:start:duration[:severity],"
                    " e.g. spikes@p-101.vibration:2m:5m"
                )
            if match["tag"] not in asset_tags:
                raise ValueError(
                    f"fault {item.strip()!r}: no simulated asset {match['tag']!r};"
                    f" simulated: {', '.join(asset_tags)}"
                )
            faults.append(
                Fault(
                    match["kind"],
                    match["tag"],
                    match["role"],
                    _seconds(match["start"]),
                    _seconds(match["duration"]),
                    float(match["severity"] or 1.0),
                )
            )
        return cls(faults)


@dataclass(frozen=True)
class Seam:
    """Where a sensor's stored history ends: the time of its last stored reading (epoch seconds) and its
    level there, `seam_level` of its stored readings in the SEAM_WINDOW_S up to it."""

    ts: float
    level: float


def seam_level(ts: np.ndarray, values: np.ndarray, at: float) -> float:
    """The level of a short series at time ``at`` (its end): a robust (Theil-Sen) line through the series,
    so that a rising temperature is met where it ends, not where its middle was, and a spike moves nothing."""
    ts, values = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("seam_level needs at least one reading")
    i, j = np.triu_indices(len(values), k=1)
    apart = ts[j] - ts[i]
    slopes = (values[j] - values[i])[apart > 0] / apart[apart > 0]
    slope = float(np.median(slopes)) if len(slopes) else 0.0
    return float(np.median(values - slope * (ts - at)))


@dataclass
class SimFrame:
    """Signals of one step: sample times and, per asset tag, the load and each role's values."""

    ts: np.ndarray
    load: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class PlantSimulator:
    """Generates the readings of a set of pumps; call step() with consecutive, non-overlapping intervals."""

    def __init__(
        self,
        assets: Sequence[SimAsset],
        seed: int = 0,
        faults: FaultSchedule | None = None,
        origin: float = 0.0,
        sample_period_s: float = 1.0,
    ) -> None:
        tags = [asset.tag for asset in assets]
        if len(set(tags)) != len(tags):
            raise ValueError("simulated asset tags must be unique")
        self.assets = list(assets)
        self.seed = int(seed)
        self.faults = faults or FaultSchedule()
        self.origin = float(origin)
        self.dt = float(sample_period_s)
        unknown = {fault.asset_tag for fault in self.faults.faults} - set(tags)
        if unknown:
            raise ValueError(f"faults name assets that are not simulated: {', '.join(sorted(unknown))}")
        # Carried between steps: the lagged temperature per asset and the frozen value of stuck sensors.
        self._temperature: dict[str, tuple[int, float]] = {}
        self._stuck: dict[tuple[str, float], float] = {}
        self._noise_cache: dict[str, tuple[int, np.ndarray]] = {}
        # A resumed run: per sensor key its seam, its own samples in the window before it (until the seam
        # is passed) and then the offset to the stored level that fades after the seam.
        self._seams: dict[str, Seam] = {}
        self._seam_samples: dict[str, tuple[list[float], list[float]]] = {}
        self._seam_offset: dict[str, float] = {}

    # -- public ---------------------------------------------------------------------------------------------
    def resume(self, seams: Mapping[str, Seam]) -> None:
        """Continue the stored history of these sensors (key -> Seam) instead of starting afresh: call before
        the first step, and step through the SEAM_WINDOW_S before each seam (a backfill does) so that the
        offset is measured against this run's own samples there (else against its first after the seam)."""
        self._seams.update(seams)

    def sample_times(self, t0: float, t1: float) -> np.ndarray:
        return self._indices(t0, t1) * self.dt

    def occurrences(self, t0: float, t1: float) -> list[FaultOccurrence]:
        return self.faults.occurrences(self.origin, t0, t1)

    def signals(self, t0: float, t1: float) -> SimFrame:
        """All samples with t0 <= ts < t1 on the sample grid, per asset and role."""
        idx = self._indices(t0, t1)
        ts = idx * self.dt
        frame = SimFrame(ts=ts)
        occurrences = self.occurrences(t0, t1)
        for asset in self.assets:
            mine = [o for o in occurrences if o.fault.asset_tag == asset.tag]
            load, values = self._asset_signals(asset, idx, ts, mine)
            frame.load[asset.tag] = load
            values = {
                role: self._continued(asset.sensors[role], role, ts, values[role])
                for role in ROLES
                if role in asset.sensors
            }
            # Sensor faults act on what the transmitter would read, after a resumed run's fading offset:
            # a stuck sensor repeats one value exactly (the STUCK flag needs exact repeats).
            for occ in mine:
                if occ.fault.kind in SENSOR_FAULTS and occ.fault.sensor_role in values:
                    role = occ.fault.sensor_role
                    values[role] = self._sensor_fault(occ, asset, idx, ts, values[role])
            frame.values[asset.tag] = values
        return frame

    def step(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat (sensor_keys, ts, values) of every reading with t0 <= ts < t1, ordered by sensor then time."""
        frame = self.signals(t0, t1)
        keys, ts, values = [], [], []
        for asset in self.assets:
            for role, series in frame.values[asset.tag].items():
                keys.append(np.full(series.shape, asset.sensors[role], dtype=object))
                ts.append(frame.ts)
                values.append(series)
        if not keys:
            return np.array([], dtype=object), np.array([]), np.array([])
        return np.concatenate(keys), np.concatenate(ts), np.concatenate(values)

    # -- model ----------------------------------------------------------------------------------------------
    def _indices(self, t0: float, t1: float) -> np.ndarray:
        first, stop = math.ceil(t0 / self.dt - 1e-9), math.ceil(t1 / self.dt - 1e-9)
        return np.arange(first, max(stop, first), dtype=np.int64)

    def _noise(self, asset: SimAsset, idx: np.ndarray) -> np.ndarray:
        """Standard normals (len(idx), 8), fixed per (seed, tag, sample index) whatever the step bounds."""
        if len(idx) == 0:
            return np.empty((0, 8))
        blocks = np.arange(idx[0] // _NOISE_BLOCK, idx[-1] // _NOISE_BLOCK + 1)
        parts = []
        for block in blocks:
            cached = self._noise_cache.get(asset.tag)
            if cached is None or cached[0] != block:
                rng = np.random.default_rng([self.seed & 0xFFFFFFFF, tag_hash(asset.tag), int(block)])
                cached = (int(block), rng.standard_normal((_NOISE_BLOCK, 8)))
                self._noise_cache[asset.tag] = cached
            parts.append(cached[1])
        noise = np.concatenate(parts)
        return noise[idx - blocks[0] * _NOISE_BLOCK]

    def _load(self, asset: SimAsset, ts: np.ndarray) -> np.ndarray:
        h = tag_hash(asset.duty or asset.tag)
        segment_s = 150.0 + (h % 4) * 30.0  # duty changes every 2.5–4 minutes
        segment = np.floor(ts / segment_s).astype(np.int64)
        level = 0.55 + 0.45 * _hash_uniform(self.seed, h, segment)
        previous = 0.55 + 0.45 * _hash_uniform(self.seed, h, segment - 1)
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.clip((ts - segment * segment_s) / _DUTY_RAMP_S, 0.0, 1.0))
        phase = (h % 628) / 100.0
        slow = 0.05 * np.sin(2 * np.pi * ts / 1800.0 + phase)
        return np.clip(previous + (level - previous) * ramp + slow, 0.3, 1.05)

    def _asset_signals(
        self, asset: SimAsset, idx: np.ndarray, ts: np.ndarray, occurrences: list[FaultOccurrence]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rated = asset.rated
        z = self._noise(asset, idx)
        k = asset.noise  # x * 1.0 is exact: the default asset's samples are unchanged bit for bit
        load = self._load(asset, ts)
        speed = load

        wear = np.zeros_like(ts)
        cavitation = np.zeros_like(ts)
        for occ in occurrences:
            sev = occ.fault.severity
            if occ.fault.kind == "bearing_wear":
                # Wear grows over the first 60 % of the interval, then stays until the "repair" at its end.
                ramp = np.clip((ts - occ.start) / (0.6 * (occ.end - occ.start)), 0.0, 1.0)
                wear = np.maximum(wear, sev * ramp * occ.active(ts))
            elif occ.fault.kind == "cavitation":
                onset = np.clip((ts - occ.start) / _CAVITATION_ONSET_S, 0.0, 1.0)
                cavitation = np.maximum(cavitation, sev * onset * occ.active(ts))

        flow_frac = load * (1.0 - 0.15 * cavitation)
        flow = rated.flow * flow_frac * (1.0 + (0.015 * k) * z[:, 0])
        pressure = rated.pressure * (1.2 * speed**2 - 0.2 * flow_frac**2) * (1.0 - 0.25 * cavitation)
        # Turbulence makes the pressure noise grow with the reading, on top of the transmitter's own.
        pressure = (
            pressure * (1.0 + (0.012 * k) * z[:, 1])
            + (0.02 * k) * z[:, 7]
            + 0.08 * rated.pressure * cavitation * z[:, 5]
        )
        power = flow_frac * np.clip(pressure / rated.pressure, 0.0, None)
        current_noise = (0.01 * k) * rated.current  # the same product as before for k = 1.0
        current = (0.3 + 0.7 * power) * rated.current * (1.0 + 0.04 * wear) + current_noise * z[:, 2]
        target = rated.ambient + 30.0 * (current / rated.current) ** 2 + 18.0 * wear
        temperature = self._lagged(asset.tag, idx, target) + (0.1 * k) * z[:, 3]
        vibration = rated.vibration * speed * (1.0 + (0.05 * k) * z[:, 4])
        vibration = vibration + rated.vibration * (2.5 * wear + 0.3 * wear * np.abs(z[:, 6]))
        vibration = vibration + rated.vibration * cavitation * (0.8 + 0.6 * np.abs(z[:, 6]))

        values = {
            "vibration": np.abs(vibration),
            "temperature": temperature,
            "current": np.clip(current, 0.0, None),
            "pressure": np.clip(pressure, 0.0, None),
            "flow": np.clip(flow, 0.0, None),
        }
        return load, values

    def _continued(self, key: str, role: str, ts: np.ndarray, series: np.ndarray) -> np.ndarray:
        """``series`` with the fading offset that joins it to the stored history of sensor ``key``, if any."""
        seam = self._seams.get(key)
        if seam is None:
            return series
        after = ts > seam.ts
        if key not in self._seam_offset:
            window = (ts > seam.ts - SEAM_WINDOW_S) & ~after
            own_ts, own = self._seam_samples.setdefault(key, ([], []))
            own_ts.extend(ts[window].tolist())
            own.extend(series[window].tolist())
            if not after.any():
                return series
            if not own:  # the run starts after the seam: join its first sample
                own_ts, own = [seam.ts], [float(series[after][0])]
            self._seam_offset[key] = seam.level - seam_level(np.array(own_ts), np.array(own), seam.ts)
            del self._seam_samples[key]
        out = series.copy()
        out[after] += self._seam_offset[key] * np.exp(-(ts[after] - seam.ts) / _SEAM_SETTLE_S)
        return out if role == "temperature" else np.clip(out, 0.0, None)

    def _lagged(self, tag: str, idx: np.ndarray, target: np.ndarray) -> np.ndarray:
        """First-order lag with state carried across contiguous steps (a gap restarts at steady state)."""
        if len(idx) == 0:
            return target.copy()
        last = self._temperature.get(tag)
        value = last[1] if last is not None and last[0] == idx[0] - 1 else float(target[0])
        alpha = 1.0 - math.exp(-self.dt / _TEMP_TAU_S)
        out = np.empty_like(target)
        for k, goal in enumerate(target.tolist()):
            value += alpha * (goal - value)
            out[k] = value
        self._temperature[tag] = (int(idx[-1]), value)
        return out

    def _sensor_fault(
        self, occ: FaultOccurrence, asset: SimAsset, idx: np.ndarray, ts: np.ndarray, series: np.ndarray
    ) -> np.ndarray:
        active = occ.active(ts)
        if not active.any():
            return series
        out = series.copy()
        fault = occ.fault
        scale = asset.rated.nominal(fault.sensor_role)
        if fault.kind == "stuck_sensor":
            key = (f"{asset.tag}.{fault.sensor_role}", occ.start)
            frozen = self._stuck.setdefault(key, float(series[np.argmax(active)]))
            out[active] = frozen
        elif fault.kind == "calibration_drift":
            # The offset ramps to 25 % of the nominal reading (per unit severity) until recalibration.
            out[active] += 0.25 * fault.severity * scale * occ.progress(ts[active])
        elif fault.kind == "spikes":
            h = tag_hash(f"{asset.tag}.{fault.sensor_role}")
            bucket = idx // _SPIKE_BUCKET
            fires = _hash_uniform(self.seed, h, bucket) < min(0.9, 0.3 * fault.severity)
            offset = 2 + np.floor(_hash_uniform(self.seed, h + 1, bucket) * (_SPIKE_BUCKET - 4)).astype(
                np.int64
            )
            spike = active & fires & (idx % _SPIKE_BUCKET == offset)
            magnitude = (4.0 + 4.0 * _hash_uniform(self.seed, h + 2, idx)) * scale * fault.severity
            out[spike] += magnitude[spike]
        return out
