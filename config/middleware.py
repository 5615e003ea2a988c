"""Site-wide middleware: a database outage answers 503 with Retry-After instead of a 500 page, a login
redirect sends the browser back to the page the person was on, not to the URL of a button they pressed, and
a 405 says which methods the URL takes."""

from __future__ import annotations

import logging

from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

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


def _page_path(request: HttpRequest, url: str) -> str:
    """The path and query of `url` if it is a page of this site, else the page a login leads to."""
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return resolve_url(settings.LOGIN_REDIRECT_URL)


class LoginRedirectMiddleware:
    """A session that expired while a page was open: `login_required` redirects the request to the login
    page with ``next`` = the request's own URL. For a button (a POST, or an htmx request) that URL is the
    wrong place to come back to: a POST-only view answers GET with 405, and htmx would follow the redirect
    and swap the login page into the card. So the login redirect names the page the person was on
    (htmx's HX-Current-URL, or the form's Referer) and, for htmx, makes the whole page go there."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)

        htmx = request.headers.get("HX-Request") == "true"
        if not (htmx or request.method == "POST") or response.status_code not in (301, 302):
            return response
        login, target = resolve_url(settings.LOGIN_URL), urlsplit(response.get("Location", ""))
        # login_required's redirect carries ?next=; a logout's redirect to the login page does not.
        if target.path != login or REDIRECT_FIELD_NAME not in parse_qs(target.query):
            return response
        page = request.headers.get("HX-Current-URL", "") if htmx else request.headers.get("Referer", "")
        redirect = redirect_to_login(_page_path(request, page), login)
        return HttpResponseClientRedirect(redirect["Location"]) if htmx else redirect


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
