"""The raw SQL per-alert facts the metric rows count (alerts.metrics.facts) against the ORM definitions
the drill-downs and the export use (annotated_alerts): the same alerts, each with the same facts."""

from __future__ import annotations

import pytest

from alerts.metrics import MetricsQuery, counted_alerts
from alerts.metrics.facts import facts_sql, fetch
from tests.alerts.test_metrics_golden import build_golden_history


def _us(delay) -> int | None:
    return None if delay is None else round(delay.total_seconds() * 1_000_000)


@pytest.mark.parametrize("query", [MetricsQuery("site", "month"), MetricsQuery("asset", "week")])
def test_every_counted_alert_has_the_facts_of_annotated_alerts(db, query):
    golden = build_golden_history()
    site_ids = [golden.north.pk, golden.south.pk]
    sql, params = facts_sql(site_ids, query, (query.group_by,))
    columns = "id, verdict, verdict_action, verdict_reason, first_verdict_at IS NOT NULL, response_us, tta_us"
    got = {
        row[0]: (*row[1:5], *(None if us is None else int(us) for us in row[5:]))
        for row in fetch(f"{sql} SELECT {columns} FROM facts", params)
    }
    expected = {
        alert.pk: (
            alert.verdict,
            alert.verdict_action,
            alert.verdict_reason,
            alert.first_verdict_at is not None,
            _us(alert.response_delay),
            _us(alert.tta),
        )
        for alert in counted_alerts(site_ids, query)
    }
    assert len(expected) > 10
    assert got == expected
