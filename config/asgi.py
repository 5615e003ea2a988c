"""ASGI entry point: HTTP through Django, WebSockets through Channels with auth and origin checks."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.asgi import get_asgi_application

from config.env import env_int

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402


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


application = ProtocolTypeRouter(
    {
        "http": ReusedRequestThreads(django_asgi_app, env_int("VIGIL_HTTP_THREADS", 8, minimum=1)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
