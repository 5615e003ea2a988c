"""What the registry's comparison page reads from the alerts app (handed in from AlertsConfig.ready(), as the
registry sits below alerts): the alerts a version really raised."""

from __future__ import annotations

from datetime import datetime

from alerts.models import Alert
from alerts.services.board import alert_level
from models_registry.comparison import Episode
from models_registry.models import ModelVersion
from plant.models import Asset


def recorded_episodes(
    version: ModelVersion, assets: list[Asset], start: datetime, end: datetime, shadow: bool
) -> list[Episode]:
    """The alerts the version really raised (shadow ones for a shadow version) that opened in the period,
    as comparison Episodes (models_registry.comparison.recorded asks it)."""
    by_pk = {asset.pk: asset for asset in assets}
    alerts = (
        Alert.objects.filter(
            model_version=version, asset__in=assets, opened_at__gte=start, opened_at__lte=end
        )
        .select_related("asset__asset_type")
        .order_by("opened_at", "pk")
    )
    if version.status != "champion":
        alerts = alerts.filter(is_shadow=shadow)
    episodes = []
    for alert in alerts:
        level = alert_level(alert, version)
        episodes.append(
            Episode(
                asset=by_pk[alert.asset_id],
                start=alert.first_window_start,
                last_seen=alert.last_seen_at,
                opened=alert.opened_at,
                closed=alert.closed_at,
                peak=alert.peak_score,
                alert_id=alert.pk,
                open_threshold=level.open_threshold,
                higher=level.higher,
            )
        )
    return episodes
