"""POST /api/v1/readings end to end: auth, shapes, per-row errors, scoping, idempotency, docs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from plant.choices import QualityFlag
from plant.models import Gateway, Reading
from tests.conftest import T0

URL = "/api/v1/readings"
VIB = "north.p-101.vibration"
CUR = "north.p-101.current"
EPOCH0 = int(T0.timestamp())

pytestmark = pytest.mark.django_db


def post_json(client, token, payload, **extra):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return client.post(
        URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **extra
    )


def post_csv(client, token, text):
    return client.post(URL, text, content_type="text/csv", HTTP_AUTHORIZATION=f"Bearer {token}")


def reading(sensor=VIB, ts=None, value=1.0):
    return {"sensor": sensor, "ts": EPOCH0 if ts is None else ts, "value": value}


def rejected_errors(response) -> dict[int, str]:
    return {row["index"]: row["error"] for row in response.json()["rejected"]}


# --- happy paths --------------------------------------------------------------------------------------


def test_it_stores_a_json_batch_and_reports_counts(client, asset, gateway_token):
    rows = [reading(ts=EPOCH0 + i, value=float(i)) for i in range(5)]
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    stored = list(Reading.objects.filter(sensor__key=VIB).order_by("ts").values_list("ts", "value"))
    assert stored == [(T0 + timedelta(seconds=i), float(i)) for i in range(5)]


def test_iso_timestamps_with_offsets_and_z_are_converted_to_utc(client, asset, gateway_token):
    rows = [
        reading(ts="2026-01-05T10:00:00+02:00", value=1.0),
        reading(ts="2026-01-05T08:00:01Z", value=2.0),
        reading(ts="2026-01-05T08:00:02.250000+00:00", value=3.0),
        reading(ts=EPOCH0 + 3.5, value=4.0),
    ]
    assert post_json(client, gateway_token, {"readings": rows}).json()["accepted"] == 4
    stamps = list(Reading.objects.order_by("ts").values_list("ts", flat=True))
    assert stamps == [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2.25),
        T0 + timedelta(seconds=3.5),
    ]


def test_it_stores_a_csv_batch(client, asset, gateway_token):
    text = f"sensor,ts,value\n{VIB},{EPOCH0},1.5\n{CUR},2026-01-05T08:00:00Z,12\n\n{VIB},{EPOCH0 + 1},nan\n"
    response = post_csv(client, gateway_token, text)
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert rejected_errors(response) == {2: "value is not finite: nan"}
    assert Reading.objects.get(sensor__key=CUR).value == 12.0


def test_resending_the_same_batch_stores_nothing_twice(client, asset, gateway_token):
    payload = {"readings": [reading(ts=EPOCH0 + i, value=float(i)) for i in range(10)]}
    assert post_json(client, gateway_token, payload).json() == {
        "accepted": 10,
        "duplicates": 0,
        "rejected": [],
    }
    assert post_json(client, gateway_token, payload).json() == {
        "accepted": 0,
        "duplicates": 10,
        "rejected": [],
    }
    assert Reading.objects.count() == 10


def test_a_batch_overlapping_stored_readings_stores_only_the_new_ones(client, asset, gateway_token):
    first = {"readings": [reading(ts=EPOCH0 + i, value=float(i)) for i in range(0, 10, 2)]}
    assert post_json(client, gateway_token, first).json()["accepted"] == 5
    # Every second row is already stored: the new ones must still land, and stored values stay as they were.
    overlapping = {"readings": [reading(ts=EPOCH0 + i, value=100.0 + i) for i in range(10)]}
    assert post_json(client, gateway_token, overlapping).json() == {
        "accepted": 5,
        "duplicates": 5,
        "rejected": [],
    }
    values = dict(Reading.objects.values_list("ts", "value"))
    assert len(values) == 10
    assert sorted(values.values()) == [0.0, 2.0, 4.0, 6.0, 8.0, 101.0, 103.0, 105.0, 107.0, 109.0]


def test_duplicates_inside_one_batch_are_stored_once_and_counted(client, asset, gateway_token):
    rows = [reading(value=1.0), reading(value=2.0), reading(ts=EPOCH0 + 1), reading(value=3.0)]
    assert post_json(client, gateway_token, {"readings": rows}).json() == {
        "accepted": 2,
        "duplicates": 2,
        "rejected": [],
    }
    assert Reading.objects.get(ts=T0).value == 1.0  # the first occurrence wins


def test_out_of_order_readings_are_all_stored(client, asset, gateway_token):
    later = [reading(ts=EPOCH0 + i, value=float(i)) for i in range(20, 30)]
    earlier = [reading(ts=EPOCH0 + i, value=float(i)) for i in (9, 3, 7, 1, 5)]
    assert post_json(client, gateway_token, {"readings": later}).json()["accepted"] == 10
    assert post_json(client, gateway_token, {"readings": earlier}).json()["accepted"] == 5
    assert Reading.objects.count() == 15


def test_a_mixed_batch_stores_its_valid_rows_and_names_each_bad_one(
    client, asset, other_asset, gateway_token
):
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    rows = [
        reading(ts=EPOCH0 + 0),
        reading(sensor="north.p-999.flow"),
        reading(sensor="south.p-201.vibration"),
        reading(value=float("nan")),
        reading(value=float("inf")),
        reading(value="12.5"),
        reading(value=True),
        reading(ts="2026-01-05T08:00:00"),
        reading(ts="yesterday"),
        reading(ts=future),
        {"ts": EPOCH0, "value": 1.0},
        {"sensor": VIB, "value": 1.0},
        {"sensor": VIB, "ts": EPOCH0},
        reading(ts=EPOCH0 + 1),
    ]
    # json.dumps writes NaN/Infinity literals, as many gateways do; they become row errors, not a 400.
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.status_code == 200
    errors = rejected_errors(response)
    assert response.json()["accepted"] == 2
    assert errors[1] == "unknown sensor: 'north.p-999.flow'"
    assert errors[2] == "unknown sensor: 'south.p-201.vibration'"
    assert errors[3] == "value is not finite: nan"
    assert errors[4] == "value is not finite: inf"
    assert errors[5].startswith("value is not a number: '12.5'")
    assert errors[6] == "value is not a number: true"
    assert errors[7].startswith("timestamp has no UTC offset")
    assert errors[8] == "unparseable timestamp: 'yesterday'"
    assert errors[9] == "timestamp is more than 300 s in the future"
    assert errors[10] == "missing field 'sensor'"
    assert errors[11] == "missing field 'ts'"
    assert errors[12] == "missing field 'value'"
    assert sorted(errors) == list(range(1, 13))
    assert Reading.objects.count() == 2


def test_a_gateway_cannot_write_another_sites_sensors(client, asset, other_asset, gateway_token):
    response = post_json(client, gateway_token, {"readings": [reading(sensor="south.p-201.current")]})
    assert response.json() == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, "error": "unknown sensor: 'south.p-201.current'"}],
    }
    assert not Reading.objects.exists()


def test_another_sites_sensor_is_answered_exactly_as_a_key_that_does_not_exist(
    client, asset, other_asset, gateway_token
):
    # Same shape of key, one exists on the other site, one nowhere: the answers must not tell them apart.
    answers = [
        post_json(client, gateway_token, {"readings": [reading(sensor=key)]}).json()["rejected"][0]["error"]
        for key in ("south.p-201.current", "south.p-209.current")
    ]
    assert [answer.replace("p-201", "p-209") for answer in answers[:1]] == answers[1:]


def test_a_timestamp_within_the_allowed_clock_skew_is_accepted(client, asset, gateway_token):
    soon = (timezone.now() + timedelta(minutes=4)).timestamp()
    assert post_json(client, gateway_token, {"readings": [reading(ts=soon)]}).json()["accepted"] == 1


def test_it_updates_the_gateways_last_seen_time(client, asset, site, gateway_token):
    before = timezone.now()
    post_json(client, gateway_token, {"readings": [reading()]})
    assert Gateway.objects.get(site=site).last_seen_at >= before


def test_a_stored_reading_carries_its_quality_flags(client, asset, gateway_token):
    rows = [reading(ts=EPOCH0 + i, value=50.0 + (i % 3) * 0.5) for i in range(40)]
    rows[35]["value"] = 90.0  # a spike
    rows.append(reading(ts=EPOCH0 + 60, value=150.0))  # after a gap and out of range
    assert post_json(client, gateway_token, {"readings": rows}).json()["accepted"] == 41
    quality = dict(Reading.objects.values_list("ts", "quality"))
    assert quality[T0 + timedelta(seconds=35)] == QualityFlag.SPIKE
    # After a gap the spike history restarts (plant.quality): the out-of-range flag is what says it.
    assert quality[T0 + timedelta(seconds=60)] == QualityFlag.GAP | QualityFlag.OUT_OF_RANGE
    assert sum(1 for bits in quality.values() if bits) == 2


def test_quality_uses_the_stored_context_of_earlier_batches(client, asset, gateway_token):
    post_json(client, gateway_token, {"readings": [reading(ts=EPOCH0 + i, value=42.0) for i in range(15)]})
    post_json(
        client, gateway_token, {"readings": [reading(ts=EPOCH0 + i, value=42.0) for i in range(15, 25)]}
    )
    stuck = Reading.objects.filter(quality=QualityFlag.STUCK).order_by("ts").values_list("ts", flat=True)
    assert list(stuck) == [T0 + timedelta(seconds=i) for i in range(19, 25)]


# --- whole-body errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "body is not valid JSON"),
        ("[1, 2]", "JSON body must be an object with a 'readings' list"),
        ('{"rows": []}', "JSON body has no 'readings' field"),
        ('{"readings": {"sensor": "x"}}', "'readings' must be a list of objects"),
        ('{"readings": [["north.p-101.vibration", 1, 2]]}', "readings[0] is not an object"),
        ("", "empty body"),
    ],
)
def test_a_json_body_of_the_wrong_shape_is_a_400_naming_the_problem(
    client, asset, gateway_token, body, message
):
    response = post_json(client, gateway_token, body)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"].startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [("sensor,time,value\nx,1,2\n", "CSV header must be 'sensor,ts,value'"), ("", "empty body")],
)
def test_a_csv_body_of_the_wrong_shape_is_a_400(client, asset, gateway_token, text, message):
    response = post_csv(client, gateway_token, text)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_an_unsupported_content_type_is_a_415(client, gateway_token):
    response = client.post(URL, "x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {gateway_token}")
    assert response.status_code == 415
    assert "application/json or text/csv" in response.json()["error"]


def test_get_is_a_405_with_a_json_error(client):
    response = client.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "use POST" in response.json()["error"]


# --- authentication -----------------------------------------------------------------------------------


def test_a_missing_token_is_a_401(client, asset):
    response = client.post(URL, json.dumps({"readings": []}), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"].startswith("missing Authorization header")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_scheme_is_a_401(client, gateway_token):
    response = client.post(
        URL, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Token {gateway_token}"
    )
    assert response.status_code == 401
    assert response.json()["error"].startswith("malformed Authorization header")


def test_an_unknown_token_is_a_401(client, asset):
    response = post_json(client, "vgl_not-a-real-token", {"readings": [reading()]})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked gateway token"}


def test_a_revoked_token_is_a_401_and_stores_nothing(client, asset, site, gateway_token):
    Gateway.objects.get(site=site).revoke()
    response = post_json(client, gateway_token, {"readings": [reading()]})
    assert response.status_code == 401
    assert not Reading.objects.exists()


# --- limits -------------------------------------------------------------------------------------------


def test_more_readings_than_the_limit_is_a_413(client, asset, gateway_token, settings):
    settings.VIGIL_INGEST_MAX_READINGS = 3
    response = post_json(client, gateway_token, {"readings": [reading(ts=EPOCH0 + i) for i in range(4)]})
    assert response.status_code == 413
    assert response.json()["error"] == "too many readings: 4 in one request, the limit is 3"
    assert not Reading.objects.exists()


def test_more_csv_rows_than_the_limit_is_a_413(client, asset, gateway_token, settings):
    settings.VIGIL_INGEST_MAX_READINGS = 2
    text = "sensor,ts,value\n" + "".join(f"{VIB},{EPOCH0 + i},1\n" for i in range(3))
    assert post_csv(client, gateway_token, text).status_code == 413


def test_a_body_over_the_byte_limit_is_a_413(client, asset, gateway_token, settings):
    settings.VIGIL_INGEST_MAX_BODY_BYTES = 1024
    response = post_json(client, gateway_token, {"readings": [reading(ts=EPOCH0 + i) for i in range(50)]})
    assert response.status_code == 413
    assert response.json()["error"].startswith("body too large")


# --- documentation ------------------------------------------------------------------------------------


def test_the_openapi_document_is_valid_json_describing_the_endpoint(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/v1/readings"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"200", "400", "401", "405", "413", "415", "503"} <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert "more than 3650 days in the past" in operation["description"]
    assert document["components"]["securitySchemes"]["gatewayToken"]["scheme"] == "bearer"


def test_the_docs_page_explains_auth_formats_and_limits(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Authorization: Bearer" in page
    assert "Content-Type: text/csv" in page and "Content-Type: application/json" in page
    assert "100000 readings per request" in page
    assert "3650 days behind it" in page and "Retry-After" in page


# --- the metrics API in the same document ------------------------------------------------------------------


def _openapi(client) -> dict:
    return json.loads(client.get("/api/v1/openapi.json").content)


def _matches(document: dict, schema_name: str, instance: object) -> list[str]:
    """The errors of ``instance`` against a component schema (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [error.message for error in validator.iter_errors(instance)]


def test_the_whole_document_validates_as_openapi_3_1(client):
    from openapi_spec_validator import validate

    validate(_openapi(client))


def test_the_metrics_paths_are_documented_with_their_parameters_errors_and_session_auth(client):
    document = _openapi(client)
    for path, names in (
        (
            "/api/v1/metrics",
            {"group_by", "period", "start", "end", "site", "kpi_period", "include", "format"},
        ),
        ("/api/v1/metrics.csv", {"group_by", "period", "start", "end", "site"}),
    ):
        operation = document["paths"][path]["get"]
        assert {p["name"] for p in operation["parameters"]} == names
        assert {"200", "400", "403"} <= set(operation["responses"])
        assert operation["security"] == [{"sessionCookie": []}]
        assert "text/csv" in operation["responses"]["200"]["content"]
    params = {p["name"]: p for p in document["paths"]["/api/v1/metrics"]["get"]["parameters"]}
    assert params["group_by"]["schema"]["enum"] == ["site", "asset", "asset_type", "model_version"]
    assert params["period"]["schema"]["enum"] == ["month", "week"]
    cookie = document["components"]["securitySchemes"]["sessionCookie"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie", "sessionid")


def test_the_documented_row_names_exactly_the_columns_the_code_returns(client):
    from alerts.metrics import API_FIELDS

    row = _openapi(client)["components"]["schemas"]["MetricsRow"]
    assert list(row["properties"]) == [*API_FIELDS, "false_alarms_by_reason"]
    assert set(row["required"]) == set(row["properties"]) and row["additionalProperties"] is False


def test_real_metrics_answers_match_the_documented_schemas(client, db):
    from tests.alerts.test_metrics_golden import build_golden_history

    golden = build_golden_history()
    document = _openapi(client)
    row_fields = set(document["components"]["schemas"]["MetricsRow"]["properties"])
    client.force_login(golden.engineer)
    for params in (
        {},
        {"group_by": "model_version", "period": "week"},
        {"group_by": "asset", "site": "north"},
    ):
        body = client.get("/api/v1/metrics", params).json()
        assert body["rows"], params
        assert _matches(document, "MetricsAnswer", body) == []
        assert all(set(row) <= row_fields for row in body["rows"])
    # A missed failure before any pump model was deployed: a row with a null key (and null rates).
    from alerts.services import record_missed_failure
    from tests.alerts.test_metrics_golden import at

    record_missed_failure(golden.p101, golden.tess, start=at(4, 10), end=at(4, 11), fault_type="seal")
    rows = client.get("/api/v1/metrics", {"group_by": "model_version", "start": "2026-04-01"}).json()["rows"]
    (april,) = [row for row in rows if row["period"] == "2026-04"]
    assert april["key"] is None and april["precision"] is None
    assert _matches(document, "MetricsRow", april) == []
    header = client.get("/api/v1/metrics.csv").content.decode().splitlines()[0]
    csv_example = document["paths"]["/api/v1/metrics.csv"]["get"]["responses"]["200"]["content"]["text/csv"]
    assert header == csv_example["example"].strip()
    bad = client.get("/api/v1/metrics", {"period": "year"})
    assert bad.status_code == 400 and _matches(document, "Error", bad.json()) == []
    assert bad.json()["param"] == "period"


def test_a_forbidden_metrics_answer_matches_the_documented_403(client, db):
    from tests.conftest import make_site, make_user

    document = _openapi(client)
    assert _matches(document, "Error", client.get("/api/v1/metrics").json()) == []
    client.force_login(make_user("tina", "technician", make_site("west")))
    response = client.get("/api/v1/metrics")
    assert response.status_code == 403 and _matches(document, "Error", response.json()) == []
    assert "403" in document["paths"]["/api/v1/metrics"]["get"]["responses"]


def test_a_503_answer_matches_the_documented_error(client, asset, gateway_token, monkeypatch):
    from django.test import Client

    document = _openapi(client)
    monkeypatch.setattr("plant.ingest.service.write_readings", _raise_operational_error)
    response = post_json(Client(raise_request_exception=False), gateway_token, {"readings": [reading()]})
    assert response.status_code == 503 and _matches(document, "Error", response.json()) == []
    assert "503" in document["paths"]["/api/v1/metrics"]["get"]["responses"]


def _raise_operational_error(*args, **kwargs):
    from django.db import OperationalError

    raise OperationalError("the database system is shutting down")


def test_a_readings_status_from_the_source_is_stored_as_its_quality_flag(client, asset, gateway_token):
    """An edge agent forwards what its OPC UA server said of each value: "uncertain" and "bad" are stored
    flagged as the bridge stores its own samples (shown on the charts, never scored); "good" or no status
    is a plain reading."""
    rows = [
        reading(ts=EPOCH0, value=1.0),
        {**reading(ts=EPOCH0 + 1, value=1.1), "status": "uncertain"},
        {**reading(ts=EPOCH0 + 2, value=9.9), "status": "bad"},
        {**reading(ts=EPOCH0 + 3, value=1.2), "status": "good"},
    ]
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.status_code == 200
    assert response.json()["accepted"] == 4
    flags = dict(Reading.objects.filter(sensor__key=VIB).values_list("value", "quality"))
    assert flags[1.1] & QualityFlag.SOURCE_UNCERTAIN and not flags[1.1] & QualityFlag.SOURCE_BAD
    assert flags[9.9] & QualityFlag.SOURCE_BAD
    assert not flags[1.0] & (QualityFlag.SOURCE_UNCERTAIN | QualityFlag.SOURCE_BAD)
    assert not flags[1.2] & (QualityFlag.SOURCE_UNCERTAIN | QualityFlag.SOURCE_BAD)


@pytest.mark.parametrize("status", ["stale", "GOOD", 1, True, ["bad"], {"x": 1}])
def test_an_unknown_status_rejects_its_row_naming_the_field_and_keeps_the_others(
    client, asset, gateway_token, status
):
    rows = [reading(ts=EPOCH0, value=1.0), {**reading(ts=EPOCH0 + 1, value=2.0), "status": status}]
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    error = rejected_errors(response)[1]
    assert error.startswith("status must be one of 'good', 'uncertain', 'bad'"), error
    assert list(Reading.objects.filter(sensor__key=VIB).values_list("value", flat=True)) == [1.0]


def test_a_reading_that_continues_an_earlier_one_ends_no_gap_and_one_without_the_field_still_does(
    client, asset, gateway_token
):
    """An edge agent's OPC UA value steady since long before it connected: the catch-up read at the value's
    own time, then values held from the connection on, the first of which states that it carries the read
    on (`continues`, as the bridge's own held values do). Flagged "after gap" before the field existed, at
    every connect of the agent. An older agent sends no such field: the gap stays flagged, as does one
    whose statement names a time that is not the previous reading's."""
    read_at = EPOCH0
    post_json(client, gateway_token, {"readings": [reading(ts=read_at, value=4.0)]})  # stored context
    rows = [
        {**reading(ts=read_at + 30, value=4.0), "continues": read_at},
        reading(ts=read_at + 31, value=4.0),
        reading(sensor=CUR, ts=read_at, value=12.0),
        {**reading(sensor=CUR, ts=read_at + 30, value=12.0), "continues": "2026-01-05T08:00:00Z"},
        reading(sensor=CUR, ts=read_at + 90, value=12.0),  # an older agent: no continues
        {**reading(sensor=CUR, ts=read_at + 150, value=12.0), "continues": read_at + 60},  # not the last
        {**reading(sensor=CUR, ts=read_at + 151, value=12.0), "continues": None},
    ]
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.json() == {"accepted": 7, "duplicates": 0, "rejected": []}
    gaps = {
        (key, int(ts.timestamp()) - read_at)
        for key, ts, quality in Reading.objects.values_list("sensor__key", "ts", "quality")
        if quality & QualityFlag.GAP
    }
    assert gaps == {(CUR, 90), (CUR, 150)}


@pytest.mark.parametrize(
    ("continues", "error"),
    [
        ("yesterday", "continues: unparseable timestamp: 'yesterday'"),
        ("2026-01-05T08:00:00", "continues: timestamp has no UTC offset"),
        (True, "continues: timestamp must be an ISO 8601 string or epoch seconds, not a boolean"),
        ([EPOCH0], "continues: timestamp must be an ISO 8601 string or epoch seconds"),
        ({"ts": EPOCH0}, "continues: timestamp must be an ISO 8601 string or epoch seconds"),
        (-1e12, "continues: timestamp out of range"),
        (EPOCH0 + 1, "continues must be a time before the reading's own ts"),
        (EPOCH0 + 5, "continues must be a time before the reading's own ts"),
    ],
)
def test_a_continues_that_is_no_earlier_time_rejects_its_row_naming_the_field_and_keeps_the_others(
    client, asset, gateway_token, continues, error
):
    rows = [
        reading(ts=EPOCH0, value=1.0),
        {**reading(ts=EPOCH0 + 1, value=2.0), "continues": continues},
        {**reading(ts=EPOCH0 + 2, value=3.0), "continues": EPOCH0 + 1},
    ]
    response = post_json(client, gateway_token, {"readings": rows})
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert rejected_errors(response)[1].startswith(error), rejected_errors(response)
    assert sorted(Reading.objects.filter(sensor__key=VIB).values_list("value", flat=True)) == [1.0, 3.0]
