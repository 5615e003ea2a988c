"""Route the simulator client's HTTP requests to a handler in the test (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from django.test import Client

from plant import simulator_client


def route_simulator_client(monkeypatch, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    """Every client simulator_client.http_client builds from now on sends its requests to `handler`
    (its base URL, token header and timeout stay the real client's)."""
    real_client = simulator_client.http_client

    def client_with_mock_transport(base_url: str, token: str, timeout_s: float = 30.0) -> httpx.Client:
        client = real_client(base_url, token, timeout_s)
        client._transport = httpx.MockTransport(handler)
        return client

    monkeypatch.setattr(simulator_client, "http_client", client_with_mock_transport)


def django_ingest(paths: list[str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A handler that posts each request into the real Django view (ingestion, quality flags and all);
    appends each request's path to ``paths`` if given."""
    django_client = Client()

    def handler(request: httpx.Request) -> httpx.Response:
        if paths is not None:
            paths.append(request.url.path)
        response = django_client.post(
            request.url.path,
            data=request.content,
            content_type="application/json",
            headers={"Authorization": request.headers["Authorization"]},
        )
        return httpx.Response(response.status_code, content=response.content)

    return handler
