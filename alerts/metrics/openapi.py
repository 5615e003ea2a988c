"""The metrics API's part of the OpenAPI document (plant.openapi builds the document; this app hands the
part in from its AppConfig.ready(), since plant may not import alerts)."""

from __future__ import annotations

from alerts.choices import FalseAlarmReason
from alerts.metrics import GROUP_BYS, PERIODS
from alerts.metrics.export import REASON_COLUMNS
from alerts.metrics.params import MAX_RANGE_DAYS
from alerts.metrics.rows import API_FIELDS
from plant.openapi import UNAVAILABLE, error_response
from plant.params import EARLIEST, YEARS_AHEAD

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
    "400": error_response(
        "A parameter is not one of the accepted values; `param` names it.",
        "group_by: 'plant' is not one of site, asset, asset_type, model_version",
        "group_by",
    ),
    "403": error_response(
        "Not logged in, or not an engineer or supervisor.", "the metrics are for engineers and supervisors"
    ),
    "405": error_response("Only GET (and HEAD) is allowed.", "method POST not allowed: use GET"),
    "503": UNAVAILABLE,
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


def metrics_paths() -> dict:
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


def metrics_schemas() -> dict:
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


def metrics_part() -> tuple[dict, dict]:
    """The metrics API's (paths, component schemas) for plant.openapi.build_openapi."""
    return metrics_paths(), metrics_schemas()
