"""One way for the consumers of alert state changes to hear of them: the plant write-back (alerts.writeback),
notifications (notify) and webhooks / work orders (handoff).

Every state change of an alert is an ``AlertEvent`` row, whoever made it (scorer, board, API, edge, a
command), so a ``post_save`` receiver on it sees all of them. The receiver runs inside the caller's
transaction — usually a scoring run — so it must cost no query and never fail the change:

* whether the event concerns the consumer at all is read from a per-process set of the asset ids it cares
  about (``InterestedAssets``: one query at most every ``INTEREST_TTL_S``, and again at once when an asset
  or one of the models that define the set is saved or deleted in this process; other processes see a
  change within ``INTEREST_TTL_S``);
* the consumer's work runs after commit (``transaction.on_commit(..., robust=True)``: a failure is logged
  and neither rolls back nor slows the change), and should only queue a task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cachetools import TTLCache
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from alerts.models import AlertEvent
from plant.models import Asset

INTEREST_TTL_S = 10.0


class InterestedAssets:
    """The ids of the assets a consumer cares about, from ``load`` (cached per process, see the module
    docstring); ``models``: the models whose saves and deletes change the answer (besides Asset's)."""

    def __init__(self, name: str, load: Callable[[], Iterable[int]], models: Sequence[type[Model]]) -> None:
        self.name, self.load, self.models = name, load, (Asset, *models)
        self._cache: TTLCache = TTLCache(maxsize=1, ttl=INTEREST_TTL_S)
        self._lock = threading.Lock()

    def ids(self) -> frozenset[int]:
        with self._lock:
            ids = self._cache.get("ids")
            if ids is None:
                ids = self._cache["ids"] = frozenset(self.load())
            return ids

    def forget(self, **kwargs: Any) -> None:
        """Drop the cached set (a signal receiver; tests call it between their rows)."""
        with self._lock:
            self._cache.clear()

    def connect(self) -> None:
        for model in self.models:
            for signal in (post_save, post_delete):
                signal.connect(
                    self.forget, sender=model, dispatch_uid=f"{self.name}.{model.__name__}.{signal}"
                )


def on_alert_events(
    name: str,
    interested: InterestedAssets,
    act: Callable[[int, int], None],
    *,
    shadow: bool = True,
    same_state: bool = True,
) -> None:
    """Call ``act(event_pk, asset_id)`` after commit for every new AlertEvent of an asset in ``interested``;
    ``shadow=False`` leaves out shadow versions' alerts, ``same_state=False`` events that changed no state
    (e.g. a verdict recorded on an alert that stays open)."""

    def receiver(sender: type, instance: AlertEvent, created: bool, **kwargs: Any) -> None:
        if not created or kwargs.get("raw"):
            return
        if not same_state and instance.from_state == instance.to_state:
            return
        alert = instance.alert  # made with its alert in hand (cached on it): no query here
        if (not shadow and alert.is_shadow) or alert.asset_id not in interested.ids():
            return
        event_pk, asset_id = instance.pk, alert.asset_id

        def after_alert_event() -> None:  # a named function: robust on_commit logs its name
            act(event_pk, asset_id)

        after_alert_event.__qualname__ = f"{name}.after_alert_event"
        transaction.on_commit(after_alert_event, robust=True)

    post_save.connect(receiver, sender=AlertEvent, dispatch_uid=name, weak=False)
    interested.connect()
