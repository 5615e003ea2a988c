"""The OpenAPI part of hand-off (handed to plant.openapi from HandoffConfig.ready()): the CMMS's outcome
webhook POST /api/v1/work-orders/{id}/outcome, and under ``webhooks`` the signed event Vigil POSTs to
each endpoint (``WebhookEvent``)."""

from __future__ import annotations

from alerts.choices import AlertCategory
from handoff.api import MAX_BODY_BYTES
from handoff.choices import EventType, WorkOrderOutcome, WorkOrderStatus
from handoff.signing import DEFAULT_REPLAY_WINDOW_S, SIGNATURE_HEADER
from plant.openapi import UNAVAILABLE, error_response

_STATES = ["open", "acknowledged", "snoozed", "suppressed", "resolved", "auto_closed"]
_NULLABLE_STR = {"type": ["string", "null"]}


def _event_schema() -> dict:
    return {
        "type": "object",
        "required": ["id", "type", "created_at", "site", "alert", "change", "verdict"],
        "properties": {
            "id": {
                "type": "string",
                "format": "uuid",
                "description": "The event's id, also sent as the Idempotency-Key header: the same on every "
                "retry and redelivery. Process each id once.",
            },
            "type": {"type": "string", "enum": EventType.values},
            "created_at": {
                "type": "string",
                "format": "date-time",
                "description": "When the change happened.",
            },
            "site": {"type": "string", "description": "The site's slug."},
            "alert": {
                "type": "object",
                "required": ["id", "asset", "state", "severity", "link"],
                "properties": {
                    "id": {"type": "integer"},
                    "asset": {"type": "string", "description": "The asset's tag."},
                    "asset_name": {"type": "string"},
                    "kind": {"type": "string"},
                    "category": {"type": "string", "enum": AlertCategory.values},
                    "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
                    "state": {"type": "string", "enum": _STATES, "description": "After the change."},
                    "opened_at": {"type": "string", "format": "date-time"},
                    "closed_at": {"type": ["string", "null"], "format": "date-time"},
                    "link": {"type": "string", "format": "uri"},
                },
            },
            "change": {
                "type": "object",
                "required": ["to_state"],
                "properties": {
                    "from_state": {"type": ["string", "null"], "enum": [*_STATES, None]},
                    "to_state": {"type": "string", "enum": _STATES},
                    "by": {**_NULLABLE_STR, "description": "Username; null for the system or a CMMS."},
                    "reason": {"type": "string"},
                },
            },
            "verdict": {
                "type": ["object", "null"],
                "description": "For alert.verdict: the verdict now in force; null otherwise.",
                "properties": {
                    "verdict": {
                        "type": "string",
                        "enum": ["confirmed_fault", "false_alarm", "not_actionable"],
                    },
                    "action": _NULLABLE_STR,
                    "reason": _NULLABLE_STR,
                    "summary": {"type": "string"},
                    "note": {"type": "string"},
                    "by": _NULLABLE_STR,
                    "from_work_order": {
                        "type": "boolean",
                        "description": "Written by a work order's outcome.",
                    },
                    "corrects": {**_NULLABLE_STR, "description": "The verdict this one corrected, if any."},
                },
            },
        },
    }


def handoff_part() -> tuple[dict, dict, dict]:
    paths = {
        "/api/v1/work-orders/{id}/outcome": {
            "post": {
                "operationId": "postWorkOrderOutcome",
                "summary": "A CMMS reports what a work order found",
                "description": (
                    "Closes the work order and records its outcome as the alert's verdict: `done` → confirmed "
                    "fault, repaired (counts as acted on); `no_fault_found` → false alarm (correcting an "
                    "earlier confirmed fault); `cancelled` → no verdict. Sending the same outcome again "
                    "answers 200 and changes nothing. Authenticated with the site's CMMS token."
                ),
                "security": [{"cmmsToken": []}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/WorkOrderOutcomeReport"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The work order after the outcome.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/WorkOrder"}}
                        },
                    },
                    "400": error_response(
                        "Not JSON, not an object, or an unknown outcome.",
                        "unknown outcome 'fixed'; use one of: " + ", ".join(WorkOrderOutcome.values),
                    ),
                    "401": error_response("Missing, malformed or unknown token.", "invalid CMMS token"),
                    "404": error_response(
                        "No such work order on the token's site.",
                        "no work order #7 on the site of this CMMS token",
                    ),
                    "409": error_response(
                        "Already closed with another outcome.",
                        "work order #7 is already closed as done, with findings",
                    ),
                    "413": error_response(
                        "Body too large.", f"body too large: at most {MAX_BODY_BYTES} bytes"
                    ),
                    "503": UNAVAILABLE,
                },
            }
        }
    }
    schemas = {
        "WorkOrderOutcomeReport": {
            "type": "object",
            "required": ["outcome"],
            "properties": {
                "outcome": {"type": "string", "enum": WorkOrderOutcome.values},
                "findings": {
                    "type": ["string", "null"],
                    "description": "What was found or done (≤ 2000 chars).",
                },
            },
        },
        "WorkOrder": {
            "type": "object",
            "required": ["id", "alert", "status"],
            "properties": {
                "id": {"type": "integer"},
                "alert": {"type": "integer"},
                "status": {"type": "string", "enum": WorkOrderStatus.values},
                "outcome": {"type": ["string", "null"], "enum": [*WorkOrderOutcome.values, None]},
                "external_id": _NULLABLE_STR,
                "corrected": {**_NULLABLE_STR, "description": "The verdict the outcome corrected."},
                "verdict": {**_NULLABLE_STR, "description": "The verdict the outcome recorded."},
            },
        },
        "WebhookEvent": _event_schema(),
    }
    header = {
        SIGNATURE_HEADER: {
            "required": True,
            "schema": {
                "type": "string",
                "example": "t=1764912000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
            },
            "description": (
                "HMAC-SHA256 with the endpoint's secret over `<t>.<raw body>`, hex. Reject a `t` more than "
                f"{DEFAULT_REPLAY_WINDOW_S} s from your clock (replay window) and compare in constant time."
            ),
        },
        "Idempotency-Key": {
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
            "description": "The event's id: the same on every retry and redelivery.",
        },
        "Vigil-Event-Type": {"required": True, "schema": {"type": "string", "enum": EventType.values}},
    }
    webhooks = {
        "alertEvent": {
            "post": {
                "operationId": "alertEvent",
                "summary": "An alert changed state or got a verdict (sent to each of the site's endpoints)",
                "description": (
                    "Answer 2xx to acknowledge. Anything else (or no answer within the timeout) is retried "
                    "with exponential backoff (10 s, 20 s, 40 s … at most 1 h; 8 attempts by default)."
                ),
                "parameters": [{"name": name, "in": "header", **spec} for name, spec in header.items()],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}
                    },
                },
                "responses": {"2XX": {"description": "Received."}},
            }
        }
    }
    schemes = {
        "cmmsToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The site's CMMS token (vwo_…), shown once when an engineer issues it in the console.",
        }
    }
    return paths, schemas, {"webhooks": webhooks, "securitySchemes": schemes}
