"""WebSocket routes of the alerts app."""

from __future__ import annotations

from django.urls import path

from alerts.consumers import AlertBoardConsumer

websocket_urlpatterns = [path("ws/alerts/", AlertBoardConsumer.as_asgi())]
