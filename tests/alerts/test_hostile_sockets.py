"""The hostile-input sweep of the WebSocket routes (config.routing), the sockets' part of tests/test_hostile_sweep.py.

Every route is opened through the full ASGI application (origin check, session auth, router) by an anonymous
client, by a user of the other site and by a member of the alert's site, on its own path and on junk paths
and query strings; then each open socket is sent junk frames (not JSON, wrong JSON types, NUL, oversized
text, binary). Three rules are checked:

* no exception escapes the application: an unknown path or an anonymous client is closed with a code
  (4404, 4401), never a 500 with a traceback in the server's log;
* a socket never carries another site's alert, also when its path or query string names that site;
* a member's socket keeps working after the junk: the next change of its site's alert still arrives.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections

from alerts.broadcast import site_group
from alerts.consumers import CLOSE_UNAUTHENTICATED
from config.routing import CLOSE_NOT_FOUND, websocket_urlpatterns
from tests.alerts.builders import make_alert, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

# Each route's path and the code an anonymous client is closed with; a new route needs an entry here.
ROUTES = {"ws/alerts/": CLOSE_UNAUTHENTICATED}
JUNK_PATHS = [
    "/ws/alerts/junk/",
    "/ws/alerts/1/",
    "/ws/alerts/" + "9" * 30 + "/",
    "/ws/alerts/%00/",
    "/ws/alerts/../../etc/passwd",
    "/ws/" + "x" * 3000 + "/",
    "/ws/ünïcødé/",
    "/ws/",
    "/",
]
JUNK_FRAMES = [
    "",
    "not json",
    "{",
    "[1, 2]",
    "null",
    "1e400",
    '{"type": "alerts.changed", "ids": [1, 2, 3]}',
    '{"type": "websocket.disconnect"}',
    '{"ids": "9999999999999999999999999999"}',
    "a\x00b",
    "x" * 2_000_000,
]


@pytest.fixture(autouse=True)
def groups(transactional_db):
    from django.contrib.auth.models import Group

    for name in ("technician", "engineer"):
        Group.objects.get_or_create(name=name)


@pytest.fixture(autouse=True)
def close_thread_connections():
    yield
    connections.close_all()


async def open_socket(path: str, user=None) -> tuple[WebsocketCommunicator, bool, object]:
    """A socket through the whole ASGI application, signed in as ``user`` by a real session cookie."""
    from config.asgi import application

    headers = [(b"origin", b"http://localhost")]
    if user is not None:
        session = await sync_to_async(signed_in)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=3)
    return communicator, connected, code


def test_every_websocket_route_is_swept():
    routed = {str(pattern.pattern) for pattern in websocket_urlpatterns} - {""}
    assert routed == set(ROUTES), "a WebSocket route without an entry in ROUTES is not swept"


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_an_anonymous_socket_is_closed_with_a_code(route):
    communicator, connected, code = await open_socket("/" + route)
    assert not connected and code == ROUTES[route]
    await communicator.wait()


@pytest.mark.parametrize("path", JUNK_PATHS)
async def test_a_socket_to_a_path_no_route_has_is_closed_with_not_found(path, technician):
    communicator, connected, code = await open_socket(path, technician)
    assert not connected and code == CLOSE_NOT_FOUND, (path, code)
    await communicator.wait()


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_junk_frames_neither_break_a_members_socket_nor_leak_another_sites_alert(
    route, technician, outsider, asset, other_asset, champion
):
    other_site = await database_sync_to_async(lambda: other_asset.site)()
    # The query string names the other site and its alert: the socket ignores it.
    theirs = await database_sync_to_async(make_alert)(other_asset, champion)
    query = f"?site={other_site.pk}&site_id={other_site.pk}&ids={theirs.pk}&asset={other_asset.pk}"
    mine, connected, code = await open_socket(f"/{route}{query}", technician)
    assert connected, code
    outside, connected, code = await open_socket(f"/{route}?site=junk&x=%00", outsider)
    assert connected, code

    # As the server hands frames over (send_to refuses an empty one).
    for frame in JUNK_FRAMES:
        await mine.send_input({"type": "websocket.receive", "text": frame})
        await outside.send_input({"type": "websocket.receive", "text": frame})
    for frame in (b"", b"\x00\xff" * 1000, b"\x89PNG\r\n"):
        await mine.send_input({"type": "websocket.receive", "bytes": frame})
    assert await mine.receive_nothing(timeout=0.3)
    assert await outside.receive_nothing(timeout=0.1)

    layer = get_channel_layer()
    site = await database_sync_to_async(lambda: asset.site)()
    # Another site's alert, sent to its own group and smuggled into this site's group, reaches neither
    # this site's member nor (in this site's group) anyone.
    await layer.group_send(site_group(other_site.pk), {"type": "alerts.changed", "ids": [theirs.pk]})
    await layer.group_send(site_group(site.pk), {"type": "alerts.changed", "ids": [theirs.pk, "x", None]})
    assert f'id="alert-{theirs.pk}"' in await outside.receive_from(timeout=2)
    assert await mine.receive_nothing(timeout=0.3)

    # After all that, the member's socket still carries its own site's alerts.
    alert = await database_sync_to_async(make_alert)(asset, champion)
    await layer.group_send(site_group(site.pk), {"type": "alerts.changed", "ids": [alert.pk]})
    html = await mine.receive_from(timeout=2)
    assert f'id="alert-{alert.pk}"' in html and f"alert-{theirs.pk}" not in html
    assert await outside.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await outside.disconnect()
