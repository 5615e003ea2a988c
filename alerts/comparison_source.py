"""What the registry's comparison page reads from the alerts app (handed in from AlertsConfig.ready(), as the
registry sits below alerts): the alerts a version really raised, and their observed follow-through. Both
select the version's alerts with ``version_alerts``. A champion's recorded alerts include those it raised in
shadow before its promotion, which no operator saw; the note's follow-through is over the alerts shown to
operators only, and each recorded alert says whether it was one (``shown_alert_ids``, the metrics' one
definition), so the page's "shown to operators" row counts exactly the note's alerts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from alerts.metrics.facts import follow_through_by_verdict, shown_alert_ids
from alerts.models import Alert
from alerts.services.board import alert_level
from models_registry.comparison import Episode
from models_registry.models import ModelVersion
from plant.models import Asset


def version_alerts(
    version: ModelVersion, asset_ids: Collection[int], start: datetime, end: datetime, *, shadow: bool | None
) -> QuerySet[Alert]:
    """The alerts `version` raised on the assets that opened in [start, end]: its model's own (its kind),
    not the sensor-fault rules' "check sensor X" alerts, which carry the champion's version only to record
    which scoring pass raised them. ``shadow``: only its shadow (True) or visible (False) alerts, or both."""
    alerts = Alert.objects.filter(
        model_version=version,
        kind=version.kind,
        asset_id__in=list(asset_ids),
        opened_at__gte=start,
        opened_at__lte=end,
    )
    return alerts if shadow is None else alerts.filter(is_shadow=shadow)


def champion_follow_through(
    champion: ModelVersion, asset_ids: Collection[int], start: datetime, end: datetime
) -> dict[str, Any]:
    """The comparison page's observed follow-through (models_registry.comparison.observed_follow_through
    asks it): ``follow_through_by_verdict`` of the champion's visible alerts (``version_alerts``)."""
    alerts = version_alerts(champion, asset_ids, start, end, shadow=False)
    return follow_through_by_verdict(alerts, now=timezone.now())


def recorded_episodes(
    version: ModelVersion, assets: list[Asset], start: datetime, end: datetime, shadow: bool
) -> list[Episode]:
    """The alerts the version really raised (shadow ones for a shadow version) that opened in the period,
    as comparison Episodes, each saying whether operators were shown it (models_registry.comparison.recorded
    asks it)."""
    by_pk = {asset.pk: asset for asset in assets}
    # A champion's alerts of the period are all it raised, shadow ones from before its promotion too.
    which = None if version.status == "champion" else shadow
    selected = version_alerts(version, list(by_pk), start, end, shadow=which)
    shown = set() if which else shown_alert_ids(selected.filter(is_shadow=False))
    alerts = (
        selected.order_by("opened_at", "pk").select_related(
            "asset__asset_type"
        )  # alert_level reads the asset's type: no query an alert
    )
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
                shown=alert.pk in shown,
            )
        )
    return episodes
