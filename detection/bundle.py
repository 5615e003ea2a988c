"""The edge bundle format: a .zip with model.onnx, spec.json and checksums.json (sha256 of the other two).

The server writes it (``models_registry.bundle`` for one version and asset), the edge runner and agent read
it (``edge``): one definition of the format, in the core both depend on. ``load_bundle`` verifies every
file against the checksums and the spec's required keys; any problem is a ``BundleError`` whose message
names it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from detection.baseline import BaselineError, Calibration

BUNDLE_FILES = ("model.onnx", "spec.json")
SPEC_KEYS = ("feature_names", "roles", "window_s", "step_s", "open_threshold", "clear_threshold")


class BundleError(Exception):
    """A bundle that is missing, damaged, tampered with or does not fit its spec."""


@dataclass
class Bundle:
    """A verified bundle: the model bytes and its spec."""

    model: bytes
    spec: dict[str, Any]

    @property
    def sensor_roles(self) -> dict[str, str]:
        """Sensor key → role; role keys themselves are accepted too, for bundles made without an asset."""
        mapping = {role: role for role in self.spec["roles"]}
        mapping.update(self.spec.get("sensors") or {})
        return mapping


def pack_bundle(onnx_bytes: bytes, spec: dict[str, Any]) -> bytes:
    """The bundle as zip bytes: model.onnx, spec.json and checksums.json (sha256 of the other two)."""
    files = {
        "model.onnx": bytes(onnx_bytes),
        "spec.json": json.dumps(spec, indent=2, sort_keys=True).encode(),
    }
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("checksums.json", json.dumps(checksums, indent=2, sort_keys=True))
    return buffer.getvalue()


def load_bundle(path: str | BinaryIO) -> Bundle:
    """Open a bundle (a path, or its bytes as a file) and verify every file against checksums.json; raise
    BundleError on any mismatch."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"bundle {path!r} does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"bundle {path!r} is not a readable zip file ({exc})") from None
    with archive:
        names = set(archive.namelist())
        for required in (*BUNDLE_FILES, "checksums.json"):
            if required not in names:
                raise BundleError(f"bundle {path!r} has no {required}")
        try:
            checksums = json.loads(archive.read("checksums.json"))
        except ValueError:
            raise BundleError("checksums.json is not valid JSON") from None
        contents = {}
        for name in BUNDLE_FILES:
            data = archive.read(name)
            expected = checksums.get(name) if isinstance(checksums, dict) else None
            if not expected:
                raise BundleError(f"checksums.json lists no checksum for {name}")
            if hashlib.sha256(data).hexdigest() != expected:
                raise BundleError(f"checksum mismatch for {name}: the bundle was modified or damaged")
            contents[name] = data
    try:
        spec = json.loads(contents["spec.json"])
    except ValueError:
        raise BundleError("spec.json is not valid JSON") from None
    missing = [key for key in SPEC_KEYS if key not in spec]
    if missing:
        raise BundleError(f"spec.json lacks {', '.join(missing)}")
    return Bundle(model=contents["model.onnx"], spec=spec)


def signed_message(asset: str, sha256: str) -> bytes:
    """What the server signs for one asset's bundle (models_registry.signing) and the agent verifies
    (edge.updates): binding the asset stops a bundle meant for another asset, or a replayed older one
    assigned elsewhere, from being installed under this asset's assignment."""
    return f"vigil-bundle:{asset}:{sha256}".encode()


def shipped_step(spec: dict[str, Any], *, robust: bool, baselined: bool) -> np.ndarray | Calibration | None:
    """The per-asset step a bundle's spec ships ("baseline", as ``models_registry.bundle.bundle_spec`` wrote
    it), as the pipeline takes it: a robust calibration for a robust pipeline (``robust``), a mean vector
    for another baselined one (``baselined``), None for a pipeline without the step. BundleError when the
    pipeline needs a step the spec does not ship for the model's features. The one reader of it: the edge
    agent's model and the server's look-up of what an agent scored with (models_registry.edge_rollout)."""
    count = len(spec.get("feature_names") or [])
    if robust:
        try:
            calibration = Calibration.from_json(spec.get("baseline") or {})
        except (BaselineError, AttributeError, TypeError, ValueError) as exc:
            raise BundleError(
                f"the model scores against the asset's robust calibration, but spec.json has none: {exc}"
            ) from None
        if len(calibration.location) != count:
            raise BundleError("spec.json's calibration does not cover the model's features")
        return calibration
    if baselined:
        vector = spec.get("baseline")
        if not isinstance(vector, list) or len(vector) != count:
            raise BundleError("the model scores against a per-asset baseline, but spec.json has none for it")
        return np.asarray(vector, dtype=np.float64)
    return None
