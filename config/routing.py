"""WebSocket routes of every app, collected in one list for the ASGI router."""

from __future__ import annotations

from alerts.routing import websocket_urlpatterns as alerts_websockets

websocket_urlpatterns: list = [*alerts_websockets]
