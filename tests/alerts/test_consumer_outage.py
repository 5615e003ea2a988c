"""The board's WebSocket while the channel layer (Redis) is down: 503 with Retry-After or close 1013, never 500.

In process with a channel layer that raises what channels-redis raises without Redis, and against a real
uvicorn whose Redis is stopped and started again (the board's htmx ws extension reconnects after a 503
handshake or a 1013 close and re-syncs its list on open, static/js/board.js).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import ApplicationCommunicator
from django.contrib.auth.models import User
from django.db import connections
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.sync.client import connect as ws_connect

from config.asgi import ChannelLayerOutage, application
from config.embedded_redis import start_embedded_redis
from config.routing import CLOSE_NOT_FOUND, websocket_urlpatterns
from bench.live_server import LiveServer, free_port
from tests.alerts.builders import signed_in

DENIAL = {"websocket.http.response": {}}
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def member(site):
    """A user of the board's site (transactional tests start without the role groups of the migrations)."""
    user = User.objects.create_user("tess")
    site.members.add(user)
    return user


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """The consumer's ORM calls run in asgiref's worker thread; close its connection at the end."""
    yield
    await sync_to_async(connections.close_all)()


def refused(*args, **kwargs):
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


async def board(user, extensions: dict | None = None) -> ApplicationCommunicator:
    scope = {
        "type": "websocket",
        "path": "/ws/alerts/",
        "headers": [],
        "subprotocols": [],
        "user": user,
        "session": await sync_to_async(signed_in)(user),
        "extensions": extensions or {},
    }
    return ApplicationCommunicator(ChannelLayerOutage(URLRouter(websocket_urlpatterns)), scope)


async def test_the_handshake_answers_503_with_retry_after_while_the_channel_layer_is_down(
    member, monkeypatch, caplog
):
    monkeypatch.setattr(get_channel_layer(), "group_add", refused)
    communicator = await board(member, DENIAL)

    await communicator.send_input({"type": "websocket.connect"})
    start = await communicator.receive_output(timeout=2)
    body = await communicator.receive_output(timeout=2)

    assert start["type"] == "websocket.http.response.start" and start["status"] == 503
    assert dict(start["headers"])[b"retry-after"] == b"5"
    assert "message broker is down" in json.loads(body["body"])["error"]
    assert "channel layer unavailable" in caplog.text and "Traceback" not in caplog.text
    await communicator.wait(timeout=2)


async def test_without_the_denial_extension_the_socket_is_closed_with_1013_try_again_later(
    member, monkeypatch
):
    monkeypatch.setattr(get_channel_layer(), "group_add", refused)
    communicator = await board(member)

    await communicator.send_input({"type": "websocket.connect"})

    assert await communicator.receive_output(timeout=2) == {"type": "websocket.accept"}
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 1013}
    await communicator.wait(timeout=2)


async def test_an_open_board_whose_channel_layer_goes_away_is_closed_with_1013(member, monkeypatch):
    layer = get_channel_layer()
    gone = asyncio.Event()
    receive = layer.receive

    async def receive_until_gone(channel):
        waiting = asyncio.ensure_future(receive(channel))
        await asyncio.wait([waiting, asyncio.ensure_future(gone.wait())], return_when=asyncio.FIRST_COMPLETED)
        if gone.is_set():
            waiting.cancel()
            refused()
        return waiting.result()

    monkeypatch.setattr(layer, "receive", receive_until_gone)
    communicator = await board(member, DENIAL)
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.accept", "subprotocol": None}

    monkeypatch.setattr(layer, "group_discard", refused)  # the layer is down for the clean-up too
    gone.set()

    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 1013}
    await communicator.wait(timeout=2)


async def test_an_unknown_path_is_refused_with_4404_also_while_the_channel_layer_is_down(member, monkeypatch):
    """A junk path needs no channel layer: refused as not found whatever Redis's state, not as an outage."""
    layer = get_channel_layer()
    for name in ("new_channel", "receive", "group_add", "group_discard"):
        monkeypatch.setattr(layer, name, refused)
    scope = {"type": "websocket", "path": "/ws/nosuch/", "headers": [], "subprotocols": [], "user": member}
    communicator = ApplicationCommunicator(
        ChannelLayerOutage(URLRouter(websocket_urlpatterns)), scope | {"extensions": DENIAL}
    )

    await communicator.send_input({"type": "websocket.connect"})

    assert await communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": CLOSE_NOT_FOUND,
    }
    await communicator.wait(timeout=2)


def test_the_application_guards_every_websocket():
    assert isinstance(application.application_mapping["websocket"], ChannelLayerOutage)


# --- a real server and a real Redis, stopped and started again ------------------------------------------
SETUP = """
from django.contrib.auth.models import Group, User
from django.test import Client
from plant.models import Site
site = Site.objects.create(slug="north", name="North")
user = User.objects.create_user("tess", password="x")
user.groups.add(Group.objects.get(name="technician"))
site.members.add(user)
client = Client()
client.force_login(user)
print(json.dumps({"session": client.cookies["sessionid"].value}))
"""


@pytest.fixture
def live_board(tmp_path) -> Iterator[tuple[LiveServer, object, dict]]:
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis = start_embedded_redis(url, tmp_path / "redis")
    live = LiveServer(tmp_path, {"REDIS_URL": url})
    try:
        session = live.setup(SETUP)["session"]
        live.start()
        headers = {"Cookie": f"sessionid={session}", "Origin": live.url}
        yield live, redis, headers
    finally:
        live.stop()
        redis.stop()


def open_board(live: LiveServer, headers: dict):
    return ws_connect(f"ws://127.0.0.1:{live.port}/ws/alerts/", additional_headers=headers, open_timeout=10)


def test_a_real_board_gets_503_while_redis_is_down_and_connects_again_once_it_is_back(live_board, tmp_path):
    live, redis, headers = live_board
    with open_board(live, headers) as socket:
        redis.stop()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

    with pytest.raises(websockets.InvalidStatus) as denied:
        open_board(live, headers)
    assert denied.value.response.status_code == 503
    assert denied.value.response.headers["Retry-After"] == "5"
    # A path no route has is refused as not found (a close before the handshake: 403), not as an outage.
    with pytest.raises(websockets.InvalidStatus) as unknown:
        ws_connect(f"ws://127.0.0.1:{live.port}/ws/nosuch/", additional_headers=headers, open_timeout=10)
    assert unknown.value.response.status_code == 403

    redis = start_embedded_redis(redis.url, tmp_path / "redis")
    try:
        # redis-py may first retry a pooled connection of the old server (with backoff): a handshake can
        # time out once before the layer is back, as the board's reconnect loop copes with too.
        deadline = time.monotonic() + 60
        while True:  # what the board's reconnect loop does, without its jitter
            try:
                with open_board(live, headers) as socket:
                    socket.ping().wait(5)
                break
            except (websockets.InvalidStatus, TimeoutError):
                assert time.monotonic() < deadline, (
                    "the board could not connect after Redis came back:\n" + live.output()[-4000:]
                )
                time.sleep(0.5)
    finally:
        redis.stop()
    assert "Traceback" not in live.output(), live.output()[-3000:]
