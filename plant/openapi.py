"""The OpenAPI 3.1 document of the gateway API and the metrics API, written by hand so that it says exactly
what the code does (tests/plant/test_ingest_api.py validates it and checks real answers against it)."""

from __future__ import annotations

from django.conf import settings

from alerts.choices import FalseAlarmReason
from alerts.metrics import GROUP_BYS, PERIODS
from alerts.metrics.export import REASON_COLUMNS
from alerts.metrics.params import MAX_RANGE_DAYS
from alerts.metrics.rows import API_FIELDS
from plant.params import EARLIEST, YEARS_AHEAD

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in words a person can act on."},
        "param": {"type": "string", "description": "The query parameter at fault (metrics API)."},
    },
}


def _error_response(description: str, example: str, param: str | None = None) -> dict:
    body = {"error": example, **({"param": param} if param else {})}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": body}},
    }


# config.middleware.DatabaseUnavailableMiddleware answers every API path so while the database is down.
_UNAVAILABLE = {
    **_error_response(
        "The database is temporarily unavailable (e.g. restarting); nothing was stored. Retry after the "
        "number of seconds in Retry-After.",
        "the database is temporarily unavailable: retry in 5 s",
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_COUNT = {"type": "integer", "minimum": 0}
# The columns of a metrics row, in API_FIELDS order (a test checks both lists name the same fields).
_ROW_FIELDS = {
    "period": {
        "type": "string",
        "description": "A month (2026-09) or an ISO week (2026-W37).",
        "examples": ["2026-09"],
    },
    "key": {
        "type": ["integer", "null"],
        "description": (
            "Id of the site, asset, asset type or model version of the row; null for missed failures when no "
            "model was deployed (group_by=model_version)."
        ),
    },
    "label": {"type": "string", "description": "Name of the key, e.g. 'P-101 · North' or 'pump-anomaly v2'."},
    "alerts": {**_COUNT, "description": "Alerts shown to operators, opened in the period."},
    "verdicts": {**_COUNT, "description": "Of those, alerts with a verdict (the latest one counts)."},
    "confirmed": {**_COUNT, "description": "Verdict: confirmed fault."},
    "false_alarms": {**_COUNT, "description": "Verdict: false alarm."},
    "not_actionable": {**_COUNT, "description": "Verdict: not actionable (neither right nor wrong)."},
    "missed": {**_COUNT, "description": "Reported failures no alert caught, by the start of the failure."},
    "precision": {**_RATE, "description": "confirmed / (confirmed + false_alarms); null when both are 0."},
    "recall": {**_RATE, "description": "confirmed / (confirmed + missed); null when both are 0."},
    "follow_through": {
        **_RATE,
        "description": (
            "Alerts with a first verdict within the follow-through window / alerts past that window or "
            "answered; null when none is."
        ),
    },
    "actionability": {
        **_RATE,
        "description": "Confirmed faults repaired or scheduled / alerts with a verdict; null when none has one.",
    },
    "tta_median_s": {
        "type": ["number", "null"],
        "minimum": 0,
        "description": "Median time to the first human answer (acknowledge, snooze, verdict), seconds.",
    },
    "tta_p90_s": {
        "type": ["number", "null"],
        "minimum": 0,
        "description": "Nearest-rank 90th percentile of the same, seconds.",
    },
    "ignored": {**_COUNT, "description": "Alerts auto-closed with no human answer at all."},
}
_QUERY_PARAMETERS = [
    {
        "name": "group_by",
        "in": "query",
        "required": False,
        "description": "One row per period and key of this grouping.",
        "schema": {"type": "string", "enum": list(GROUP_BYS), "default": GROUP_BYS[0]},
    },
    {
        "name": "period",
        "in": "query",
        "required": False,
        "description": "Calendar month or ISO week of the alert's opening, in the server's time zone.",
        "schema": {"type": "string", "enum": list(PERIODS), "default": PERIODS[0]},
    },
    {
        "name": "start",
        "in": "query",
        "required": False,
        "description": (
            "First day of alerts to count (YYYY-MM-DD, included); none: from the first alert. Dates run from "
            f"{EARLIEST} to the end of the year {YEARS_AHEAD} years from now."
        ),
        "schema": {"type": "string", "format": "date"},
    },
    {
        "name": "end",
        "in": "query",
        "required": False,
        "description": (
            f"Last day of alerts to count (YYYY-MM-DD, included), not before start; at most {MAX_RANGE_DAYS} "
            "days after it. The same bounds as start."
        ),
        "schema": {"type": "string", "format": "date"},
    },
    {
        "name": "site",
        "in": "query",
        "required": False,
        "description": "Slug of one of your sites; none: all your sites.",
        "schema": {"type": "string"},
    },
]
_METRICS_ERRORS = {
    "400": _error_response(
        "A parameter is not one of the accepted values; `param` names it.",
        "group_by: 'plant' is not one of site, asset, asset_type, model_version",
        "group_by",
    ),
    "403": _error_response(
        "Not logged in, or not an engineer or supervisor.", "the metrics are for engineers and supervisors"
    ),
    "405": _error_response("Only GET (and HEAD) is allowed.", "method POST not allowed: use GET"),
    "503": _UNAVAILABLE,
}
_CSV = {
    "text/csv": {
        "schema": {
            "type": "string",
            "description": (
                "Header, then one line per row: the row's columns in the JSON order (without "
                "false_alarms_by_reason), then one count per false-alarm reason ("
                + ", ".join(REASON_COLUMNS)
                + "). Empty cell for null; rates as decimals."
            ),
        },
        "example": ",".join([*API_FIELDS, *REASON_COLUMNS]) + "\n",
    }
}


def _metrics_paths() -> dict:
    description = (
        "Operator-trust metrics of the alerts of your sites, the numbers of the alert health page "
        "(/alerts/health/): one row per (period, key). Rows exist only for keys with an alert or a missed "
        "failure in the period, ordered by period then label. Log in through the web login; the session "
        "cookie authenticates the request."
    )
    return {
        "/api/v1/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Metrics per period and site, asset, asset type or model version",
                "description": description,
                "security": [{"sessionCookie": []}],
                "parameters": [
                    *_QUERY_PARAMETERS,
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "description": "json, or csv for the same answer as /api/v1/metrics.csv.",
                        "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The rows of the query.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/MetricsAnswer"}},
                            **_CSV,
                        },
                    },
                    **_METRICS_ERRORS,
                },
            }
        },
        "/api/v1/metrics.csv": {
            "get": {
                "operationId": "getMetricsCsv",
                "summary": "The same rows as CSV (a download)",
                "description": description,
                "security": [{"sessionCookie": []}],
                "parameters": _QUERY_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "The rows of the query as an attachment.",
                        "headers": {
                            "Content-Disposition": {
                                "schema": {"type": "string"},
                                "description": 'attachment; filename="vigil-metrics-<group_by>-<period>.csv"',
                            }
                        },
                        "content": _CSV,
                    },
                    **_METRICS_ERRORS,
                },
            }
        },
    }


def _metrics_schemas() -> dict:
    return {
        "MetricsRow": {
            "type": "object",
            "required": [*API_FIELDS, "false_alarms_by_reason"],
            "additionalProperties": False,
            "properties": {
                **{name: _ROW_FIELDS[name] for name in API_FIELDS},
                "false_alarms_by_reason": {
                    "type": "object",
                    "description": "False alarms by the reason given, reasons with none left out.",
                    "propertyNames": {"type": "string"},
                    "additionalProperties": _COUNT,
                    "examples": [{FalseAlarmReason.SENSOR_GLITCH.value: 3}],
                },
            },
        },
        "MetricsAnswer": {
            "type": "object",
            "required": ["group_by", "period", "start", "end", "site", "follow_through_hours", "rows"],
            "additionalProperties": False,
            "properties": {
                "group_by": {"type": "string", "enum": list(GROUP_BYS)},
                "period": {"type": "string", "enum": list(PERIODS)},
                "start": {"type": ["string", "null"], "format": "date"},
                "end": {"type": ["string", "null"], "format": "date"},
                "site": {"type": ["string", "null"], "description": "Slug of the site asked for, if any."},
                "follow_through_hours": {
                    "type": "number",
                    "description": "The follow-through window (VIGIL_FOLLOW_THROUGH_HOURS).",
                },
                "rows": {"type": "array", "items": {"$ref": "#/components/schemas/MetricsRow"}},
            },
        },
    }


def build_openapi(server_url: str = "/") -> dict:
    """The document for the current settings (limits are read at call time)."""
    max_readings = settings.VIGIL_INGEST_MAX_READINGS
    max_bytes = settings.VIGIL_INGEST_MAX_BODY_BYTES
    max_future = settings.VIGIL_INGEST_MAX_FUTURE_S
    max_age_days = settings.VIGIL_INGEST_MAX_AGE_DAYS
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
                            "Content type other than application/json or text/csv (multipart and form "
                            "bodies included).",
                            "unsupported content type 'text/plain': send application/json or text/csv",
                        ),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            **_metrics_paths(),
        },
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
                                "unknown sensor (also for a sensor of another site: the answer does not "
                                "tell whether a key exists elsewhere), sensor key with a NUL character or "
                                "invalid UTF-8, value not a number or not finite, timestamp unparseable / "
                                "without offset / out of range / in the future / older than the age limit, "
                                "CSV row without 3 fields or not valid CSV, missing field."
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
                **_metrics_schemas(),
            },
        },
    }
