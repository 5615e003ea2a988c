"""GET /api/v1/metrics (JSON and CSV): who may read it, what bad parameters get, and that JSON, CSV and the
health page carry the same numbers."""

from __future__ import annotations

import csv
import io

import pytest

from alerts.metrics import API_FIELDS, MetricsQuery, metric_rows
from alerts.metrics.export import REASON_COLUMNS
from tests.alerts.test_metrics_golden import NOW

API = "/api/v1/metrics"


def test_the_json_rows_are_the_metric_rows_of_the_query(engineer_client, golden):
    response = engineer_client.get(API, {"group_by": "asset", "period": "month"})
    assert response.status_code == 200
    body = response.json()
    assert (body["group_by"], body["period"], body["follow_through_hours"]) == ("asset", "month", 24)
    expected = metric_rows([golden.north.pk, golden.south.pk], MetricsQuery("asset", "month"), now=NOW)
    assert body["rows"] == [row.as_dict() for row in expected]
    first = body["rows"][0]
    assert list(first)[: len(API_FIELDS)] == list(API_FIELDS)
    assert {"period", "key", "alerts", "verdicts", "confirmed", "false_alarms", "not_actionable", "missed",
            "precision", "recall", "follow_through", "actionability", "tta_median_s", "tta_p90_s",
            "ignored", "false_alarms_by_reason"} <= set(first)  # fmt: skip


def test_a_rate_without_a_denominator_is_null_in_json(engineer_client, golden):
    rows = engineer_client.get(API, {"group_by": "asset"}).json()["rows"]
    p101_august = next(r for r in rows if r["period"] == "2026-08" and r["key"] == golden.p101.pk)
    assert p101_august["precision"] is None and p101_august["recall"] == 0.0


def test_the_default_is_by_site_and_month(engineer_client, golden):
    body = engineer_client.get(API).json()
    assert (body["group_by"], body["period"]) == ("site", "month")
    assert [(r["period"], r["label"], r["alerts"]) for r in body["rows"]] == [
        ("2026-06", "North", 5), ("2026-06", "South", 2), ("2026-07", "North", 6),
        ("2026-07", "South", 2), ("2026-08", "North", 5), ("2026-08", "South", 1),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "planet"}, "group_by"),
        ({"period": "quarter"}, "period"),
        ({"start": "2026-02-30"}, "start"),
        ({"end": "soon"}, "end"),
        ({"start": "2026-08-01", "end": "2026-07-01"}, "end"),
        ({"site": "east"}, "site"),
        ({"format": "xml"}, "format"),
    ],
)
def test_invalid_parameters_get_a_400_json_naming_them(engineer_client, params, param):
    response = engineer_client.get(API, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["param"] == param and param in body["error"]


HOSTILE = [
    ({"end": "9999-12-31"}, "end"),
    ({"start": "0001-01-01"}, "start"),
    ({"start": "1969-12-31"}, "start"),
    ({"start": "2026-01-01", "end": "9999-12-31"}, "end"),
    ({"site": "\x00"}, "site"),
    ({"site": "north\x00"}, "site"),
    ({"group_by": "site\x1b"}, "group_by"),
    ({"start": "2026-01-01\x00"}, "start"),
]


@pytest.mark.parametrize(("params", "param"), HOSTILE)
@pytest.mark.parametrize("url", [API, f"{API}.csv"])
def test_out_of_range_dates_and_control_characters_get_a_400_json(engineer_client, url, params, param):
    response = engineer_client.get(url, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["param"] == param


def test_a_date_a_few_years_ahead_is_accepted_and_one_further_is_named(engineer_client, golden):
    from plant.params import latest_date

    last = latest_date()
    assert engineer_client.get(API, {"end": last.isoformat()}).status_code == 200
    body = engineer_client.get(API, {"end": last.replace(year=last.year + 1).isoformat()}).json()
    assert body["param"] == "end" and f"from 1970-01-01 to {last}" in body["error"]


def test_technicians_and_anonymous_callers_get_a_403_json(client, golden):
    response = client.get(API)
    assert response.status_code == 403 and "log in" in response.json()["error"]
    client.force_login(golden.tess)
    for url in (API, f"{API}.csv"):
        response = client.get(url)
        assert response.status_code == 403 and response.json()["error"]


def test_only_get_is_allowed(engineer_client):
    response = engineer_client.post(API)
    assert response.status_code == 405 and response["Allow"] == "GET"


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def number(text: str):
    return None if text == "" else float(text)


@pytest.mark.parametrize("url_params", [(API, {"format": "csv"}), (f"{API}.csv", {})])
@pytest.mark.parametrize("group_by", ["site", "asset", "model_version"])
def test_the_csv_carries_the_same_numbers_as_the_json(engineer_client, url_params, group_by):
    url, extra = url_params
    params = {"group_by": group_by, "period": "month"}
    json_rows = engineer_client.get(API, params).json()["rows"]
    response = engineer_client.get(url, {**params, **extra})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    assert text.splitlines()[0].split(",") == [*API_FIELDS, *REASON_COLUMNS]
    csv_rows = parse_csv(text)
    assert len(csv_rows) == len(json_rows)
    for j, c in zip(json_rows, csv_rows, strict=True):
        assert (c["period"], c["label"]) == (j["period"], j["label"])
        for name in API_FIELDS[3:]:
            assert number(c[name]) == j[name], (j["period"], j["label"], name)
        for reason_column in REASON_COLUMNS:
            reason = reason_column.removeprefix("false_alarms_")
            assert int(c[reason_column]) == j["false_alarms_by_reason"].get(reason, 0)


def test_the_health_page_and_the_api_agree(engineer_client):
    params = {"group_by": "model_version", "period": "week"}
    page_rows = engineer_client.get("/alerts/health/", params).context["report"].rows
    assert engineer_client.get(API, params).json()["rows"] == [row.as_dict() for row in page_rows]


def test_the_site_and_date_filters_apply_to_the_api(engineer_client):
    body = engineer_client.get(API, {"site": "south", "start": "2026-07-01", "end": "2026-07-31"}).json()
    assert (body["site"], body["start"], body["end"]) == ("south", "2026-07-01", "2026-07-31")
    assert [(r["period"], r["label"], r["alerts"], r["missed"]) for r in body["rows"]] == [
        ("2026-07", "South", 2, 1)
    ]


def test_the_time_to_acknowledge_comes_with_the_count_of_answered_alerts_it_is_computed_from(
    client, engineer, technician, asset, champion
):
    # The page says "2 h 30 (median of 2)"; the API and the CSV gave the median and p90 with no count.
    from django.utils import timezone

    from alerts.services import record_feedback
    from tests.alerts.builders import make_alert

    for minutes in (180, 120):  # answered (a verdict) 180 and 120 min after they were shown
        record_feedback(make_alert(asset, champion, age_min=minutes), technician, "confirm:repaired")
    make_alert(asset, champion, age_min=60, state="auto_closed", closed_at=timezone.now())  # never answered
    client.force_login(engineer)
    (row,) = client.get(API, {"group_by": "asset"}).json()["rows"]
    assert (row["alerts"], row["acknowledged"]) == (3, 2)
    assert (row["tta_median_s"], row["tta_p90_s"]) == pytest.approx((9000, 10800), abs=5)
    (csv_row,) = parse_csv(client.get(f"{API}.csv", {"group_by": "asset"}).content.decode())
    assert csv_row["acknowledged"] == "2"
