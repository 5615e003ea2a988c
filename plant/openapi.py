"""The OpenAPI 3.1 document of the gateway API, and of the metrics API through the part alerts hands in
(alerts.metrics.openapi), written by hand so that it says exactly what the code does (tests/plant/test_ingest_api.py validates it and checks real answers against it)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in words a person can act on."},
        "param": {"type": "string", "description": "The query parameter at fault (metrics API)."},
    },
}


def error_response(description: str, example: str, param: str | None = None) -> dict:
    body = {"error": example, **({"param": param} if param else {})}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": body}},
    }


# config.middleware.DatabaseUnavailableMiddleware answers every API path so while the database is down.
UNAVAILABLE = {
    **error_response(
        "The database is temporarily unavailable (e.g. restarting); nothing was stored. Retry after the "
        "number of seconds in Retry-After.",
        "the database is temporarily unavailable: retry in 5 s",
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


# Parts of the document that other apps own (the metrics API is alerts'): each returns (paths, component
# schemas), or (paths, schemas, extras) whose extras may hold "webhooks" (OpenAPI 3.1: requests Vigil
# sends) and "securitySchemes". Registered from their AppConfig.ready() with provide_openapi_part, since
# plant is the lowest app.
_PARTS: list[Callable[[], tuple[dict, ...]]] = []


def provide_openapi_part(part: Callable[[], tuple[dict, ...]]) -> None:
    """Add an app's paths and schemas to the document (idempotent per callable)."""
    if part not in _PARTS:
        _PARTS.append(part)


def build_openapi(server_url: str = "/") -> dict:
    """The document for the current settings (limits are read at call time)."""
    max_readings = settings.VIGIL_INGEST_MAX_READINGS
    max_bytes = settings.VIGIL_INGEST_MAX_BODY_BYTES
    max_future = settings.VIGIL_INGEST_MAX_FUTURE_S
    max_age_days = settings.VIGIL_INGEST_MAX_AGE_DAYS
    parts = [part() for part in _PARTS]
    extra_paths = {path: item for paths, _schemas, *_ in parts for path, item in paths.items()}
    extra_schemas = {name: schema for _paths, schemas, *_ in parts for name, schema in schemas.items()}
    extras = [part[2] for part in parts if len(part) > 2]
    webhooks = {name: item for extra in extras for name, item in extra.get("webhooks", {}).items()}
    schemes = {name: item for extra in extras for name, item in extra.get("securitySchemes", {}).items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil gateway and metrics API",
            "version": "1.0.0",
            "description": (
                "Gateways send sensor readings in batches. Each gateway has a bearer token issued by an "
                "engineer and may write readings only for the sensors of its own site. Valid rows of a "
                "batch are stored even when other rows are rejected; re-sending a batch stores nothing "
                "twice. Engineers read the alert metrics with their web session (/api/v1/metrics). "
                "Human docs: /api/docs/."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"gatewayToken": []}],
        "paths": {
            "/api/v1/readings": {
                "post": {
                    "operationId": "postReadings",
                    "summary": "Send a batch of readings",
                    "description": (
                        f"At most {max_readings} readings and {max_bytes} bytes per request. "
                        "`ts` is ISO 8601 "
                        "with a UTC offset (`Z` or `+02:00`) or epoch seconds; a timestamp more than "
                        f"{max_future:g} s in the future or more than {max_age_days} days in the past "
                        "(VIGIL_INGEST_MAX_AGE_DAYS) is rejected. Each stored reading gets data-quality "
                        "flags (out of range, spike, stuck, gap)."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ReadingBatch"},
                                "example": {
                                    "readings": [
                                        {
                                            "sensor": "north.p-101.vibration",
                                            "ts": "2026-01-05T08:00:00Z",
                                            "value": 2.31,
                                        },
                                        {
                                            "sensor": "north.p-101.vibration",
                                            "ts": "2026-01-05T10:00:01+02:00",
                                            "value": 2.35,
                                        },
                                        {"sensor": "north.p-101.current", "ts": 1767600000, "value": 11.8},
                                    ]
                                },
                            },
                            "text/csv": {
                                "schema": {
                                    "type": "string",
                                    "description": "Header `sensor,ts,value`, then one reading per line.",
                                },
                                "example": (
                                    "sensor,ts,value\n"
                                    "north.p-101.vibration,2026-01-05T08:00:00Z,2.31\n"
                                    "north.p-101.current,1767600000,11.8\n"
                                ),
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The batch was processed; see which rows were stored or rejected.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/IngestResult"},
                                    "example": {
                                        "accepted": 2,
                                        "duplicates": 0,
                                        "rejected": [
                                            {"index": 2, "error": "unknown sensor: 'north.p-999.flow'"}
                                        ],
                                    },
                                }
                            },
                        },
                        "400": error_response(
                            "The body is not JSON/CSV of the documented shape.",
                            "JSON body has no 'readings' field",
                        ),
                        "401": error_response(
                            "Missing, malformed, unknown or revoked token.",
                            "invalid or revoked gateway token",
                        ),
                        "405": error_response("Only POST is allowed.", "method GET not allowed: use POST"),
                        "413": error_response(
                            "Too many readings or too many bytes in one request.",
                            f"too many readings: {max_readings + 1} in one request,"
                            f" the limit is {max_readings}",
                        ),
                        "415": error_response(
                            "Content type other than application/json or text/csv (multipart and form "
                            "bodies included).",
                            "unsupported content type 'text/plain': send application/json or text/csv",
                        ),
                        "503": UNAVAILABLE,
                    },
                }
            },
            **extra_paths,
        },
        **({"webhooks": webhooks} if webhooks else {}),
        "components": {
            "securitySchemes": {
                "gatewayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The gateway token shown once when an engineer issues or rotates it.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.SESSION_COOKIE_NAME,
                    "description": "The session of a web login (/accounts/login/) as an engineer or supervisor.",
                },
                **schemes,
            },
            "schemas": {
                "Reading": {
                    "type": "object",
                    "required": ["sensor", "ts", "value"],
                    "properties": {
                        "sensor": {
                            "type": "string",
                            "description": "The sensor key.",
                            "examples": ["north.p-101.vibration"],
                        },
                        "ts": {
                            "oneOf": [
                                {
                                    "type": "string",
                                    "format": "date-time",
                                    "description": "ISO 8601 with an offset.",
                                },
                                {"type": "number", "description": "Seconds since 1970-01-01T00:00:00Z."},
                            ]
                        },
                        "value": {
                            "type": "number",
                            "description": "A finite number (not NaN, not infinite, not a boolean).",
                        },
                        "status": {
                            "type": "string",
                            "enum": ["good", "uncertain", "bad"],
                            "default": "good",
                            "description": (
                                "Optional: what the source said of the value (an OPC UA status, as an edge "
                                "agent forwards it). 'uncertain' and 'bad' are stored with the quality flag "
                                "'source uncertain' / 'source bad': shown on the charts, never scored. JSON "
                                "only."
                            ),
                        },
                        "continues": {
                            "oneOf": [
                                {"type": "string", "format": "date-time"},
                                {"type": "number"},
                                {"type": "null"},
                            ],
                            "description": (
                                "Optional, as `ts` and before it: the time of this sensor's earlier reading "
                                "that this one carries on unchanged, as the source stated (an OPC UA value "
                                "read as current when the session started, held since; the edge agent sends "
                                "it). No data gap is flagged between the two. Absent or null: none. JSON only."
                            ),
                        },
                    },
                },
                "ReadingBatch": {
                    "type": "object",
                    "required": ["readings"],
                    "properties": {
                        "readings": {
                            "type": "array",
                            "maxItems": max_readings,
                            "items": {"$ref": "#/components/schemas/Reading"},
                        }
                    },
                },
                "RejectedRow": {
                    "type": "object",
                    "required": ["index", "error"],
                    "properties": {
                        "index": {
                            "type": "integer",
                            "description": "0-based position of the row in the batch.",
                        },
                        "error": {
                            "type": "string",
                            "description": (
                                "unknown sensor (also for a sensor of another site: the answer does not "
                                "tell whether a key exists elsewhere), sensor key with a NUL character or "
                                "invalid UTF-8, value not a number or not finite, timestamp unparseable / "
                                "without offset / out of range / in the future / older than the age limit, "
                                "CSV row without 3 fields or not valid CSV, missing field, status not one of "
                                "its words, continues not a time before ts."
                            ),
                            "examples": [
                                "unknown sensor: 'north.p-999.flow'",
                                f"timestamp is more than {max_age_days} days in the past",
                            ],
                        },
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["accepted", "duplicates", "rejected"],
                    "properties": {
                        "accepted": {"type": "integer", "description": "Readings stored by this request."},
                        "duplicates": {
                            "type": "integer",
                            "description": "Readings already stored, or repeated in the batch (stored once).",
                        },
                        "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/RejectedRow"}},
                    },
                },
                "Error": _ERROR,
                **extra_schemas,
            },
        },
    }
