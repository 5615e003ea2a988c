"""ASGI entry point: HTTP through Django, WebSockets through Channels with auth and origin checks."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.asgi import get_asgi_application

from config.env import env_int, missing_settings_module

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if problem := missing_settings_module():
    sys.exit(problem)  # the ASGI server's import of this module ends on one line, not Django's traceback
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix  # noqa: E402
from django.db import DatabaseError, close_old_connections  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from plant.api import authenticate  # noqa: E402

logger = logging.getLogger(__name__)

# The views whose bodies IngestBodyGuard guards: view name → the setting that holds the body limit.
GUARDED_VIEWS = {"api:readings": "VIGIL_INGEST_MAX_BODY_BYTES"}
# What a channel layer (channels-redis) raises while Redis is unreachable.
CHANNEL_LAYER_DOWN = (RedisError, OSError, asyncio.TimeoutError)
WS_RETRY_AFTER_S = 5
WS_TRY_AGAIN_LATER = 1013


class ReusedRequestThreads:
    """Run the sync part of each HTTP request on one of `size` long-lived threads (ASGI middleware).

    Django's ASGIHandler gives every request a new thread for its sync code, and Django's database
    connections belong to a thread: CONN_MAX_AGE had no effect and every request opened (and leaked) a
    new PostgreSQL connection, ~10 ms plus cold catalog caches on each gateway POST. An outer
    ThreadSensitiveContext with a single-thread executor takes precedence over Django's own, so a request
    holding one of these executors reuses its thread and connection, which Django then closes per
    CONN_MAX_AGE at request start/end as under WSGI. One request holds an executor at a time; when all are
    busy a request falls back to Django's thread-per-request, so concurrency is never capped by the pool.
    """

    def __init__(self, app, size: int) -> None:
        self.app = app
        self.size = size
        self._idle: list[ThreadPoolExecutor] = []
        self._created = 0

    def _take(self) -> ThreadPoolExecutor | None:
        # Runs on the event loop thread only, so the list needs no lock.
        if self._idle:
            return self._idle.pop()
        if self._created < self.size:
            self._created += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vigil-http-{self._created}")
        return None

    async def __call__(self, scope, receive, send) -> None:
        executor = self._take() if scope["type"] == "http" else None
        if executor is None:
            await self.app(scope, receive, send)
            return
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            self._idle.append(executor)


def _gateway_or_refusal(scope: dict) -> object:
    """plant.api.authenticate on the request's headers alone (an empty body): a Gateway or the view's 401."""
    close_old_connections()  # what Django's request_started does: drop a connection that went bad or stale
    return authenticate(ASGIRequest(scope, io.BytesIO()))


def _declared_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the view answers 400 for it; the body read is capped all the same
    return None


def _too_large(message: str) -> HttpResponse:
    return JsonResponse({"error": message}, status=413)


class IngestBodyGuard:
    """Decide on a gateway POST before reading its body, and never read more of it than the limit (ASGI).

    Django's ASGIHandler reads the whole body before any view runs, so the ingest view's 401 and 413 came
    only after a client had sent all it wanted: an anonymous 1 GiB POST grew the web process by 750 MB.
    For the views in GUARDED_VIEWS this middleware authenticates the bearer token and checks Content-Length
    from the headers alone, answering the view's own 401 (plant.api.authenticate) or a 413 without a byte
    of the body read; a body it lets through is counted as it arrives and refused with 413 the moment it
    passes the limit (chunked bodies declare no length). Each refusal closes the connection, so the server
    stops reading the rest instead of draining it.
    """

    def __init__(self, app: ASGIHandler) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        limit_setting = self._limit_setting(scope)
        if limit_setting is None:
            await self.app(scope, receive, send)
            return
        limit = getattr(settings, limit_setting)
        try:
            verdict = await sync_to_async(_gateway_or_refusal)(scope)
        except DatabaseError:
            # The view meets the same error and answers it; the body it reads is still capped below.
            verdict = None
        if isinstance(verdict, HttpResponse):
            await self._refuse(verdict, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(_too_large(f"body too large: {declared} bytes, the limit is {limit}"), send)
            return
        await self.app(scope, self._capped(receive, send, limit), send)

    @staticmethod
    def _limit_setting(scope: dict) -> str | None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return None
        try:
            match = resolve(scope["path"].removeprefix(get_script_prefix(scope)))
        except Resolver404:
            return None
        return GUARDED_VIEWS.get(match.view_name)

    async def _refuse(self, response: HttpResponse, send) -> None:
        response["Connection"] = "close"
        await self.app.send_response(response, send)

    def _capped(self, receive, send, limit: int):
        received = 0

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await self._refuse(_too_large(f"body too large: the limit is {limit} bytes"), send)
                    # Django's read_body takes this as the client having gone and returns quietly.
                    return {"type": "http.disconnect"}
            return message

        return capped_receive


class ChannelLayerOutage:
    """Refuse a WebSocket whose consumer cannot reach the channel layer (Redis down): 503, never a 500.

    Before the handshake is accepted the answer is HTTP 503 with Retry-After, through the ASGI
    ``websocket.http.response`` extension (uvicorn has it); a server without it gets the socket accepted
    and closed with 1013 "try again later", and so does an open socket whose layer goes away. The board's
    htmx ws extension reconnects with backoff after either (close codes 1006/1013) and re-syncs its whole
    list on every open (static/js/board.js), so the board catches up once Redis is back.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        state = {"accepted": False, "ended": False}

        async def tracking_send(message: dict) -> None:
            kind = message["type"]
            state["accepted"] |= kind == "websocket.accept"
            state["ended"] |= kind in ("websocket.close", "websocket.http.response.start")
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except CHANNEL_LAYER_DOWN as exc:
            logger.warning(
                "WebSocket %s refused: channel layer unavailable (%s: %s)",
                scope.get("path"),
                type(exc).__name__,
                exc,
            )
            if not state["ended"]:
                await self._refuse(scope, send, accepted=state["accepted"])

    @staticmethod
    async def _refuse(scope: dict, send, accepted: bool) -> None:
        try:
            if not accepted and "websocket.http.response" in scope.get("extensions", {}):
                body = b'{"error": "live updates are unavailable for a moment: the message broker is down"}'
                headers = [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(WS_RETRY_AFTER_S).encode()),
                ]
                await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
                return
            if not accepted:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
        except OSError:
            pass  # the client has gone already (uvicorn's ClientDisconnected is an OSError)


application = ProtocolTypeRouter(
    {
        "http": ReusedRequestThreads(
            IngestBodyGuard(django_asgi_app), env_int("VIGIL_HTTP_THREADS", 8, minimum=1)
        ),
        "websocket": ChannelLayerOutage(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
