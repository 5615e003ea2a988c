"""Alert state written back to the plant: after an alert's state changes, one outbox row
(plant.WriteBack) per write-back connection of its site, holding the asset's whole alert state.

The rows are written after the scoring (or feedback) transaction has committed, by a robust on-commit
callback: a failure here is logged and never rolls back or slows the change that triggered it, and a site
without write-back connections costs one indexed query. The bridge publishes the rows (connectivity:
a retained MQTT message per asset); the row holds the whole state, so publishing is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from alerts.choices import ACTIVE_STATES, Severity
from alerts.event_hooks import InterestedAssets, on_alert_events
from alerts.models import Alert
from alerts.services.board import alert_what, decorate
from plant.models import Asset, Connection, WriteBack

log = logging.getLogger(__name__)


def asset_state(asset: Asset) -> dict[str, Any]:
    """What an HMI shows for `asset`: its most severe active alert in plain words, or "normal"."""
    active = list(
        Alert.objects.filter(asset=asset, is_shadow=False, state__in=ACTIVE_STATES).select_related("asset")
    )
    base = {
        "site": asset.site.slug,
        "asset": asset.tag,
        "asset_name": asset.name,
        "at": timezone.now().isoformat(),
    }
    if not active:
        return base | {
            "state": "normal",
            "severity": None,
            "severity_code": 0,
            "text": f"{asset.name}: no active alert",
        }
    alert = max(active, key=lambda a: (Severity(a.severity).rank, a.opened_at))
    return base | {"state": alert.state, **alert_words(alert)}


def alert_words(alert: Alert) -> dict[str, Any]:
    """One alert in the plain words the board uses (the alert is decorated with ``why`` on the way): what
    it is (the sensor, for a "check the sensor" alert), its severity, the sentence of its top sensor (of its
    data link, for a data-link alert: which sensors sent nothing, when, and to check the link) and the link
    to its page. The write-back, the clients' one-line texts and the notifications (notify) all say it this
    way."""
    decorate([alert])
    top = alert.why[0] if alert.why else None
    what = alert_what(alert)
    sentence = alert.data_link.sentence if alert.data_link is not None else top.sentence if top else None
    return {
        "severity": alert.severity,
        "severity_code": Severity(alert.severity).rank + 1,  # 1 low .. 4 critical; 0 normal
        "category": alert.category,
        "category_label": what,  # the words of "text", for the clients' own one-line texts (AlertState)
        "alert_id": alert.pk,
        "top_sensor": top.sensor if top else None,
        "top_sensor_text": sentence,
        "text": f"{alert.asset.name} {what} alert, {alert.get_severity_display().lower()}",
        "link": settings.VIGIL_PUBLIC_URL + reverse("alerts:detail", args=[alert.pk]),
    }


def record_write_back(asset_id: int) -> int:
    """Queue the asset's state for every enabled write-back connection of its site; the rows written."""
    connections = list(
        Connection.objects.filter(write_back=True, enabled=True, site__assets=asset_id).values_list(
            "pk", flat=True
        )
    )
    if not connections:
        return 0
    asset = Asset.objects.select_related("site").get(pk=asset_id)
    payload = asset_state(asset)
    WriteBack.objects.bulk_create(
        WriteBack(connection_id=pk, asset_id=asset_id, payload=payload) for pk in connections
    )
    return len(connections)


def _write_back_asset_ids() -> Iterable[int]:
    return (
        Asset.objects.filter(site__connections__write_back=True, site__connections__enabled=True)
        .values_list("pk", flat=True)
        .distinct()
    )


# The assets on sites with an enabled write-back connection (alerts.event_hooks: cached per process).
write_back_assets = InterestedAssets("alerts.writeback", _write_back_asset_ids, [Connection])


def connect() -> None:
    """Every alert state change of such an asset records its write-back after commit (alerts.event_hooks)."""
    on_alert_events(
        "alerts.writeback", write_back_assets, lambda event_pk, asset_id: record_write_back(asset_id)
    )
