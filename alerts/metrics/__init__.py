"""Operator-trust metrics of the alerts: how often alerts are right, acted on and answered.

Definitions (per period and per site, asset, asset type or model version; ARCHITECTURE "Metric
definitions"), all from rows (Alert, AlertEvent, Feedback), never from counters:

* precision = confirmed faults / (confirmed faults + false alarms) over machine-fault alerts
  (``machine_confirmed`` / ``machine_judged``); not-actionable verdicts are neither.
* recall = confirmed machine faults / (confirmed machine faults + reported missed failures).
* A confirmed fault or false alarm on an alert the data-quality gate filed "Check the sensor" or "Check the
  data link" (``routed_judged``) is in neither rate: the gate routed it, so the verdict judges the sensor
  or the link, not the model's machine-fault call (``alerts.metrics.facts``, which holds the one condition).
  It still counts in verdicts, confirmed, false alarms, actionability, follow-through, time to acknowledge
  and ignored: the operator still had to act.
* follow-through = alerts with a verdict within ``VIGIL_FOLLOW_THROUGH_HOURS`` (24 h) of being shown /
  alerts shown. An alert still inside its window without a verdict is not yet late, so it is left out of
  that denominator until the window ends (``due``); for any closed period this is every alert.
* actionability = confirmed faults with an action (repaired or repair scheduled) / alerts with a verdict.
* time to acknowledge (median, nearest-rank p90, seconds) = first human event − shown, over the alerts
  that had one; a human event is any event by a person (acknowledge, snooze, verdict), an event with an
  actor or a Feedback row. Snoozing is an answer too: the operator saw the alert and decided.
* ignored = auto-closed with no human event at all (a late verdict on an auto-closed alert un-ignores it).
* false alarms by reason, from the verdict in force.

Decisions:

* Which alerts count: visible ones (``is_shadow`` excluded), and only once operators could see them. An
  alert opened inside a maintenance window (``suppressed``) is left out unless it later became open, and
  then its clock (follow-through, time to acknowledge) starts at that move to open, not at the opening.
  Suppressed alerts never shown are left out even if someone gave them a verdict: the maintenance window
  said "expect noise", and counting them would charge planned work to the model and the operators.
  The alert export lists them, with ``suppressed`` true.
* Period of an alert: the period in which it was opened (``opened_at``), in settings.TIME_ZONE, so a late
  verdict or a correction changes the numbers of the alert's opening period, never of a later one.
* A corrected verdict counts as the latest one (the verdict Feedback no other supersedes); follow-through
  uses the first verdict given, since a later correction does not undo the answer.
* Period of a missed failure: the start of the failure it reports (its label), not when it was reported.
  Its model version is the one most recently made champion for the asset's type before that moment (the
  detector that should have caught it); none deployed → key null, "no model deployed".
* Rates are None (not 0) when their denominator is 0; groups with nothing to count have no row.
* Percentiles are the only numbers computed in Python, from one duration per acknowledged alert; every
  count is a conditional COUNT of one GROUP BY. The per-alert facts (the verdict in force, the first
  verdict, the first human event, when it was shown) are defined once, in ``alerts.metrics.facts``: the
  counts, the drill-downs, the export and the comparison page's observed follow-through all read them
  from there.

* Closed periods are counted once and stored (``alerts.metrics.closed``: per asset and model version, by a
  beat task, marked dirty by any later change to one of their alerts, its events or feedback); the rows
  add those sums to the live count of the open periods, so every number is the live one.

``health_report`` is what the page shows; the JSON/CSV API returns its ``rows``; both call
``metric_rows``, so they agree. Trust-erosion warnings: see ``alerts.metrics.trust``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from alerts.metrics.params import (
    GROUP_BYS,
    PERIODS,
    MetricsParamError,
    MetricsQuery,
    parse_period,
    parse_query,
    period_bounds,
    period_kind,
    period_label,
    previous_period,
)
from alerts.metrics.facts import AlertFacts, alert_facts, drill_alerts, follow_through_by_verdict
from alerts.metrics.queries import (
    DRILL_METRICS,
    drill_missed,
    follow_through_window,
    missed_failures,
)
from alerts.metrics.rows import (
    API_FIELDS,
    DriverCount,
    MetricsRow,
    driver_counts,
    drivers_by,
    metric_rows,
    period_totals,
    rows_and_drivers,
)
from alerts.metrics.trust import TOP, TrustWarning, trust_warnings


@dataclass(frozen=True)
class HealthReport:
    """Everything the health page shows: rows by the query's grouping, one total per period, warnings."""

    query: MetricsQuery
    rows: list[MetricsRow]
    totals: list[MetricsRow]
    warnings: list[TrustWarning]


def health_report(site_ids: Collection[int], query: MetricsQuery, *, now: datetime) -> HealthReport:
    """The rows, the per-period totals and the trust-erosion warnings of the query over the sites."""
    # The totals are summed from the rows; the rows, their delays and both driver groupings come from one
    # statement over the per-alert facts (alerts.metrics.facts, bench/metrics.py).
    rows, drivers = rows_and_drivers(
        site_ids, query, now=now, drivers=("asset", "model_version"), drivers_top=TOP
    )
    totals = period_totals(rows)
    warnings = trust_warnings(totals, drivers["asset"], drivers["model_version"])
    return HealthReport(query=query, rows=rows, totals=totals, warnings=warnings)


__all__ = [
    "API_FIELDS",
    "DRILL_METRICS",
    "GROUP_BYS",
    "PERIODS",
    "DriverCount",
    "HealthReport",
    "MetricsParamError",
    "MetricsQuery",
    "MetricsRow",
    "TrustWarning",
    "AlertFacts",
    "alert_facts",
    "drill_alerts",
    "drill_missed",
    "driver_counts",
    "drivers_by",
    "follow_through_by_verdict",
    "follow_through_window",
    "health_report",
    "metric_rows",
    "missed_failures",
    "parse_period",
    "parse_query",
    "period_bounds",
    "period_kind",
    "period_label",
    "period_totals",
    "previous_period",
    "trust_warnings",
]
