"""The live board: one WebSocket per open board page, fed by alerts.broadcast's ``alerts.changed`` ids.

The consumer joins the group of each of its user's sites only, re-reads the changed alerts through the
same site-scoped query as the pages (so an id of another site renders nothing even if it arrived) and
sends htmx out-of-band fragments rendered from the board template's ``alert-card`` partial:

* a card already on the page: ``<article id="alert-N" hx-swap-oob="true">`` replaces it in place;
* a new card: wrapped in ``<div hx-swap-oob="afterbegin:#alert-list">`` (htmx inserts the wrapper's
  content, i.e. the article, at the top of the list);
* an alert that left the board (closed, suppressed): ``<article id="alert-N" hx-swap-oob="delete">``;
* an alert in work (a repair scheduled) lives in the in-work lane: its card is deleted wherever it is and
  inserted at the top of ``#in-work-list``, so a card that just went into work changes lane.

The page then moves each card to its lane (``data-lane``) and its place in the board's order (``data-order``,
``Alert.board_order``: static/js/board.js), where a reload would show it: a new low alert below the critical
ones, an updated card whose severity changed, an undone repair back out of the in-work lane.

"On the page" is tracked per connection from the board as it was at connect time plus what was sent since;
the page re-fetches the whole list on every (re)connect, so a missed message never leaves a stale board.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

import redis.asyncio
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.template.loader import render_to_string

from alerts.broadcast import site_group
from alerts.services import alerts_for_user, board_alerts
from alerts.services.board import ON_BOARD
from plant.access import site_ids_for_user
from plant.params import ParamError, parse_id

CLOSE_UNAUTHENTICATED = 4401
SESSION_RECHECK_S = (
    5.0  # a signed-in socket's session is looked up at most this often (bounds a storm's cost)
)
MAX_IDS_PER_MESSAGE = 100
# The board's sockets, for the operations metrics (config.metrics): a Redis sorted set of channel names
# scored by when their consumer last refreshed them. Every web process writes it, so one scrape sees them
# all; a process that is killed stops refreshing and its sockets drop out of the count after the TTL.
BOARD_CLIENTS_KEY = "vigil:metrics:board_clients"
BOARD_CLIENT_REFRESH_S = 30.0
BOARD_CLIENT_TTL_S = 3 * BOARD_CLIENT_REFRESH_S

logger = logging.getLogger(__name__)


async def _presence(command: str, channel_name: str) -> None:
    """Add (refresh) or remove one socket in BOARD_CLIENTS_KEY; a Redis that does not answer is skipped.
    A client per call (one command every BOARD_CLIENT_REFRESH_S per socket): a client kept between calls is
    bound to the event loop and the URL it was made with, and one of a gone loop or Redis never answers."""
    try:
        async with redis.asyncio.from_url(
            settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=1.0
        ) as client:
            if command == "refresh":
                await client.zadd(BOARD_CLIENTS_KEY, {channel_name: time.time()})
            else:
                await client.zrem(BOARD_CLIENTS_KEY, channel_name)
    except Exception as exc:  # the count is a metric: a board works without it
        logger.debug("board clients metric not updated: %s", exc)


def render_card(alert: Any, *, oob: str = "") -> str:
    return render_to_string(
        "alerts/board.html#alert-card", {"alert": alert, "next": "board", "oob": oob}
    ).strip()


def moved_to_lane(alert: Any) -> str:
    """An in-work card: removed wherever it is, inserted at the top of the in-work lane."""
    return (
        f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>'
        f'<div hx-swap-oob="afterbegin:#in-work-list">{render_card(alert)}</div>'
    )


def render_changes(user: Any, ids: list[int], known: set[int]) -> tuple[str, set[int]]:
    """The fragments for the changed ids this user may see, and the new set of ids on the page."""
    mine = set(alerts_for_user(user).filter(pk__in=ids).values_list("pk", flat=True))
    if not mine:
        return "", known
    cards = board_alerts(user, ids=mine)
    parts = []
    for alert in cards:
        if alert.in_work:
            parts.append(moved_to_lane(alert))
        elif alert.pk in known:
            parts.append(render_card(alert, oob="true"))
        else:
            parts.append(f'<div hx-swap-oob="afterbegin:#alert-list">{render_card(alert)}</div>')
    shown = {alert.pk for alert in cards}
    gone = mine - shown
    parts.extend(f'<article id="alert-{pk}" hx-swap-oob="delete"></article>' for pk in sorted(gone))
    return "\n".join(parts), (known | shown) - gone


def event_ids(event: dict[str, Any]) -> list[int]:
    """The alert ids of an ``alerts.changed`` event, de-duplicated in order; anything that cannot be an alert's
    id (not a list, a string, a number past the database's integers, a negative) is left out, so that it
    never reaches the query."""
    raw = event.get("ids")
    if not isinstance(raw, (list, tuple)):
        return []
    ids = []
    for pk in raw:
        if isinstance(pk, bool) or not isinstance(pk, (int, str)):
            continue
        try:
            ids.append(parse_id("ids", str(pk)))
        except ParamError:
            continue
    return list(dict.fromkeys(ids))


def _still_signed_in(scope: dict[str, Any]) -> bool:
    """Whether the socket's session still signs in its user: the session is stored and unexpired, and
    Django's own check of it (``auth.get_user``: the user exists, is allowed in, and the password hash the
    session was made with still holds) gives the same user."""
    user = scope.get("user")
    key = getattr(scope.get("session"), "session_key", None)
    if user is None or not key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    if not store.exists(key):
        return False
    current = get_user(SimpleNamespace(session=store))
    return current.is_authenticated and current.pk == user.pk


def _connect_state(user: Any) -> tuple[list[int], set[int]]:
    site_ids = site_ids_for_user(user)
    on_board = set(alerts_for_user(user).filter(ON_BOARD).values_list("pk", flat=True))
    return site_ids, on_board


class AlertBoardConsumer(AsyncWebsocketConsumer):
    """Pushes rendered alert cards to one board; anonymous sockets are closed with 4401."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        site_ids, self.known = await database_sync_to_async(_connect_state)(user)
        self.site_groups = [site_group(pk) for pk in site_ids]
        for group in self.site_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.presence = asyncio.create_task(self._keep_present())

    async def _keep_present(self) -> None:
        task = asyncio.current_task()
        while True:
            if await self._signed_out():
                return
            await _presence("refresh", self.channel_name)
            if task is not None and task.cancelling():
                # Cancelled while the Redis client was connecting: it turned the cancellation into a
                # connection error (logged and skipped by _presence), so end here, or the task would sleep on
                # and hang whoever waits for it (the event loop's close).
                raise asyncio.CancelledError
            await asyncio.sleep(BOARD_CLIENT_REFRESH_S)

    async def disconnect(self, code: int) -> None:
        # The presence task first: a channel layer that is down makes group_discard raise.
        presence = getattr(self, "presence", None)
        if presence is not None:
            presence.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await presence
            await _presence("remove", self.channel_name)
        for group in getattr(self, "site_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The board sends nothing; anything received is ignored."""

    async def _signed_out(self) -> bool:
        """True (and the socket closed with 4401) once the session the socket was opened with is over:
        logged out, expired, the password changed, the user deactivated. Checked before every update and on
        every presence refresh, at most once per SESSION_RECHECK_S while it holds."""
        now = time.monotonic()
        if now - getattr(self, "_session_checked", -SESSION_RECHECK_S) < SESSION_RECHECK_S:
            return False
        if await database_sync_to_async(_still_signed_in)(self.scope):
            self._session_checked = now
            return False
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return True

    async def alerts_changed(self, event: dict[str, Any]) -> None:
        if await self._signed_out():
            return
        ids = event_ids(event)
        # A storm's coalesced message is rendered in chunks so no single frame gets huge.
        for start in range(0, len(ids), MAX_IDS_PER_MESSAGE):
            chunk = ids[start : start + MAX_IDS_PER_MESSAGE]
            html, self.known = await database_sync_to_async(render_changes)(self.user, chunk, self.known)
            if html:
                await self.send(text_data=html)
