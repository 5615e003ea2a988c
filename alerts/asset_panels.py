"""alerts' parts of plant's asset page (plant.views.provide_asset_panels, registered in AlertsConfig.ready()):
the asset's past alerts with the verdicts found, the windows a model did not score (alerts.ScoringGap,
recorded by alerts.scoring) and the sensor roles the asset lacks that its type requires or a model in use
reads."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from alerts.choices import CLOSED_STATES, Severity
from alerts.metrics.facts import verdicts_in_force
from alerts.models import Alert, ScoringGap, when_text
from alerts.services.board import ON_BOARD, alert_what, decorate
from detection.features import roles_read
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from plant.forms import TimeRange
from plant.models import Asset, Sensor, SensorRole, no_sensor_for

SCORING_GAPS_SHOWN = 20
SCORING_GAPS_RECENT = timedelta(days=30)
PAST_ALERTS_SHOWN = 10


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
    """The first page of past alerts, the recent scoring gaps and the missing sensor roles, for the asset
    page."""
    recent = ScoringGap.objects.filter(asset=asset).overlapping(since=timezone.now() - SCORING_GAPS_RECENT)
    return {
        **past_alerts(asset),
        "scoring_gaps": list(recent[:SCORING_GAPS_SHOWN]),
        "missing_roles": missing_roles(asset),
    }


def past_alerts(asset: Asset, page: int = 1) -> dict:
    """One page of the asset's closed alerts (not those still in work, on the board), last opened first, as
    a technician judging a new alert reads them: ``title`` (what the board's one-line texts call it, alerts.services.board.alert_what),
    ``opened_text``/``closed_text`` on the site's clock and ``verdict`` (the one in force, or None). Shadow
    alerts are a model on trial, never shown to technicians (as on the board). A bounded number of queries
    whatever the page's length: the alerts, their verdicts and what the board's decoration reads."""
    start = (page - 1) * PAST_ALERTS_SHOWN
    rows = list(
        Alert.objects.filter(asset=asset, is_shadow=False, state__in=CLOSED_STATES)
        .exclude(ON_BOARD)  # closed but in work: still on the board's in-work lane, not past
        .select_related("asset__site", "asset__asset_type", "sensor")
        .defer("peak_explanation")
        .prefetch_related(
            Prefetch(
                "feedback", queryset=verdicts_in_force().select_related("user"), to_attr="current_verdicts"
            )
        )
        .order_by("-opened_at", "-pk")[start : start + PAST_ALERTS_SHOWN + 1]
    )
    shown = rows[:PAST_ALERTS_SHOWN]
    decorate(shown)
    zone = asset.site.zone
    for alert in shown:
        alert.title = alert_what(alert)
        alert.verdict = alert.current_verdicts[0] if alert.current_verdicts else None
        alert.opened_text = when_text(alert.opened_at, zone)
        alert.closed_text = when_text(alert.closed_at, zone) if alert.closed_at else ""
    return {
        "past_alerts": shown,
        "past_alerts_page": page,
        "past_alerts_older": page + 1 if len(rows) > PAST_ALERTS_SHOWN else None,
    }


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
