"""A gateway POST is authenticated and size-checked before its body is read, and never read past the limit.

Against a real uvicorn server (bench/live_server.py): the client streams a huge body generated chunk by
chunk (never held in memory) and watches for the answer while it sends, the way a server that stops
reading looks from outside. The server's RSS must stay flat and it must answer long before the body ends.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import h11
import pytest
from channels.testing import HttpCommunicator
from django.db import OperationalError

import config.asgi

from bench.live_server import LiveServer

LIMIT = 1024 * 1024  # VIGIL_INGEST_MAX_BODY_BYTES of the server under test
HUGE = 1024**3  # what the hostile client claims or streams
CHUNK = 256 * 1024
ANSWER_WITHIN_S = 15.0
RSS_GROWTH_MAX = 64 * 1024 * 1024
# What the client can push before the server's answer reaches it: the kernel's socket buffers on both
# ends plus what the server reads up to the limit. Far below HUGE; the old server read all of HUGE.
SENT_MAX = LIMIT + 48 * 1024 * 1024

SETUP = """
from plant.models import Asset, AssetType, Gateway, Sensor, SensorRole, Site
site = Site.objects.create(slug="north", name="North")
pump = AssetType.objects.create(slug="pump", name="Pump")
role = SensorRole.objects.create(asset_type=pump, key="vibration", label="Vibration")
asset = Asset.objects.create(site=site, asset_type=pump, name="P-101", tag="p-101")
Sensor.objects.create(asset=asset, key="north.p-101.vibration", role=role, valid_min=0, valid_max=100)
print(json.dumps({"token": Gateway.issue(site, "edge-1")[1]}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, str]]:
    live = LiveServer(tmp_path_factory.mktemp("body-limit"), {"VIGIL_INGEST_MAX_BODY_BYTES": str(LIMIT)})
    try:
        token = live.setup(SETUP)["token"]
        live.start()
        yield live, token
    finally:
        live.stop()
    assert "Traceback" not in live.output(), live.output()[-3000:]


def zeros(total: int) -> Iterator[bytes]:
    """`total` bytes of a body in CHUNK pieces, made as they are sent."""
    chunk = b"0" * CHUNK
    for start in range(0, total, CHUNK):
        yield chunk[: min(CHUNK, total - start)]


def post_streaming(
    port: int, headers: list[tuple[str, str]], body: Iterator[bytes]
) -> tuple[int | None, dict, bytes, int, float]:
    """POST /api/v1/readings, sending `body` while watching for an early answer.

    Returns (status or None, response headers, response body, bytes of body sent, seconds to the answer).
    Sending stops at the answer, when the server closes the connection, or after ANSWER_WITHIN_S.
    """
    conn = h11.Connection(our_role=h11.CLIENT)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.2)
    started = time.monotonic()
    request = h11.Request(method="POST", target="/api/v1/readings", headers=[("Host", "127.0.0.1"), *headers])
    sock.sendall(conn.send(request))
    sent, status, answer_headers, answer, answered_at = 0, None, {}, b"", None
    sending = True
    try:
        while time.monotonic() - started < ANSWER_WITHIN_S:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable or not sending:
                data = sock.recv(65536) if readable or select.select([sock], [], [], 0.2)[0] else None
                if data is None:
                    continue
                conn.receive_data(data)
                while (event := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                    if isinstance(event, h11.Response):
                        status, answered_at = event.status_code, time.monotonic() - started
                        answer_headers = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h11.Data):
                        answer += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        return status, answer_headers, answer, sent, answered_at
                if not data:
                    break
                continue
            chunk = next(body, None)
            if chunk is None:
                sock.sendall(conn.send(h11.EndOfMessage()))
                sending = False
                continue
            try:
                sock.sendall(conn.send(h11.Data(data=chunk)))
                sent += len(chunk)
            except TimeoutError:
                sent += CHUNK  # partly sent; the server is not reading: look for its answer
            except (BrokenPipeError, ConnectionResetError):
                sending = False
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    return status, answer_headers, answer, sent, answered_at or float("inf")


def auth(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]


def warm_up(live: LiveServer, token: str) -> int:
    """One valid and one refused request, so imports and caches are in before RSS is measured."""
    assert valid_post(live, token)[0] == 200
    post_streaming(live.port, [("Content-Length", "10")], iter([b"0" * 10]))
    return live.rss()


def valid_post(live: LiveServer, token: str, chunked: bool = False) -> tuple[int | None, dict]:
    body = json.dumps({"readings": [{"sensor": "north.p-101.vibration", "ts": time.time() - 60, "value": 1}]})
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))
    status, _, answer, _, _ = post_streaming(live.port, [*auth(token), framing], iter([body.encode()]))
    return status, json.loads(answer) if answer else {}


@pytest.mark.parametrize(
    "framing", [("Content-Length", str(HUGE)), ("Transfer-Encoding", "chunked")], ids=["declared", "chunked"]
)
def test_an_anonymous_huge_post_is_refused_with_401_before_its_body_is_read(server, framing):
    live, token = server
    before = warm_up(live, token)

    status, headers, answer, sent, seconds = post_streaming(live.port, [framing], zeros(HUGE))

    assert status == 401, f"no 401 after sending {sent / 2**20:.0f} MiB in {seconds:.1f} s"
    assert json.loads(answer)["error"].startswith("missing Authorization header")
    assert headers["www-authenticate"] == 'Bearer realm="vigil"'
    assert sent < SENT_MAX, f"the server read {sent / 2**20:.0f} MiB of an anonymous body"
    assert live.rss() - before < RSS_GROWTH_MAX


def test_a_wrong_token_is_refused_before_the_body_is_read(server):
    live, _ = server

    status, _, answer, sent, _ = post_streaming(
        live.port, [*auth("not-a-token"), ("Content-Length", str(HUGE))], zeros(HUGE)
    )

    assert status == 401 and json.loads(answer) == {"error": "invalid or revoked gateway token"}
    assert sent < SENT_MAX


def test_a_gateway_declaring_a_body_over_the_limit_gets_413_before_it_is_read(server):
    live, token = server
    before = warm_up(live, token)

    status, headers, answer, sent, _ = post_streaming(
        live.port, [*auth(token), ("Content-Length", str(HUGE))], zeros(HUGE)
    )

    assert status == 413
    assert json.loads(answer) == {"error": f"body too large: {HUGE} bytes, the limit is {LIMIT}"}
    assert sent < SENT_MAX
    assert headers["connection"] == "close"
    assert live.rss() - before < RSS_GROWTH_MAX


def test_a_chunked_body_over_the_limit_gets_413_and_the_server_stops_reading(server):
    live, token = server
    before = warm_up(live, token)

    status, headers, answer, sent, _ = post_streaming(
        live.port, [*auth(token), ("Transfer-Encoding", "chunked")], zeros(HUGE)
    )

    assert status == 413
    assert json.loads(answer) == {"error": f"body too large: the limit is {LIMIT} bytes"}
    assert LIMIT < sent < SENT_MAX, f"sent {sent / 2**20:.1f} MiB"
    assert headers["connection"] == "close"
    assert live.rss() - before < RSS_GROWTH_MAX


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_valid_post_within_the_limit_is_still_stored(server, chunked):
    live, token = server

    status, answer = valid_post(live, token, chunked=chunked)

    assert status == 200 and answer["accepted"] == 1, answer


async def test_a_database_error_while_authenticating_leaves_the_answer_to_the_view(monkeypatch):
    """The guard never turns a database outage into its own 500: the view meets the error and answers it."""

    def database_down(scope: dict) -> object:
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(config.asgi, "_gateway_or_refusal", database_down)
    communicator = HttpCommunicator(
        config.asgi.application, "POST", "/api/v1/readings", body=b"{}", headers=[(b"host", b"testserver")]
    )

    response = await communicator.get_response(timeout=10)

    # No Authorization header: the view answers without the database.
    assert response["status"] == 401
    assert json.loads(response["body"])["error"].startswith("missing Authorization header")
