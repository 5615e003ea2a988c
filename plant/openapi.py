"""The OpenAPI 3.1 document of the gateway API, written by hand so that it says exactly what the code does."""

from __future__ import annotations

from django.conf import settings

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in words a person can act on."}
    },
}


def _error_response(description: str, example: str) -> dict:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"error": example},
            }
        },
    }


def build_openapi(server_url: str = "/") -> dict:
    """The document for the current settings (limits are read at call time)."""
    max_readings = settings.VIGIL_INGEST_MAX_READINGS
    max_bytes = settings.VIGIL_INGEST_MAX_BODY_BYTES
    max_future = settings.VIGIL_INGEST_MAX_FUTURE_S
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil gateway API",
            "version": "1.0.0",
            "description": (
                "Gateways send sensor readings in batches. Each gateway has a bearer token issued by an "
                "engineer and may write readings only for the sensors of its own site. Valid rows of a "
                "batch are stored even when other rows are rejected; re-sending a batch stores nothing "
                "twice. Human docs: /api/docs/."
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
                        f"{max_future:g} s in the future is rejected. Each stored reading gets data-quality "
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
                        "400": _error_response(
                            "The body is not JSON/CSV of the documented shape.",
                            "JSON body has no 'readings' field",
                        ),
                        "401": _error_response(
                            "Missing, malformed, unknown or revoked token.",
                            "invalid or revoked gateway token",
                        ),
                        "405": _error_response("Only POST is allowed.", "method GET not allowed: use POST"),
                        "413": _error_response(
                            "Too many readings or too many bytes in one request.",
                            f"too many readings: {max_readings + 1} in one request,"
                            f" the limit is {max_readings}",
                        ),
                        "415": _error_response(
                            "Content type other than application/json or text/csv.",
                            "unsupported content type 'text/plain': send application/json or text/csv",
                        ),
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {
                "gatewayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The gateway token shown once when an engineer issues or rotates it.",
                }
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
                                "unknown sensor, sensor of another site, value not a number or not finite, "
                                "timestamp unparseable / without offset / out of range / in the future, "
                                "missing field."
                            ),
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
            },
        },
    }
