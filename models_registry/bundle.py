"""Edge bundle export: a .zip with model.onnx, spec.json and checksums.json for the edge (detection.bundle is the format)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from django.conf import settings

from detection.baseline import BaselineError, Calibration, baseline_mode, peer_mode
from models_registry.baseline import thresholds_in_force, version_vector
from detection.bundle import pack_bundle
from detection.features import roles_read
from models_registry.models import ModelVersion
from models_registry.validation import ModelRejected, check_checksum
from plant.choices import CRITICALITY_SHIFT
from plant.ingest.service import quality_rules
from plant.models import Asset, no_sensor_for

ThresholdOverrides = Callable[[ModelVersion, Collection[int]], dict[int, tuple[float, float]]]
# Set by the alerts app (AlertsConfig.ready): per-asset threshold overrides (noise control) are alerts'
# rows, which this lower layer may not import.
_threshold_overrides: ThresholdOverrides | None = None


def provide_threshold_overrides(source: ThresholdOverrides | None) -> None:
    """Install the function giving {asset id: (open, clear)} overrides of a version for some assets."""
    global _threshold_overrides
    _threshold_overrides = source


def threshold_overrides_of(
    version: ModelVersion, asset_ids: Collection[int]
) -> dict[int, tuple[float, float]]:
    """{asset id: (open, clear)} of the version's active noise-control overrides (none when no app
    provided them)."""
    return _threshold_overrides(version, asset_ids) if _threshold_overrides else {}


BUNDLE_FORMAT = 1


class BundleExportError(Exception):
    """The bundle cannot be made (artifact damaged, asset of another type...)."""


def bundle_spec(version: ModelVersion, asset: Asset | None = None) -> dict[str, Any]:
    """Everything the edge runner needs besides the model bytes."""
    asset_type = version.asset_type
    role_rows = list(asset_type.roles.order_by("key").values_list("key", "label", "unit"))
    roles = [key for key, _label, _unit in role_rows]
    spec: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "model": {
            "name": version.name,
            "version": version.version,
            "kind": version.kind,
            "sha256": version.sha256,
            "status": version.status,
        },
        "asset_type": asset_type.slug,
        "feature_names": list(version.feature_spec),
        "roles": roles,
        "window_s": asset_type.window_s,
        "step_s": asset_type.step_s,
        "open_threshold": version.open_threshold,
        "clear_threshold": version.clear_threshold,
        # The lifecycle's alert rules: windows above the open threshold that open an alert, below the
        # clear threshold that close it (detection.rules, run by the edge runner as by the server).
        "open_windows": int(settings.VIGIL_ALERT_OPEN_WINDOWS),
        "clear_windows": int(settings.VIGIL_ALERT_CLEAR_WINDOWS),
        "output_spec": version.output_spec or {},
        "sensors": {},
        # What the agent needs to tell the HMI why an alert opened while the server is out of reach: the
        # version's background sample (the SHAP reference and the usual ranges, as on the server) and each
        # role's words (detection.wording).
        "background": [list(map(float, row)) for row in (version.background or [])],
        "role_words": {key: [label, unit] for key, label, unit in role_rows},
    }
    if asset is not None:
        if asset.asset_type_id != version.asset_type_id:
            raise BundleExportError(
                f"asset {asset.tag!r} is a {asset.asset_type}, but {version} is for {asset_type}"
            )
        spec["asset"] = {"id": asset.pk, "tag": asset.tag, "site": asset.site.slug}
        # The severity the agent tells the plant is the one the server gives the alert (its card and
        # write-back): shifted by the asset's criticality.
        spec["severity_shift"] = CRITICALITY_SHIFT.get(asset.criticality, 0)
        spec["sensors"] = dict(asset.sensors.order_by("key").values_list("key", "role__key"))
        # The ingest's quality rules and each sensor's settings for them: the agent flags the readings it
        # decides on as the server flags the stored ones (detection.quality), so its windows leave out what
        # the server's leave out and its local alert names the same category (detection.gate).
        spec["quality"] = {
            "rules": {**quality_rules(), "window": int(settings.VIGIL_QUALITY_CONTEXT)},
            "sensors": {
                key: [low, high, period]
                for key, low, high, period in asset.sensors.order_by("key").values_list(
                    "key", "valid_min", "valid_max", "sample_period_s"
                )
            },
        }
        # A version reading a role the asset has no sensor for never completes a window there: the agent
        # would run and stay silent. Refused with the asset page's and the scorer's words. (A role the type
        # lacks is the version's defect, quarantined by the scorer, not the asset's.)
        missing = set(roles_read(version.feature_spec)).intersection(roles) - set(spec["sensors"].values())
        if missing:
            raise BundleExportError(
                f"{no_sensor_for(asset.tag, missing)}, which model {version} reads: it cannot score this "
                "asset at the edge either"
            )
        # The thresholds in force for this asset apply at the edge too: an engineer's override (noise
        # control), else the asset's calibrated thresholds of a robust version, else the version's.
        in_force = thresholds_in_force(version, [asset.pk], threshold_overrides_of(version, [asset.pk]))
        in_force = in_force.get(asset.pk)
        if in_force is not None:
            spec["open_threshold"], spec["clear_threshold"] = (float(value) for value in in_force)
    if peer_mode(version.output_spec) is not None:
        # An edge gateway reads one asset: the peers a peer-relative version compares it with are not there.
        raise BundleExportError(
            f"{version} scores each asset against its peers on the site; it runs on the server only"
        )
    if baseline_mode(version.output_spec) is not None:
        # The runner subtracts the asset's operating point as the scorer does; without it every window
        # of a pump away from the fleet's mean would alert.
        if asset is None:
            raise BundleExportError(
                f"{version} scores against a per-asset baseline: give the asset to export for"
            )
        try:
            step = version_vector(version, asset)
            # A robust version ships the asset's calibration (location, scale, count), a mean one its vector.
            spec["baseline"] = (
                step.to_json() if isinstance(step, Calibration) else [float(value) for value in step]
            )
        except BaselineError as exc:
            raise BundleExportError(f"{exc}; run manage.py calibrate_baseline first") from None
    return spec


def build_bundle(version: ModelVersion, asset: Asset | None = None) -> bytes:
    """The bundle as zip bytes; refuses an artifact whose checksum no longer matches the registry."""
    try:
        model = check_checksum(version)
    except ModelRejected as exc:
        raise BundleExportError(str(exc)) from None
    return pack_bundle(model, bundle_spec(version, asset))
