"""alerts' scoring-gaps parts of plant's asset page (plant.views.provide_asset_panels, registered in
AlertsConfig.ready()): the windows a model did not score (alerts.ScoringGap, recorded by alerts.scoring) and
the sensor roles the asset lacks that its type requires or a model in use reads."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from alerts.choices import Severity
from alerts.models import Alert, ScoringGap
from alerts.services.board import ON_BOARD
from detection.features import roles_read
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from plant.forms import TimeRange
from plant.models import Asset, Sensor, SensorRole, no_sensor_for

SCORING_GAPS_SHOWN = 20
SCORING_GAPS_RECENT = timedelta(days=30)


def site_alerts(assets: list[Asset]) -> dict[int, Alert]:
    """The site page's column (plant.views.provide_site_alerts): each asset's active alert as the board
    shows it (open, acknowledged, snoozed or in work; the most severe, then the oldest, when several)."""
    rank = {severity.value: severity.rank for severity in Severity}
    alerts = Alert.objects.filter(ON_BOARD, is_shadow=False, asset__in=assets).order_by("opened_at", "pk")
    chosen: dict[int, Alert] = {}
    for alert in alerts:
        best = chosen.get(alert.asset_id)
        if best is None or rank[alert.severity] > rank[best.severity]:
            chosen[alert.asset_id] = alert
    return chosen


def asset_context(asset: Asset) -> dict:
    """The recent scoring gaps and the missing sensor roles, for the asset page."""
    recent = ScoringGap.objects.filter(asset=asset).overlapping(since=timezone.now() - SCORING_GAPS_RECENT)
    return {"scoring_gaps": list(recent[:SCORING_GAPS_SHOWN]), "missing_roles": missing_roles(asset)}


def missing_roles(asset: Asset) -> list[str]:
    """What the asset's missing sensors cost, in sentences: required roles of its type it has no sensor
    for (it is left out of training), and per model version in use (champion, shadow) the roles it reads
    that the asset lacks (that version does not score the asset)."""
    roles = SensorRole.objects.filter(asset_type_id=asset.asset_type_id).annotate(
        has=Exists(Sensor.objects.filter(asset=asset, role=OuterRef("pk")))
    )
    have, required, keys = set(), set(), set()
    for key, is_required, has in roles.values_list("key", "required", "has"):
        keys.add(key)
        if has:
            have.add(key)
        elif is_required:
            required.add(key)
    messages = []
    if required:
        messages.append(
            f"{no_sensor_for(asset.tag, required)}, which its type requires: it is left out of training"
        )
    versions = ModelVersion.objects.filter(
        asset_type_id=asset.asset_type_id, status__in=[ModelStatus.CHAMPION, ModelStatus.SHADOW]
    ).order_by("status", "pk")
    for version in versions:
        # A role the type lacks is the version's defect (the scorer quarantines it), not the asset's.
        missing = set(roles_read(version.feature_spec)).intersection(keys) - have
        if missing:
            messages.append(
                f"{no_sensor_for(asset.tag, missing)}, which model {version} reads: "
                "it does not score this asset"
            )
    return messages


def chart_extras(asset: Asset, span: TimeRange) -> dict:
    """Windows of the range that a model did not score, so a flat score line is never mistaken for a
    healthy one."""
    gaps = ScoringGap.objects.filter(asset=asset).overlapping(since=span.start, until=span.end)
    return {"scoring_gaps": [gap_json(gap) for gap in gaps[:SCORING_GAPS_SHOWN]]}


def gap_json(gap: ScoringGap) -> dict:
    return {
        "model_version": str(gap.model_version),
        "start": gap.start.isoformat(),
        "end": gap.end.isoformat(),
        "reason": gap.reason,
        "reason_label": gap.get_reason_display(),
        "created_at": gap.created_at.isoformat(),
    }
