"""WebSocket routes of every app, collected in one list for the ASGI router."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from alerts.routing import websocket_urlpatterns as alerts_websockets

CLOSE_NOT_FOUND = 4404


class NoSuchSocket(AsyncWebsocketConsumer):
    """A socket to a path no route has: refused with 4404, as a page that does not exist is a 404 (without
    it the router raised "No route found for path", a 500 and a traceback in the server's log)."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)


websocket_urlpatterns: list = [*alerts_websockets, re_path(r"", NoSuchSocket.as_asgi())]
