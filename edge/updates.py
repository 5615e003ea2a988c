"""Model updates at the edge: verified, tried in shadow, switched atomically, rolled back by themselves.

1. **Verify** (``verify_bundle``): the downloaded bytes must have the sha256 the server assigned, carry the
   server's Ed25519 signature over ``vigil-bundle:<asset>:<sha256>`` (the public key is in the agent's
   config), pass the bundle's own checksums and load as a model (``EdgeModel``). Anything else is refused
   with the reason and the current model stays.
2. **Install** (``ModelStore.install``): written to a staging directory, every file and the directory
   fsynced, then renamed into ``models/<asset>/<sha256>/`` — a complete directory or none.
3. **Shadow** (``ShadowTrial``): the candidate decides beside the current model on the same live readings
   for a set period, publishing nothing; the trial counts windows scored, alerts each would raise and the
   correlation of their scores, for the server's rollout page (and the auto-approval policy).
4. **Switch** (``ModelStore.switch``): ``previous`` and then ``current`` are symlinks replaced with one
   ``os.replace`` each (atomic on POSIX), the directory fsynced after each. A kill -9 at any moment leaves
   ``current`` naming a complete model: the old one or the new one.
5. **Watch** (``SwitchWatch``): after a switch, if the model fails to load or the alert rate exceeds a
   factor of the rate the shadow trial measured, the agent switches back to ``previous`` and reports why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from detection.bundle import Bundle, BundleError, load_bundle, signed_message
from detection.rollout import MIN_SHARE, correlation, shadow_verdict
from edge.model import EdgeModel

BUNDLE_NAME = "bundle.zip"


class UpdateError(Exception):
    """An update refused or failed; the message says why (reported to the server), the old model stays."""


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise UpdateError(f"the server's public key is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateError("the server's public key is not an Ed25519 key")
    return key


def verify_bundle(
    data: bytes, asset: str, sha256: str, signature: bytes, public_key: Ed25519PublicKey
) -> EdgeModel:
    """The checks of step 1; returns the loaded model (proof that it runs)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise UpdateError(f"the download's sha256 is {actual[:12]}…, the assignment says {sha256[:12]}…")
    try:
        public_key.verify(signature, signed_message(asset, sha256))
    except InvalidSignature:
        raise UpdateError("the bundle's signature is not the server's: refused") from None
    with tempfile.NamedTemporaryFile(suffix=".zip") as handle:
        handle.write(data)
        handle.flush()
        try:
            return EdgeModel(load_bundle(handle.name))
        except BundleError as exc:
            raise UpdateError(f"the bundle does not load: {exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """``root/<asset>/<sha256>/bundle.zip`` per installed model; ``current`` and ``previous`` symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, asset: str) -> Path:
        path = self.root / asset
        path.mkdir(parents=True, exist_ok=True)
        return path

    def installed(self, asset: str, sha256: str) -> bool:
        return (self._dir(asset) / sha256 / BUNDLE_NAME).is_file()

    def install(self, asset: str, sha256: str, data: bytes) -> Path:
        """Write a verified bundle in place (complete or not at all); idempotent."""
        base = self._dir(asset)
        final = base / sha256
        if (final / BUNDLE_NAME).is_file():
            return final / BUNDLE_NAME
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
        try:
            with open(staging / BUNDLE_NAME, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(staging)
            if final.exists():  # a directory left without its file by an older, interrupted version
                shutil.rmtree(final)
            os.rename(staging, final)
            _fsync_dir(base)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final / BUNDLE_NAME

    def _link(self, asset: str, name: str) -> str | None:
        link = self._dir(asset) / name
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        return target if (self._dir(asset) / target / BUNDLE_NAME).is_file() else None

    def current(self, asset: str) -> str | None:
        return self._link(asset, "current")

    def previous(self, asset: str) -> str | None:
        return self._link(asset, "previous")

    def bundle_path(self, asset: str, sha256: str | None = None) -> Path | None:
        sha256 = sha256 or self.current(asset)
        return None if sha256 is None else self._dir(asset) / sha256 / BUNDLE_NAME

    def _point(self, asset: str, name: str, sha256: str) -> None:
        base = self._dir(asset)
        tmp = base / f".{name}.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(sha256, tmp)
        os.replace(tmp, base / name)
        _fsync_dir(base)

    def switch(self, asset: str, sha256: str) -> None:
        """Make an installed model current; the one it replaces becomes ``previous``."""
        if not self.installed(asset, sha256):
            raise UpdateError(f"model {sha256[:12]}… is not installed for {asset}")
        old = self.current(asset)
        if old == sha256:
            return
        if old is not None:
            self._point(asset, "previous", old)
        self._point(asset, "current", sha256)

    def rollback(self, asset: str) -> str:
        """Switch back to ``previous``; returns its sha256."""
        previous = self.previous(asset)
        if previous is None:
            raise UpdateError(f"{asset} has no previous model to roll back to")
        current = self.current(asset)
        self._point(asset, "current", previous)
        if current is not None:
            self._point(asset, "previous", current)
        return previous

    def load(self, asset: str) -> Bundle | None:
        path = self.bundle_path(asset)
        return None if path is None else load_bundle(str(path))


@dataclass
class ShadowTrial:
    """The candidate's record beside the current model over the same windows (step 3)."""

    asset: str
    sha256: str
    started_at: float = field(default_factory=time.time)
    windows: int = 0
    alerts_current: int = 0
    alerts_candidate: int = 0
    in_alert_current: int = 0  # windows decided while that model's alert was active
    in_alert_candidate: int = 0
    _current: dict[float, float] = field(default_factory=dict, repr=False)
    _candidate: dict[float, float] = field(default_factory=dict, repr=False)

    def record(self, current: list[tuple[float, float]], candidate: list[tuple[float, float]]) -> None:
        self._current.update(current)
        self._candidate.update(candidate)

    def count_alerts(
        self, current: int, candidate: int, in_alert_current: int = 0, in_alert_candidate: int = 0
    ) -> None:
        self.alerts_current += current
        self.alerts_candidate += candidate
        self.in_alert_current += in_alert_current
        self.in_alert_candidate += in_alert_candidate

    @property
    def hours(self) -> float:
        """The stretch of data the trial covered (window ends), at least a minute."""
        ends = list(self._candidate)
        return max((max(ends) - min(ends)) if ends else 0.0, 60.0) / 3600.0

    @property
    def candidate_per_hour(self) -> float:
        return self.alerts_candidate / self.hours

    @property
    def candidate_share(self) -> float:
        return self.in_alert_candidate / max(1, len(self._candidate))

    def report(self) -> dict:
        common = sorted(set(self._current) & set(self._candidate))
        self.windows = len(common)
        return {
            "hours": round(self.hours, 4),
            "asset": self.asset,
            "sha256": self.sha256,
            "started_at": self.started_at,
            "windows": len(common),
            "alerts_current": self.alerts_current,
            "alerts_candidate": self.alerts_candidate,
            "alert_share_current": round(self.in_alert_current / max(1, len(self._current)), 4),
            "alert_share_candidate": round(self.in_alert_candidate / max(1, len(self._candidate)), 4),
            "score_correlation": correlation(
                [self._current[k] for k in common], [self._candidate[k] for k in common]
            ),
        }

    def within(self, max_alert_factor: float, min_correlation: float, min_windows: int) -> tuple[bool, str]:
        """The acceptance rule (detection.rollout.shadow_verdict) on this trial's report."""
        return shadow_verdict(
            self.report(),
            max_alert_factor=max_alert_factor,
            min_correlation=min_correlation,
            min_windows=min_windows,
        )


@dataclass
class SwitchWatch:
    """Step 5: after a switch, roll back when alerts come faster than ``factor`` × the shadow estimate.
    Time is the data's (window ends), so a backlog scored at once is judged by the hours it covers."""

    asset: str
    expected_per_hour: float
    factor: float
    expected_share: float = 0.0  # share of time in alert measured in shadow
    assignment: int | None = None  # the server's assignment that switched (reported if rolled back)
    opened: int = 0
    windows: int = 0
    in_alert: int = 0
    first_end: float | None = None
    last_end: float | None = None

    # The time in alert is judged once the switched model has decided this much data.
    SHARE_AFTER_S = 600.0

    def state(self) -> dict:
        """What a restarted agent needs to keep watching (saved beside the deciders' state)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> SwitchWatch:
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})

    def observe(self, ends: list[float], opened: int, in_alert: int = 0) -> None:
        if ends:
            self.first_end = min(ends) if self.first_end is None else self.first_end
            self.last_end = max(ends)
        self.opened += opened
        self.windows += len(ends)
        self.in_alert += in_alert

    def exceeded(self) -> str | None:
        """The reason to roll back, or None. The allowance is at least one alert beyond the expectation,
        so a model expected to be silent is not rolled back by a single genuine alert."""
        span = 0.0 if self.first_end is None else self.last_end - self.first_end
        hours = max(span, 60.0) / 3600.0
        allowed = self.factor * self.expected_per_hour * hours + 1.0
        if self.opened > allowed:
            return (
                f"{self.opened} alerts in {hours:.2f} h after the switch, more than {self.factor:g}× the "
                f"{self.expected_per_hour:.2f}/h measured in shadow"
            )
        share = self.in_alert / max(1, self.windows)
        if span >= self.SHARE_AFTER_S and share > self.factor * max(self.expected_share, MIN_SHARE):
            return (
                f"in alert {share:.0%} of the time in {hours:.2f} h after the switch, more than "
                f"{self.factor:g}× the {self.expected_share:.0%} measured in shadow"
            )
        return None
