"""The gateway HTTP API: POST /api/v1/readings, its OpenAPI document and its human docs page.

Every answer is JSON; every error is `{"error": "..."}` with a 4xx status, never a traceback (a 503 with
Retry-After while the database is unavailable: config.middleware.DatabaseUnavailableMiddleware).
"""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from plant.edge_agents import EdgeReportError, record_heartbeat
from plant.ingest import BatchError, ingest_readings, parse_csv, parse_json
from plant.models import Gateway
from plant.openapi import build_openapi

JSON_TYPES = {"application/json"}
CSV_TYPES = {"text/csv", "application/csv"}


def api_json(payload: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


def api_error(message: str, status: int, headers: dict | None = None) -> HttpResponse:
    return api_json({"error": message}, status=status, headers=headers)


def bearer_token(request: HttpRequest, what: str, realm: str = "vigil") -> str | HttpResponse:
    """The request's bearer token, or the 401 answer saying the header is missing or malformed (``what``
    names the token in it: "gateway token")."""
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}"'}
    header = request.headers.get("Authorization", "")
    if not header:
        return api_error(
            f"missing Authorization header: send 'Authorization: Bearer <{what}>'", 401, challenge
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return api_error(f"malformed Authorization header: expected 'Bearer <{what}>'", 401, challenge)
    return token


def authenticate(request: HttpRequest) -> Gateway | HttpResponse:
    """The gateway of the request's bearer token, or the 401 answer that explains what is wrong."""
    token = bearer_token(request, "gateway token")
    if isinstance(token, HttpResponse):
        return token
    gateway = Gateway.authenticate(token)
    if gateway is None:
        return api_error(
            "invalid or revoked gateway token", 401, {"WWW-Authenticate": 'Bearer realm="vigil"'}
        )
    return gateway


def gateway_request(request: HttpRequest, empty_hint: str) -> tuple[Gateway, bytes] | HttpResponse:
    """A gateway's POST: its gateway and body, or the 4xx answer (method, token, size, empty body) that
    says what is wrong. The readings API and the edge agent's endpoints share it."""
    if request.method != "POST":
        return api_error(f"method {request.method} not allowed: use POST", 405, {"Allow": "POST"})
    gateway = authenticate(request)
    if isinstance(gateway, HttpResponse):
        return gateway

    max_bytes = settings.VIGIL_INGEST_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return api_error("invalid Content-Length header", 400)
    if declared > max_bytes:
        return api_error(f"body too large: {declared} bytes, the limit is {max_bytes}", 413)
    try:
        body = request.body
    except RequestDataTooBig:
        return api_error(f"body too large: the limit is {max_bytes} bytes", 413)
    if len(body) > max_bytes:
        return api_error(f"body too large: {len(body)} bytes, the limit is {max_bytes}", 413)
    if not body.strip():
        return api_error(f"empty body: {empty_hint}", 400)
    return gateway, body


def gateway_json(request: HttpRequest, key: str) -> tuple[Gateway, dict] | HttpResponse:
    """A gateway's JSON POST whose body is an object with a ``key`` list: (gateway, object) or the 4xx."""
    checked = gateway_request(request, f"send a JSON object with a {key!r} list")
    if isinstance(checked, HttpResponse):
        return checked
    gateway, body = checked
    if (request.content_type or "").lower() not in JSON_TYPES:
        return api_error(f"unsupported content type {request.content_type!r}: send application/json", 415)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return api_error(f"body is not valid JSON: {exc}", 400)
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        return api_error(f"expected a JSON object with a {key!r} list", 400)
    return gateway, payload


@csrf_exempt
def post_readings(request: HttpRequest) -> HttpResponse:
    """Authenticate the gateway, check the size, parse the body, ingest it and report per-row results."""
    checked = gateway_request(request, "send a JSON object with a 'readings' list, or CSV with a header")
    if isinstance(checked, HttpResponse):
        return checked
    gateway, body = checked
    content_type = (request.content_type or "").lower()
    if content_type in JSON_TYPES:
        parse = parse_json
    elif content_type in CSV_TYPES:
        parse = parse_csv
    else:
        return api_error(f"unsupported content type {content_type!r}: send application/json or text/csv", 415)
    try:
        batch = parse(body, settings.VIGIL_INGEST_MAX_READINGS)
    except BatchError as exc:
        return api_error(exc.message, exc.status)

    # One transaction for the readings and the gateway's last-seen time: one commit (WAL flush) per request.
    with transaction.atomic():
        result = ingest_readings(gateway.site, batch)
        Gateway.objects.filter(pk=gateway.pk).update(last_seen_at=timezone.now())
    return api_json(result.as_dict())


@require_GET
def openapi_json(request: HttpRequest) -> HttpResponse:
    return api_json(build_openapi(request.build_absolute_uri("/")))


@require_GET
def api_docs(request: HttpRequest) -> HttpResponse:
    base = request.build_absolute_uri("/").rstrip("/")
    context = {
        "base_url": base,
        "max_readings": settings.VIGIL_INGEST_MAX_READINGS,
        "max_body_bytes": settings.VIGIL_INGEST_MAX_BODY_BYTES,
        "max_body_mib": settings.VIGIL_INGEST_MAX_BODY_BYTES / (1024 * 1024),
        "max_future_s": settings.VIGIL_INGEST_MAX_FUTURE_S,
        "max_age_days": settings.VIGIL_INGEST_MAX_AGE_DAYS,
    }
    return render(request, "plant/api_docs.html", context)


@csrf_exempt
def post_edge_heartbeat(request: HttpRequest) -> HttpResponse:
    """An edge agent's heartbeat (plant.edge_agents): queue depth, oldest unsent item, drops, models."""
    checked = gateway_json(request, "drops")
    if isinstance(checked, HttpResponse):
        return checked
    gateway, payload = checked
    try:
        return api_json(record_heartbeat(gateway, payload))
    except EdgeReportError as exc:
        return api_error(str(exc), 400)
