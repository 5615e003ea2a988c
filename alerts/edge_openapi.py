"""The OpenAPI part of the edge agent's endpoints (handed to plant.openapi from AlertsConfig.ready()):
POST /api/v1/edge/events (alerts.api.edge_events) and POST /api/v1/edge/heartbeat (plant.api), both with
the gateway's bearer token."""

from __future__ import annotations

from alerts.services.edge_events import KINDS, MAX_EVENTS
from plant.openapi import UNAVAILABLE, error_response

_UNAUTHORIZED = error_response(
    "Missing, malformed, unknown or revoked token.", "invalid or revoked gateway token"
)


def edge_paths() -> dict:
    return {
        "/api/v1/edge/events": {
            "post": {
                "operationId": "postEdgeEvents",
                "summary": "Record alerts an edge agent decided locally",
                "description": (
                    f"At most {MAX_EVENTS} events per request. Each event is recorded at most once per gateway "
                    "and `key` (a resent event answers `duplicate`). `opened` opens the asset's alert with the "
                    "agent's times, or merges into the alert the server already has for the same condition; "
                    "`cleared` auto-closes the live alert it opened. Times are epoch seconds. A wrong event is "
                    "`rejected` with its reason; the others are kept."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EdgeEventBatch"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "One result per event.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/EdgeEventResults"}}
                        },
                    },
                    "400": error_response(
                        "The body is not a JSON object with an events list.", "body is not valid JSON"
                    ),
                    "401": _UNAUTHORIZED,
                    "413": error_response(
                        "Too many events.", f"too many events in one request: {MAX_EVENTS + 1}"
                    ),
                    "415": error_response("Not application/json.", "unsupported content type 'text/plain'"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/v1/edge/heartbeat": {
            "post": {
                "operationId": "postEdgeHeartbeat",
                "summary": "An edge agent's heartbeat: its queue, drops and models",
                "description": (
                    "Recorded as the gateway's edge agent status (last contact, queue depth, oldest unsent "
                    "item, bytes used, readings dropped); each reported drop is stored once."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EdgeHeartbeat"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "Recorded.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": error_response(
                        "A field is missing or wrong; the message names it.",
                        "drops[0].count must be a positive integer",
                    ),
                    "401": _UNAUTHORIZED,
                    "503": UNAVAILABLE,
                },
            }
        },
    }


def _rollout_paths() -> dict:
    """The model-update endpoints (models_registry.edge_api)."""
    posted = {
        "400": error_response(
            "A field is missing or wrong; the message names it.",
            "reports[0].windows must be a non-negative integer",
        ),
        "401": _UNAUTHORIZED,
        "503": UNAVAILABLE,
    }
    results = {
        "description": "One result per item: the assignment id and its stage now.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "/api/v1/edge/assignments": {
            "get": {
                "operationId": "getEdgeAssignments",
                "summary": "What each asset's agent should run",
                "description": "Per asset of the gateway's site, the newest assignment in shadow, approved or active: the bundle's sha256, the server's Ed25519 signature over `vigil-bundle:<asset>:<sha256>` (hex), the stage and the download URL.",
                "responses": {
                    "200": {
                        "description": "The assignments.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _UNAUTHORIZED,
                },
            }
        },
        "/api/v1/edge/bundles/{id}": {
            "get": {
                "operationId": "getEdgeBundle",
                "summary": "Download an assigned bundle (zip)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "200": {
                        "description": "The bundle bytes.",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "404": error_response(
                        "No such assignment for this gateway's site.",
                        "no assignment 7 for this gateway's site",
                    ),
                },
            }
        },
        "/api/v1/edge/shadow-reports": {
            "post": {
                "operationId": "postEdgeShadowReports",
                "summary": "Report shadow trials of assigned models",
                "description": '`{"reports": [{id, windows, alerts_current, alerts_candidate, score_correlation}]}`; an assignment made with auto-approval is approved when the trial is within the policy\'s bounds (VIGIL_EDGE_SHADOW_*).',
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": results, **posted},
            }
        },
        "/api/v1/edge/outcomes": {
            "post": {
                "operationId": "postEdgeOutcomes",
                "summary": "Report what the agent did with an assignment",
                "description": '`{"outcomes": [{id, outcome: active|refused|rolled_back, reason}]}`.',
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": results, **posted},
            }
        },
    }


def edge_schemas() -> dict:
    epoch = {"type": "number", "description": "Seconds since 1970-01-01T00:00:00Z."}
    return {
        "EdgeEvent": {
            "type": "object",
            "required": ["key", "kind", "asset", "at", "first", "peak_at", "peak_score", "model_sha256"],
            "properties": {
                "key": {"type": "string", "maxLength": 200, "description": "Idempotency key."},
                "kind": {"type": "string", "enum": list(KINDS)},
                "asset": {"type": "string", "description": "Asset tag on the gateway's site."},
                "at": {**epoch, "description": "End of the window that decided it."},
                "first": {**epoch, "description": "End of the first of the opening windows."},
                "peak_at": epoch,
                "peak_score": {"type": "number"},
                "level": {"type": "integer"},
                "model_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
        "EdgeEventBatch": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/EdgeEvent"}}},
        },
        "EdgeEventResults": {
            "type": "object",
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "key": {"type": ["string", "null"]},
                            "outcome": {
                                "type": "string",
                                "enum": ["opened", "merged", "closed", "noted", "duplicate", "rejected"],
                            },
                            "alert": {"type": ["integer", "null"]},
                            "error": {"type": "string"},
                        },
                    },
                }
            },
        },
        "EdgeHeartbeat": {
            "type": "object",
            "required": ["drops"],
            "properties": {
                "agent_version": {"type": "string"},
                "models": {"type": "object", "additionalProperties": {"type": "string"}},
                "queue": {
                    "type": "object",
                    "properties": {
                        "readings": {"type": "integer"},
                        "events": {"type": "integer"},
                        "oldest_ts": epoch,
                        "bytes_used": {"type": "integer"},
                        "max_bytes": {"type": "integer"},
                        "dropped_total": {"type": "integer"},
                    },
                },
                "local_alerts_24h": {"type": "integer"},
                "drops": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["at", "count", "first_ts", "last_ts"],
                        "properties": {
                            "at": epoch,
                            "count": {"type": "integer"},
                            "first_ts": epoch,
                            "last_ts": epoch,
                        },
                    },
                },
            },
        },
    }


def edge_part() -> tuple[dict, dict]:
    """The edge endpoints' (paths, component schemas) for plant.openapi.build_openapi."""
    return {**edge_paths(), **_rollout_paths()}, edge_schemas()
