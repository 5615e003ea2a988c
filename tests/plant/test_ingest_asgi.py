"""The ASGI entry point runs each HTTP request's sync code on a reused thread, so DB connections persist."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connections

from config.asgi import ReusedRequestThreads, application


class Recorder:
    """A stand-in for Django's ASGIHandler: its own ThreadSensitiveContext, then sync code in a thread."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.seen: list[tuple[str, object]] = []
        self.hold = hold

    async def __call__(self, scope, receive, send) -> None:
        async with ThreadSensitiveContext():
            if self.hold is not None:
                await self.hold.wait()
            # Django's connections are per thread: the same wrapper object means the same DB connection.
            seen = await sync_to_async(lambda: (threading.current_thread().name, connections["default"]))()
            self.seen.append(seen)


async def call(app, scope_type: str = "http") -> None:
    await app({"type": scope_type}, None, None)


async def test_sequential_requests_reuse_one_thread_and_its_database_connection():
    inner = Recorder()
    app = ReusedRequestThreads(inner, size=4)

    for _ in range(3):
        await call(app)

    (thread, connection), *later = inner.seen
    assert thread.startswith("vigil-http-")
    assert all(name == thread and other is connection for name, other in later)


async def test_concurrent_requests_get_different_threads_even_beyond_the_pool_size():
    hold = asyncio.Event()
    inner = Recorder(hold)
    app = ReusedRequestThreads(inner, size=1)

    tasks = [asyncio.create_task(call(app)) for _ in range(3)]
    await asyncio.sleep(0.05)
    hold.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    assert len({thread for thread, _ in inner.seen}) == 3
    await call(app)  # the pooled thread is free again and is reused
    assert inner.seen[-1][0] in {thread for thread, _ in inner.seen[:3]}


async def test_other_scopes_pass_through_without_a_pooled_thread():
    inner = Recorder()
    app = ReusedRequestThreads(inner, size=1)

    await call(app, "lifespan")
    await call(app, "lifespan")

    assert app._created == 0 and len(inner.seen) == 2


def test_the_application_routes_http_through_the_thread_pool():
    assert isinstance(application.application_mapping["http"], ReusedRequestThreads)
