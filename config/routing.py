"""WebSocket routes of every app, collected in one list for the ASGI router."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from alerts.routing import websocket_urlpatterns as alerts_websockets

CLOSE_NOT_FOUND = 4404


class NoSuchSocket(AsyncWebsocketConsumer):
    """A socket to a path no route has: refused with 4404, as a page that does not exist is a 404 (without
    it the router raised "No route found for path", a 500 and a traceback in the server's log). It joins
    no group and receives nothing, so it takes no channel layer: with one, a consumer's channel receive
    reaches Redis, and while Redis was down the path was refused as a broker outage (503) instead."""

    channel_layer_alias = None  # no such layer: channels gives the consumer none

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)


websocket_urlpatterns: list = [*alerts_websockets, re_path(r"", NoSuchSocket.as_asgi())]
