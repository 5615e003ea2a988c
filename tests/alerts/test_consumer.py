"""The board's WebSocket: authenticated members only, their sites' alerts only, rendered card partials."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.db import connections

from alerts.models import Alert
from alerts.services import record_feedback
from config.routing import websocket_urlpatterns
from tests.alerts.builders import explanation_for, make_alert, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def groups(transactional_db):
    """Transactional tests start from an empty database: the groups of migration plant.0002 are gone."""
    from django.contrib.auth.models import Group

    for name in ("technician", "engineer"):
        Group.objects.get_or_create(name=name)


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """The consumer's ORM calls run in asgiref's worker thread; close its connection so the test
    database can be dropped at the end (CONN_MAX_AGE would keep it open)."""
    yield
    await sync_to_async(connections.close_all)()


async def connect(user, session: SessionBase | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/alerts/")
    communicator.scope["user"] = user
    communicator.scope["session"] = session or await sync_to_async(signed_in)(user)
    connected, code = await communicator.connect()
    assert connected, code
    return communicator


async def changed(site, *ids) -> None:
    await get_channel_layer().group_send(f"site-{site.pk}", {"type": "alerts.changed", "ids": list(ids)})


async def test_anonymous_sockets_are_rejected():
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/alerts/")
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect()
    assert not connected and code == 4401


async def test_a_member_receives_a_new_alert_as_a_card_inserted_at_the_top_of_the_list(
    technician, asset, champion
):
    communicator = await connect(technician)
    alert = await database_sync_to_async(make_alert)(asset, champion, severity="high")

    await changed(asset.site, alert.pk)

    html = await communicator.receive_from(timeout=2)
    assert html.startswith('<div hx-swap-oob="afterbegin:#alert-list"><article id="alert-%d"' % alert.pk)
    assert 'data-severity="high"' in html and 'data-action="confirm:repaired"' in html
    await communicator.disconnect()


async def test_the_live_card_speaks_the_same_words_as_the_board_page(technician, asset, champion, trained):
    communicator = await connect(technician)
    explanation = await database_sync_to_async(explanation_for)(champion, trained)
    alert = await database_sync_to_async(make_alert)(asset, champion, explanation=explanation)

    await changed(asset.site, alert.pk)

    html = await communicator.receive_from(timeout=2)
    assert '<li class="why-sensor" data-role="vibration">' in html
    assert "<strong>Vibration is " in html and " mm/s above its usual range</strong>: " in html
    assert "× the alert level</strong> at its peak · unusual for 30 s" in html
    assert '<details class="model-details">' in html and "SHAP φ" in html
    await communicator.disconnect()


async def test_a_card_already_on_the_board_is_replaced_in_place_and_removed_once_closed(
    technician, asset, champion
):
    alert = await database_sync_to_async(make_alert)(asset, champion)
    communicator = await connect(technician)

    await database_sync_to_async(Alert.objects.filter(pk=alert.pk).update)(state="acknowledged")
    await changed(asset.site, alert.pk)
    html = await communicator.receive_from(timeout=2)
    assert html.startswith(f'<article id="alert-{alert.pk}"') and 'hx-swap-oob="true"' in html
    assert 'data-state="acknowledged"' in html

    fresh = await database_sync_to_async(Alert.objects.get)(pk=alert.pk)
    await database_sync_to_async(record_feedback)(fresh, technician, "false_alarm:unknown")
    await changed(asset.site, alert.pk)
    assert await communicator.receive_from(timeout=2) == (
        f'<article id="alert-{alert.pk}" hx-swap-oob="delete"></article>'
    )
    await communicator.disconnect()


async def test_a_member_gets_nothing_for_another_sites_alert(
    technician, outsider, asset, other_asset, champion
):
    communicator = await connect(technician)
    theirs = await database_sync_to_async(make_alert)(other_asset, champion)

    await changed(other_asset.site, theirs.pk)
    # Even an id of another site smuggled into this site's group renders nothing.
    await changed(asset.site, theirs.pk)

    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_outsider_receives_its_own_sites_alerts_only(
    technician, outsider, asset, other_asset, champion
):
    mine = await connect(technician)
    theirs = await connect(outsider)
    alert = await database_sync_to_async(make_alert)(other_asset, champion)

    await changed(other_asset.site, alert.pk)

    assert f'id="alert-{alert.pk}"' in await theirs.receive_from(timeout=2)
    assert await mine.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


async def test_shadow_and_suppressed_alerts_never_reach_the_board(technician, asset, champion):
    communicator = await connect(technician)
    shadow = await database_sync_to_async(make_alert)(asset, champion, is_shadow=True)
    await changed(asset.site, shadow.pk)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_the_full_asgi_application_refuses_a_foreign_origin(technician):
    from config.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/alerts/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_a_socket_is_closed_once_its_session_is_over(technician, asset, champion, monkeypatch):
    """Logged out in another tab, or the password changed: the open board stops receiving the site's alerts
    (closed with 4401) instead of streaming them to whoever has the screen."""
    import alerts.consumers as consumers

    monkeypatch.setattr(consumers, "SESSION_RECHECK_S", 0.0)  # every update checks (production: every 5 s)
    session = await sync_to_async(signed_in)(technician)
    communicator = await connect(technician, session)
    alert = await database_sync_to_async(make_alert)(asset, champion)
    await changed(asset.site, alert.pk)
    assert "alert-%d" % alert.pk in await communicator.receive_from(timeout=2)

    await sync_to_async(session.delete)()  # what logout does
    await changed(asset.site, alert.pk)
    closed = await communicator.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4401}

    def new_password() -> None:
        technician.set_password("another-long-passphrase-42")
        technician.save()

    again = await connect(technician)
    await sync_to_async(new_password)()  # every session made with the old password ends
    await changed(asset.site, alert.pk)
    assert await again.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_a_quiet_board_is_closed_at_its_next_presence_refresh_after_logout(technician, monkeypatch):
    import alerts.consumers as consumers

    monkeypatch.setattr(consumers, "BOARD_CLIENT_REFRESH_S", 0.05)
    monkeypatch.setattr(consumers, "SESSION_RECHECK_S", 0.0)
    session = await sync_to_async(signed_in)(technician)
    communicator = await connect(technician, session)
    assert await communicator.receive_nothing(timeout=0.2)  # still signed in: nothing happens
    await sync_to_async(session.delete)()
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_frames_from_the_browser_are_ignored_and_the_board_keeps_streaming(technician, asset, champion):
    communicator = await connect(technician)
    hostile = ["not json", "[1, 2]", "null", '{"type": "alerts.changed", "ids": [1]}', "\x00" * 64]
    for text in [*hostile, "x" * 1_000_000, *["flood"] * 500]:
        await communicator.send_to(text_data=text)
    await communicator.send_to(bytes_data=b"\x00\xff" * 1000)
    assert await communicator.receive_nothing(timeout=0.3)

    alert = await database_sync_to_async(make_alert)(asset, champion)
    await changed(asset.site, alert.pk)
    assert f'id="alert-{alert.pk}"' in await communicator.receive_from(timeout=2)
    await communicator.disconnect()


async def test_ids_that_cannot_be_an_alerts_are_left_out_of_an_update(technician, asset, champion):
    communicator = await connect(technician)
    alert = await database_sync_to_async(make_alert)(asset, champion)
    layer = get_channel_layer()
    group = f"site-{asset.site.pk}"
    # A string is not a list of ids (it was read digit by digit), nor is a number or a mapping.
    for ids in (str(alert.pk), alert.pk, {str(alert.pk): 1}, None):
        await layer.group_send(group, {"type": "alerts.changed", "ids": ids})
    assert await communicator.receive_nothing(timeout=0.3)

    # Past the database's integers (an OverflowError that ended the socket), negative, not a number.
    await changed(asset.site, 10**30, 2**63, -1, "x", None, [1], True, alert.pk)
    assert f'id="alert-{alert.pk}"' in await communicator.receive_from(timeout=2)
    await changed(asset.site, alert.pk)
    assert f'id="alert-{alert.pk}"' in await communicator.receive_from(timeout=2)
    await communicator.disconnect()
