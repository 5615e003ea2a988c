"""Broadcast: ids go to the site's group after commit, never for shadows, throttled in storms, never raising."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from alerts import broadcast
from alerts.broadcast import broadcast_alerts
from alerts.models import Alert
from tests.alerts.conftest import OPEN, window_end
from tests.conftest import make_asset


def make_alerts(asset, version, count: int, **fields) -> list[int]:
    rows = [
        Alert(
            asset=asset,
            model_version=version,
            kind=version.kind,
            state=fields.get("state", "resolved"),
            is_shadow=fields.get("is_shadow", False),
            opened_at=window_end(i),
            first_window_start=window_end(i),
            last_seen_at=window_end(i),
            peak_score=OPEN,
            peak_window_end=window_end(i),
        )
        for i in range(count)
    ]
    Alert.objects.bulk_create(rows)
    return list(Alert.objects.filter(asset=asset).order_by("pk").values_list("pk", flat=True))


def listen(site) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"site-{site.pk}", channel)
    return channel


def drain(channel: str) -> list[dict]:
    layer = get_channel_layer()

    async def collect() -> list[dict]:
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), timeout=0.05))
            except TimeoutError:
                return messages

    return async_to_sync(collect)()


def test_ids_go_to_each_sites_group_after_commit(
    asset, other_asset, champion, django_capture_on_commit_callbacks
):
    mine = make_alerts(asset, champion, 2)
    theirs = make_alerts(other_asset, champion, 1)
    north, south = listen(asset.site), listen(other_asset.site)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        broadcast_alerts(mine + theirs)
    assert drain(north) == [] and len(callbacks) == 1  # nothing leaves before the commit
    callbacks[0]()
    assert drain(north) == [{"type": "alerts.changed", "ids": mine}]
    assert drain(south) == [{"type": "alerts.changed", "ids": theirs}]


def test_shadow_alerts_are_never_broadcast(asset, champion, django_capture_on_commit_callbacks):
    shadow_ids = make_alerts(asset, champion, 3, is_shadow=True)
    channel = listen(asset.site)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        broadcast_alerts(shadow_ids)
    assert callbacks == [] and drain(channel) == []


def test_a_storm_is_throttled_to_bounded_messages_and_every_id_arrives(
    asset, champion, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_BROADCAST_MAX_PER_SECOND = 5
    ids = make_alerts(asset, champion, 60)
    channel = listen(asset.site)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        for pk in ids:
            broadcast_alerts([pk])
    burst = drain(channel)
    assert time.monotonic() - started < 1.0  # the burst itself was not slowed down
    assert len(burst) == 5
    time.sleep(1.1)
    later = drain(channel)
    assert len(later) == 1  # everything over the limit coalesced into one message
    delivered = [pk for message in burst + later for pk in message["ids"]]
    assert sorted(delivered) == ids


def test_flush_pending_sends_buffered_ids_at_once(
    asset, champion, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_BROADCAST_MAX_PER_SECOND = 1
    ids = make_alerts(asset, champion, 4)
    channel = listen(asset.site)
    with django_capture_on_commit_callbacks(execute=True):
        for pk in ids:
            broadcast_alerts([pk])
    broadcast.flush_pending()
    messages = drain(channel)
    assert [m["ids"] for m in messages] == [ids[:1], ids[1:]]


def test_a_broken_channel_layer_is_logged_not_raised(
    asset, champion, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: Broken())
    ids = make_alerts(asset, champion, 1)
    with caplog.at_level(logging.WARNING, logger="alerts.broadcast"):
        with django_capture_on_commit_callbacks(execute=True):
            broadcast_alerts(ids)
    assert "failed" in caplog.text


def test_an_unreachable_redis_channel_layer_does_not_raise(
    asset, champion, settings, django_capture_on_commit_callbacks
):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    ids = make_alerts(asset, champion, 1)
    with django_capture_on_commit_callbacks(execute=True):
        broadcast_alerts(ids)


@pytest.mark.parametrize("ids", [[], [987654]])
def test_nothing_is_sent_for_no_or_unknown_ids(ids, asset, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        broadcast_alerts(ids)
    assert callbacks == []


def test_alerts_of_several_assets_of_one_site_share_one_message(
    asset, champion, django_capture_on_commit_callbacks
):
    second = make_asset(asset.site, tag="p-102", asset_type=asset.asset_type)
    ids = make_alerts(asset, champion, 1) + make_alerts(second, champion, 1)
    channel = listen(asset.site)
    with django_capture_on_commit_callbacks(execute=True):
        broadcast_alerts(ids)
    assert [m["ids"] for m in drain(channel)] == [ids]
