"""Live updates: after commit, tell each site's channel-layer group which alerts changed (ids only).

Throttling during alert storms: at most VIGIL_BROADCAST_MAX_PER_SECOND messages per site in any sliding
second, per process. Ids that arrive while a site is over its budget wait in a per-site buffer; one timer
per site sends the whole buffer as a single message as soon as the oldest message of the last second ages
out. So nothing is dropped, ids are only coalesced, and a storm of thousands of changes costs each
dashboard a bounded number of messages. The limit is per process: W worker processes may send up to W
times the limit, which the consumers absorb by re-rendering rows by id. Buffered ids are flushed at
interpreter exit.

Channel-layer errors (Redis down) are logged and swallowed: the dashboard falls back to polling, scoring
never fails because of a broadcast.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from alerts.models import Alert

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "alerts.changed"

_lock = threading.Lock()
_sent: dict[int, deque[float]] = defaultdict(deque)  # site -> monotonic times of the last second's messages
_pending: dict[int, dict[int, None]] = defaultdict(dict)  # site -> ids waiting (ordered set)
_timers: dict[int, threading.Timer] = {}


def site_group(site_id: int) -> str:
    return f"site-{site_id}"


def broadcast_alerts(alert_ids: Iterable[int]) -> None:
    """After the current transaction commits, send the ids of changed visible alerts to their sites.

    Shadow alerts are never broadcast. Outside a transaction the message goes out immediately.
    """

    ids = list(dict.fromkeys(int(pk) for pk in alert_ids))
    if not ids:
        return
    site_of = dict(Alert.objects.filter(pk__in=ids, is_shadow=False).values_list("pk", "asset__site_id"))
    by_site: dict[int, list[int]] = defaultdict(list)
    for pk in ids:
        if pk in site_of:
            by_site[site_of[pk]].append(pk)
    if by_site:
        transaction.on_commit(lambda: _dispatch(by_site), robust=True)


def flush_pending() -> None:
    """Send every buffered id now, ignoring the rate limit (tests, shutdown)."""
    with _lock:
        for timer in _timers.values():
            timer.cancel()
        _timers.clear()
        batches = {site: list(ids) for site, ids in _pending.items() if ids}
        _pending.clear()
    for site_id, ids in batches.items():
        _send(site_id, ids)


def reset() -> None:
    """Forget the rate-limit state and drop buffered ids (tests)."""
    with _lock:
        for timer in _timers.values():
            timer.cancel()
        _timers.clear()
        _pending.clear()
        _sent.clear()


def _dispatch(by_site: dict[int, list[int]]) -> None:
    for site_id, ids in by_site.items():
        _offer(site_id, ids)


def _offer(site_id: int, ids: list[int]) -> None:
    """Send the site's buffered ids plus `ids` now if the site has budget left, else buffer them."""
    limit = settings.VIGIL_BROADCAST_MAX_PER_SECOND
    with _lock:
        pending = _pending[site_id]
        pending.update(dict.fromkeys(ids))
        if not pending or site_id in _timers:
            return  # nothing to send, or the scheduled flush will carry these ids
        now = time.monotonic()
        sent = _sent[site_id]
        while sent and now - sent[0] >= 1.0:
            sent.popleft()
        if len(sent) >= limit:
            timer = threading.Timer(max(1.0 - (now - sent[0]), 0.0), _flush_site, args=(site_id,))
            timer.daemon = True
            _timers[site_id] = timer
            timer.start()
            return
        sent.append(now)
        batch = list(pending)
        pending.clear()
    _send(site_id, batch)


def _flush_site(site_id: int) -> None:
    with _lock:
        _timers.pop(site_id, None)
    _offer(site_id, [])


def _send(site_id: int, ids: list[int]) -> None:
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(site_group(site_id), {"type": MESSAGE_TYPE, "ids": ids})
    except Exception:  # Redis down or a broken layer: live updates are best effort
        logger.warning("broadcast of %d alert ids to site %s failed", len(ids), site_id, exc_info=True)


atexit.register(flush_pending)
