"""Site-wide middleware: a database outage answers 503 with Retry-After instead of a 500 page, and a 405 says
which methods the URL takes."""

from __future__ import annotations

import logging

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying; a PostgreSQL restart takes a few seconds.
RETRY_AFTER_S = 5
_PAGE = (
    '<!doctype html><html lang="en"><head><title>Temporarily unavailable</title></head><body>'
    "<h1>Vigil is temporarily unavailable</h1><p>The database cannot be reached. This page will work again "
    f"in a moment: reload it in {RETRY_AFTER_S} seconds.</p></body></html>"
)


def _is_outage(exception: Exception) -> bool:
    """A lost or refused database connection: Django's wrappers, or the driver's own errors that reach a
    view unwrapped (e.g. psycopg's COPY, which Django's cursor wrapper passes through)."""
    if isinstance(exception, (OperationalError, InterfaceError)):
        return True
    if not isinstance(exception, Exception) or isinstance(exception, DatabaseError):
        return False
    return any(
        isinstance(exception, (conn.Database.OperationalError, conn.Database.InterfaceError))
        for conn in connections.all(initialized_only=True)
    )


class DatabaseUnavailableMiddleware:
    """Turn database connection errors raised by any view into a 503 with a Retry-After header: JSON
    `{"error": ...}` under /api/, a short page elsewhere. Other exceptions are left to Django."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_outage(exception):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if request.path_info.startswith("/api/"):
            message = f"the database is temporarily unavailable: retry in {RETRY_AFTER_S} s"
            return JsonResponse({"error": message}, status=503, headers=headers)
        return HttpResponse(_PAGE, status=503, headers=headers)


class MethodNotAllowedMiddleware:
    """Give an empty 405 (Django's ``require_GET``/``require_POST`` and class-based views answer one with
    only an Allow header) a body that names the method and the allowed ones, in the words the API's own
    405s use: JSON ``{"error": ...}`` under /api/, plain text elsewhere."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or response.streaming or response.content:
            return response
        allowed = ", ".join(m.strip() for m in response.get("Allow", "").split(",") if m.strip())
        message = f"method {request.method} not allowed: use {allowed or 'another method'}"
        headers = {"Allow": response["Allow"]} if response.has_header("Allow") else {}
        if request.path_info.startswith("/api/"):
            return JsonResponse({"error": message}, status=405, headers=headers)
        return HttpResponse(message, status=405, headers=headers, content_type="text/plain; charset=utf-8")
