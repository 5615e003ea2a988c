"""WebSocket routes of every app, collected in one list for the ASGI router."""

from __future__ import annotations

websocket_urlpatterns: list = []
