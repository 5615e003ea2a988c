"""Staged model rollouts to edge agents: assign, try in shadow on site, approve, switch, roll back.

An engineer assigns a version to one asset's agent first (the Edge page), then to the rest. Each
``EdgeAssignment`` carries the bundle built at that moment (``models_registry.bundle.build_bundle``: the
asset's thresholds and calibration included), its sha256 and the server's Ed25519 signature
(``models_registry.signing``). The agent (``edge.updates``) downloads, verifies and runs it in shadow
beside its current model, and reports the trial (``record_shadow_reports``); the engineer approves on the
page, or — when the assignment says so — the shared acceptance rule (``detection.rollout.shadow_verdict``)
approves it. The agent then switches atomically and reports the outcome (``record_outcomes``): active,
refused (did not verify or load) or rolled back (alert rate beyond the shadow estimate after the switch).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import numpy as np

from detection.baseline import BaselineError, Calibration, baseline_mode, is_robust
from detection.bundle import BundleError, load_bundle, shipped_step
from detection.rollout import shadow_verdict
from models_registry.bundle import BundleExportError, build_bundle
from models_registry.models import EdgeAssignment, EdgeStage, ModelVersion
from models_registry.signing import sign_bundle
from plant.edge_agents import EdgeReportError, check_storable
from plant.models import Asset, EdgeAgent, Gateway

logger = logging.getLogger(__name__)

IN_FLIGHT = (EdgeStage.SHADOW, EdgeStage.APPROVED)
OUTCOMES = {"active": EdgeStage.ACTIVE, "refused": EdgeStage.REFUSED, "rolled_back": EdgeStage.ROLLED_BACK}


class RolloutError(Exception):
    """An assignment that cannot be made (the message says why; shown on the Edge page)."""


def assign(
    version: ModelVersion,
    assets: Iterable[Asset],
    *,
    actor: Any = None,
    shadow_hours: float = 24.0,
    auto_approve: bool = False,
) -> list[EdgeAssignment]:
    """Assign ``version`` to each asset's agent (an assignment still in flight for the asset is cancelled)."""
    made = []
    for asset in assets:
        if asset.asset_type_id != version.asset_type_id:
            raise RolloutError(f"{version} is for {version.asset_type}, {asset.tag} is a {asset.asset_type}")
        try:
            data = build_bundle(version, asset)
        except BundleExportError as exc:
            raise RolloutError(f"{asset.tag}: {exc}") from None
        sha = hashlib.sha256(data).hexdigest()
        with transaction.atomic():
            EdgeAssignment.objects.filter(asset=asset, stage__in=IN_FLIGHT).update(
                stage=EdgeStage.CANCELLED,
                decided_at=timezone.now(),
                decided_by=actor,
                outcome_reason=f"replaced by {version}",
            )
            made.append(
                EdgeAssignment.objects.create(
                    asset=asset,
                    version=version,
                    bundle=data,
                    bundle_sha256=sha,
                    signature=sign_bundle(asset.tag, sha),
                    shadow_hours=float(shadow_hours),
                    auto_approve=auto_approve,
                    created_by=actor,
                )
            )
    return made


def unserved(assets: Iterable[Asset]) -> list[Asset]:
    """The assets no edge agent of their site runs (the tags its heartbeats list in ``models_in_use``): an
    agent takes up only the assignments of its own assets, so theirs would wait in shadow unseen."""
    assets = list(assets)
    served = {
        (site_id, tag)
        for site_id, models in EdgeAgent.objects.filter(
            gateway__site_id__in={asset.site_id for asset in assets}
        ).values_list("gateway__site_id", "models_in_use")
        for tag in (models or {})
    }
    return [asset for asset in assets if (asset.site_id, asset.tag) not in served]


def decide(assignment: EdgeAssignment, stage: str, *, actor: Any = None, reason: str = "") -> None:
    """An engineer approves or cancels an assignment in shadow (compare-and-set on the stage), saying why."""
    if stage not in (EdgeStage.APPROVED, EdgeStage.CANCELLED):
        raise RolloutError(f"an engineer can approve or cancel, not {stage!r}")
    moved = EdgeAssignment.objects.filter(pk=assignment.pk, stage=EdgeStage.SHADOW).update(
        stage=stage, decided_at=timezone.now(), decided_by=actor, decision_reason=reason[:300]
    )
    if not moved:
        raise RolloutError(f"assignment #{assignment.pk} is no longer in shadow")


def agent_assignments(gateway: Gateway) -> list[dict[str, Any]]:
    """What the gateway's agent should run: per asset of its site, the newest assignment in flight or
    active (cancelled, refused and rolled-back ones are history)."""
    rows = (
        EdgeAssignment.objects.filter(asset__site=gateway.site)
        .exclude(stage__in=[EdgeStage.CANCELLED, EdgeStage.REFUSED, EdgeStage.ROLLED_BACK])
        .select_related("asset", "version")
        .order_by("asset_id", "-created_at")
        .defer("bundle")
    )
    seen: set[int] = set()
    out = []
    for row in rows:
        if row.asset_id in seen:
            continue
        seen.add(row.asset_id)
        out.append(
            {
                "id": row.pk,
                "asset": row.asset.tag,
                "version": str(row.version),
                "sha256": row.bundle_sha256,
                "signature": bytes(row.signature).hex(),
                "stage": row.stage,
                "shadow_hours": row.shadow_hours,
                "bundle_url": f"/api/v1/edge/bundles/{row.pk}",
            }
        )
    return out


def _assignment(gateway: Gateway, item: Mapping[str, Any], i: int) -> EdgeAssignment:
    pk = item.get("id")
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise EdgeReportError(f"[{i}].id must be the assignment id")
    row = EdgeAssignment.objects.filter(pk=pk, asset__site=gateway.site).first()
    if row is None:
        raise EdgeReportError(f"[{i}]: assignment {pk} is not one of this site's")
    return row


def record_shadow_reports(gateway: Gateway, reports: list[Any]) -> list[dict[str, Any]]:
    """Store each trial report; approve by the acceptance rule where the assignment allows it."""
    results = []
    for i, report in enumerate(reports):
        if not isinstance(report, Mapping):
            raise EdgeReportError(f"[{i}] must be an object")
        check_storable(report, f"[{i}]")
        row = _assignment(gateway, report, i)
        clean = {
            key: report.get(key)
            for key in (
                "windows",
                "alerts_current",
                "alerts_candidate",
                "alert_share_current",
                "alert_share_candidate",
                "score_correlation",
                "hours",
                "started_at",
            )
        }
        for key in ("windows", "alerts_current", "alerts_candidate"):
            if isinstance(clean[key], bool) or not isinstance(clean[key], int) or clean[key] < 0:
                raise EdgeReportError(f"[{i}].{key} must be a non-negative integer")
        for key in ("alert_share_current", "alert_share_candidate"):
            share = clean[key]
            if share is not None and (
                isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
            ):
                raise EdgeReportError(f"[{i}].{key} must be a number in [0, 1]")
        corr = clean["score_correlation"]
        if corr is not None and (
            isinstance(corr, bool) or not isinstance(corr, int | float) or not -1 <= corr <= 1
        ):
            raise EdgeReportError(f"[{i}].score_correlation must be a number in [-1, 1] or null")
        clean["reported_at"] = timezone.now().isoformat()
        stage = row.stage
        with transaction.atomic():
            EdgeAssignment.objects.filter(pk=row.pk).update(shadow_report=clean)
            if row.stage == EdgeStage.SHADOW and row.auto_approve:
                ok, why = shadow_verdict(
                    clean,
                    max_alert_factor=settings.VIGIL_EDGE_SHADOW_MAX_ALERT_FACTOR,
                    min_correlation=settings.VIGIL_EDGE_SHADOW_MIN_CORRELATION,
                    min_windows=settings.VIGIL_EDGE_SHADOW_MIN_WINDOWS,
                )
                if ok and EdgeAssignment.objects.filter(pk=row.pk, stage=EdgeStage.SHADOW).update(
                    stage=EdgeStage.APPROVED,
                    decided_at=timezone.now(),
                    decision_reason=f"approved by policy: {why}",
                ):
                    stage = EdgeStage.APPROVED
        results.append({"id": row.pk, "stage": stage})
    return results


def record_outcomes(gateway: Gateway, outcomes: list[Any]) -> list[dict[str, Any]]:
    """The agent's outcome of each assignment: active (switched), refused, rolled_back — with its reason."""
    results = []
    for i, item in enumerate(outcomes):
        if not isinstance(item, Mapping):
            raise EdgeReportError(f"[{i}] must be an object")
        check_storable(item, f"[{i}]")
        row = _assignment(gateway, item, i)
        outcome = item.get("outcome")
        stage = OUTCOMES.get(outcome) if isinstance(outcome, str) else None
        if stage is None:
            raise EdgeReportError(f"[{i}].outcome must be one of {', '.join(OUTCOMES)}")
        reason = item.get("reason") or ""
        if not isinstance(reason, str):
            raise EdgeReportError(f"[{i}].reason must be text")
        with transaction.atomic():
            if stage == EdgeStage.ACTIVE:
                # The asset's previous active assignment is now history.
                EdgeAssignment.objects.filter(asset=row.asset, stage=EdgeStage.ACTIVE).exclude(
                    pk=row.pk
                ).update(stage=EdgeStage.CANCELLED, outcome_reason=f"replaced on the agent by #{row.pk}")
            if stage == EdgeStage.ROLLED_BACK:
                # The agent went back to the model this one replaced: that assignment is active again.
                EdgeAssignment.objects.filter(
                    asset=row.asset,
                    stage=EdgeStage.CANCELLED,
                    outcome_reason=f"replaced on the agent by #{row.pk}",
                ).update(
                    stage=EdgeStage.ACTIVE, outcome_reason=f"active again after #{row.pk} was rolled back"
                )
            # The agent's report has its own time: the engineer's (or the policy's) decision keeps its own.
            EdgeAssignment.objects.filter(pk=row.pk).update(
                stage=stage, outcome_reason=reason[:300], outcome_at=timezone.now()
            )
        results.append({"id": row.pk, "stage": stage})
    return results


def agent_step(asset: Asset, version: ModelVersion, at: datetime) -> np.ndarray | Calibration | None:
    """The per-asset step (baseline vector or robust calibration) the asset's agent scored ``version`` with
    at ``at``: the one shipped in the bundle of the newest assignment of that version to the asset that the
    agent reported switching to by then (``outcome_at``) and did not refuse or roll back. The server's
    calibration may have changed since that bundle was built (a recalibration reaches an agent only with a
    new assignment). None for a version without the step, or when no such assignment is recorded (a bundle
    exported and installed by hand: the server cannot know its calibration)."""
    mode = baseline_mode(version.output_spec)
    if mode is None:
        return None
    row = (
        EdgeAssignment.objects.filter(
            asset=asset,
            version=version,
            stage__in=[EdgeStage.ACTIVE, EdgeStage.CANCELLED],
            outcome_at__isnull=False,
            outcome_at__lte=at,
        )
        .order_by("-outcome_at", "-pk")
        .only("bundle")
        .first()
    )
    if row is None:
        return None
    try:
        spec = load_bundle(io.BytesIO(bytes(row.bundle))).spec
        return shipped_step(spec, robust=is_robust(mode), baselined=True)
    except (BundleError, BaselineError, ValueError, TypeError) as exc:
        logger.warning("assignment #%s: its bundle's calibration is unreadable: %s", row.pk, exc)
        return None
