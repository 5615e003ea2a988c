"""The metrics API's part of the OpenAPI document (plant.openapi builds the document; this app hands the
part in from its AppConfig.ready(), since plant may not import alerts)."""

from __future__ import annotations

from alerts.choices import AlertCategory, FalseAlarmReason
from alerts.metrics import GROUP_BYS, PERIODS
from alerts.metrics.export import REASON_COLUMNS
from alerts.metrics.kpis import BANDS, PRIORITIES
from alerts.metrics.params import KPI_PERIODS, MAX_RANGE_DAYS
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
    "confirmed": {
        **_COUNT,
        "description": "Verdict: confirmed fault (every category; precision and recall read machine_confirmed).",
    },
    "false_alarms": {**_COUNT, "description": "Verdict: false alarm (every category)."},
    "not_actionable": {**_COUNT, "description": "Verdict: not actionable (neither right nor wrong)."},
    "missed": {**_COUNT, "description": "Reported failures no alert caught, by the start of the failure."},
    "precision": {
        **_RATE,
        "description": (
            "machine_confirmed / machine_judged: of the machine-fault alerts judged confirmed or false alarm, "
            "the confirmed share; null when none was."
        ),
    },
    "recall": {
        **_RATE,
        "description": "machine_confirmed / (machine_confirmed + missed); null when both are 0.",
    },
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
    "actionable": {
        **_COUNT,
        "description": "Confirmed faults repaired or scheduled (actionability's numerator).",
    },
    "followed": {
        **_COUNT,
        "description": "Alerts with a first verdict within the follow-through window (its numerator).",
    },
    "due": {
        **_COUNT,
        "description": (
            "Alerts answered or past their follow-through window (its denominator); alerts − due are still "
            "inside their window without a verdict, not counted yet."
        ),
    },
    "acknowledged": {
        **_COUNT,
        "description": (
            "Alerts a person answered (acknowledge, snooze or verdict): the delays tta_median_s and tta_p90_s "
            "are computed from (null delays when 0)."
        ),
    },
    "machine_confirmed": {
        **_COUNT,
        "description": "Confirmed faults on machine-fault alerts: precision's and recall's numerator.",
    },
    "machine_judged": {
        **_COUNT,
        "description": "Confirmed faults and false alarms on machine-fault alerts: precision's denominator.",
    },
    "routed_judged": {
        **_COUNT,
        "description": (
            "Confirmed faults and false alarms on alerts the data-quality gate filed 'Check the sensor' or "
            "'Check the data link': the gate's call, not the model's, so in neither precision nor recall "
            "(still in confirmed, false_alarms, verdicts, actionability and follow-through)."
        ),
    },
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
_KPI_PERIOD = {
    "name": "kpi_period",
    "in": "query",
    "required": False,
    "description": (
        "Buckets of the alarm-management KPIs (alarm_kpis): each site's own days, shifts (Site.shift_starts) "
        "or ISO weeks, in the site's time zone. Given, the answer carries alarm_kpis (as include=kpis)."
    ),
    "schema": {"type": "string", "enum": list(KPI_PERIODS), "default": KPI_PERIODS[0]},
}
_INCLUDE = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": (
        "kpis: the answer carries alarm_kpis, the alarm-management KPIs (a second pass over the alerts, "
        "about as long again as the rows). Without it (and without kpi_period) they are left out."
    ),
    "schema": {"type": "string", "enum": ["kpis"]},
}
_NUMBER = {"type": ["number", "null"], "minimum": 0}
_SHARES = {
    "type": "object",
    "required": list(PRIORITIES),
    "additionalProperties": False,
    "properties": {name: _RATE for name in PRIORITIES},
}
_KPI_ROW = {
    "site": {"type": "string", "description": "Site name."},
    "period": {
        "type": "string",
        "description": "'2026-09-14' (day), '2026-09-14 06:00' (shift), '2026-W37'.",
    },
    "start": {"type": "string", "format": "date-time"},
    "end": {"type": "string", "format": "date-time"},
    "seconds": {
        "type": "number",
        "minimum": 0,
        "description": "Seconds of the bucket counted: inside the query's dates and before now.",
    },
    "partial": {
        "type": "boolean",
        "description": "Only part of the bucket counts: it is still running, or the query's dates cut it.",
    },
    "rated": {
        "type": "boolean",
        "description": "At least an hour of the bucket (or all of it) counts: the per-technician rates are "
        "null before, as an average over a few minutes is no load.",
    },
    "technicians": {
        **_COUNT,
        "description": "Active users of the technician group with a membership of the site (the denominator).",
    },
    "alerts": {**_COUNT, "description": "Alerts shown in the bucket (within the query's dates)."},
    "per_tech_per_10min": {
        **_NUMBER,
        "description": "alerts / technicians / 10-minute periods elapsed (null until rated); target ~1, at most ~2 (ISA-18.2, EEMUA 191).",
    },
    "per_tech_per_day": {
        **_NUMBER,
        "description": "alerts / technicians / days elapsed (null until rated); target ~150, at most ~300 (ISA-18.2, EEMUA 191).",
    },
    "ten_minute_periods": {**_COUNT, "description": "10-minute periods elapsed in the bucket."},
    "flood_periods": {**_COUNT, "description": "Of those, periods with more than 10 alerts shown."},
    "flood_pct": {**_RATE, "description": "flood_periods / ten_minute_periods; target < 1 %."},
    "peak_10min": {**_COUNT, "description": "Most alerts shown in one 10-minute period."},
    "chattering": {
        **_COUNT,
        "description": "Alerts of a burst (chatter_opens of one condition within chatter_minutes); target 0.",
    },
    "chattering_conditions": {
        **_COUNT,
        "description": "Conditions (asset, kind, category) with such a burst.",
    },
    "fleeting": {
        **_COUNT,
        "description": "Alerts closed within respond_minutes of being shown with nobody answering; target 0.",
    },
    "stale": {
        **_COUNT,
        "description": "Alerts active 24 h after being shown without an answer, in the bucket.",
    },
    "stale_max_day": {
        **_COUNT,
        "description": "Most stale alerts on one site day of the bucket; target < 5.",
    },
    "priorities": {
        "type": "object",
        "required": list(PRIORITIES),
        "additionalProperties": False,
        "properties": {name: _COUNT for name in PRIORITIES},
        "description": "Alerts by priority: low = low, medium = medium, high = high and critical severities.",
    },
    "priority_mix": {**_SHARES, "description": "Shares of the same; guide ~80 / 15 / 5 %."},
}
_SITE_KPIS = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "site", "name", "timezone", "shift_starts", "technicians", "alerts", "conditions", "categories",
        "bad_actors", "bad_actor_share", "rows",
    ],
    "properties": {
        "site": {"type": "string", "description": "Slug."},
        "name": {"type": "string"},
        "timezone": {"type": "string"},
        "shift_starts": {"type": "array", "items": {"type": "string", "examples": ["06:00"]}},
        "technicians": _COUNT,
        "alerts": {**_COUNT, "description": "Alerts shown in the query's dates."},
        "conditions": {**_COUNT, "description": "Distinct conditions (asset, model kind, category) among them."},
        "categories": {
            "type": "object",
            "description": "Alerts per category present: machine_fault, sensor_fault (check the sensor), "
            "data_link (check the data link: readings went missing).",
            "additionalProperties": False,
            "properties": {category: _COUNT for category in AlertCategory.values},
        },
        "bad_actors": {
            "type": "array",
            "description": "The 10 conditions with the most alerts.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["asset", "label", "kind", "category", "alerts", "share"],
                "properties": {
                    "asset": {"type": "integer"},
                    "label": {"type": "string"},
                    "kind": {"type": "string"},
                    "category": {"type": "string", "enum": AlertCategory.values},
                    "alerts": _COUNT,
                    "share": _RATE,
                },
            },
        },
        "bad_actor_share": {**_RATE, "description": "Their share of all alerts; target ~1–5 % at most."},
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": list(_KPI_ROW),
                "properties": _KPI_ROW,
            },
        },
    },
}  # fmt: skip
_KPI_WARNING = {
    "type": "object",
    "additionalProperties": False,
    "required": ["site", "kpi", "periods", "worst_period", "worst", "target", "message"],
    "properties": {
        "site": {"type": "string"},
        "kpi": {"type": "string", "enum": list(BANDS)},
        "periods": {"type": "array", "items": {"type": "string"}},
        "worst_period": {"type": "string"},
        "worst": {"type": "string"},
        "target": {"type": "string"},
        "message": {"type": "string"},
    },
}
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
                    _KPI_PERIOD,
                    _INCLUDE,
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
            "required": [
                "group_by",
                "period",
                "start",
                "end",
                "site",
                "follow_through_hours",
                "rows",
            ],
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
                "alarm_kpis": {
                    "$ref": "#/components/schemas/AlarmKpis",
                    "description": "Only with include=kpis or a kpi_period.",
                },
            },
        },
        "AlarmKpis": {
            "type": "object",
            "description": (
                "Alarm-management KPIs (ISA-18.2 / IEC 62682 / EEMUA 191) per site and kpi_period, and the "
                "warnings of the KPIs out of their band. Not in the CSV."
            ),
            "additionalProperties": False,
            "required": [
                "kpi_period",
                "chatter_opens",
                "chatter_minutes",
                "respond_minutes",
                "sites",
                "warnings",
            ],
            "properties": {
                "kpi_period": {"type": "string", "enum": list(KPI_PERIODS)},
                "chatter_opens": {"type": "integer", "description": "VIGIL_KPI_CHATTER_OPENS."},
                "chatter_minutes": {"type": "number", "description": "VIGIL_KPI_CHATTER_MINUTES."},
                "respond_minutes": {"type": "number", "description": "VIGIL_KPI_RESPOND_MINUTES."},
                "sites": {"type": "array", "items": _SITE_KPIS},
                "warnings": {"type": "array", "items": _KPI_WARNING},
            },
        },
    }


def metrics_part() -> tuple[dict, dict]:
    """The metrics API's (paths, component schemas) for plant.openapi.build_openapi."""
    return metrics_paths(), metrics_schemas()
