"""Alert state written back to the plant: after an alert's state changes, one outbox row
(plant.WriteBack) per write-back connection of its site, holding the asset's whole alert state.

The rows are written after the scoring (or feedback) transaction has committed, by a robust on-commit
callback: a failure here is logged and never rolls back or slows the change that triggered it, and a site
without write-back connections costs one indexed query. The bridge publishes the rows (connectivity:
a retained MQTT message per asset); the row holds the whole state, so publishing is idempotent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cachetools import TTLCache
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.urls import reverse
from django.utils import timezone

from alerts.choices import ACTIVE_STATES, Severity
from alerts.models import Alert, AlertEvent
from alerts.services.board import decorate
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
    it is, its severity, the sentence of its top sensor and the link to its page. The write-back, the
    clients' one-line texts and the notifications (notify) all say it this way."""
    decorate([alert])
    top = alert.why[0] if alert.why else None
    what = alert.role_label or alert.get_kind_display()
    return {
        "severity": alert.severity,
        "severity_code": Severity(alert.severity).rank + 1,  # 1 low .. 4 critical; 0 normal
        "category": alert.category,
        "category_label": what,  # the words of "text", for the clients' own one-line texts (AlertState)
        "alert_id": alert.pk,
        "top_sensor": top.sensor if top else None,
        "top_sensor_text": top.sentence if top else None,
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


# The assets whose site has a write-back connection, looked up at most every WRITE_BACK_ASSETS_TTL_S per
# process (and again at once when a connection is saved here): scoring pays no query per event for it.
WRITE_BACK_ASSETS_TTL_S = 10.0
_assets_cache: TTLCache = TTLCache(maxsize=1, ttl=WRITE_BACK_ASSETS_TTL_S)
_assets_lock = threading.Lock()


def write_back_assets() -> frozenset[int]:
    """Ids of the assets on sites with an enabled write-back connection (cached briefly)."""
    with _assets_lock:
        assets = _assets_cache.get("assets")
        if assets is None:
            assets = _assets_cache["assets"] = frozenset(
                Asset.objects.filter(site__connections__write_back=True, site__connections__enabled=True)
                .values_list("pk", flat=True)
                .distinct()
            )
        return assets


def forget_write_back_assets(**kwargs: Any) -> None:
    with _assets_lock:
        _assets_cache.clear()


def on_alert_event(sender: type, instance: AlertEvent, created: bool, **kwargs: Any) -> None:
    """post_save of AlertEvent: every state change is one (alerts.models), whoever made it."""
    if created and not kwargs.get("raw"):
        # The event is made with its alert in hand (cached on it): no query inside the caller's transaction.
        asset_id = instance.alert.asset_id
        if asset_id not in write_back_assets():
            return

        def write_back_asset_state() -> None:  # a named function: robust on_commit logs its name
            record_write_back(asset_id)

        transaction.on_commit(write_back_asset_state, robust=True)


def connect() -> None:
    post_save.connect(on_alert_event, sender=AlertEvent, dispatch_uid="alerts.writeback")
    for signal in (post_save, post_delete):
        signal.connect(forget_write_back_assets, sender=Connection, dispatch_uid=f"alerts.writeback.{signal}")
