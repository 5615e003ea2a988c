"""alerts' scoring-gaps parts of plant's asset page (plant.views.provide_asset_panels, registered in
AlertsConfig.ready()): the windows a model did not score (alerts.ScoringGap, recorded by alerts.scoring)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from alerts.models import ScoringGap
from plant.forms import TimeRange
from plant.models import Asset

SCORING_GAPS_SHOWN = 20
SCORING_GAPS_RECENT = timedelta(days=30)


def asset_context(asset: Asset) -> dict:
    """The recent scoring gaps, for the asset page."""
    recent = ScoringGap.objects.filter(asset=asset).overlapping(since=timezone.now() - SCORING_GAPS_RECENT)
    return {"scoring_gaps": list(recent[:SCORING_GAPS_SHOWN])}


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
