"""Hostile rows and bodies (issue 11, defects 1, 6, 8 and 11b): a per-row error or a JSON 4xx, never a 500,
and the valid rows of the batch stored."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
import pytest
from django.db import connection, connections
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from plant.datasets.common import ingest_columns
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import Gateway, Reading
from tests.conftest import T0
from tests.plant.test_ingest_api import EPOCH0, URL, VIB, post_csv, post_json, reading, rejected_errors

pytestmark = pytest.mark.django_db


def post_raw(client, token: str, body: bytes, content_type: str = "application/json"):
    """A body sent byte for byte (the test client would re-encode a str)."""
    return client.generic("POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}")


def json_with(hostile: str) -> bytes:
    """A batch whose row 0 carries `hostile` as raw JSON text and whose row 1 is valid."""
    good = json.dumps(reading(ts=EPOCH0 + 1))
    return f'{{"readings": [{hostile}, {good}]}}'.encode()


def assert_only_the_good_row_is_stored(response, error: str) -> None:
    assert response.status_code == 200, response.content[:300]
    assert response.json()["accepted"] == 1
    assert rejected_errors(response) == {0: error}
    assert list(Reading.objects.values_list("sensor__key", "ts")) == [(VIB, T0 + timedelta(seconds=1))]


# --- defect 1: hostile rows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (
            f'{{"sensor": "a\\u0000b", "ts": {EPOCH0}, "value": 1}}',
            "sensor key contains a NUL character: 'a\\x00b'",
        ),
        (f'{{"sensor": "\\ud800", "ts": {EPOCH0}, "value": 1}}', "sensor key is not valid UTF-8: '\\ud800'"),
        (
            f'{{"sensor": "{VIB}", "ts": 1{"0" * 400}, "value": 1}}',
            "timestamp out of range (1970-01-01 to 9999-12-31)",
        ),
        (f'{{"sensor": "{VIB}", "ts": {EPOCH0}, "value": 9{"9" * 5000}}}', "value is not finite: inf"),
    ],
    ids=[
        "nul-in-sensor-key",
        "lone-surrogate-escape-in-sensor-key",
        "integer-ts-beyond-float",
        "integer-value-beyond-float",
    ],
)
def test_a_hostile_json_row_is_rejected_alone(client, asset, gateway_token, row, error):
    assert_only_the_good_row_is_stored(post_raw(client, gateway_token, json_with(row)), error)


def test_a_nul_character_in_a_csv_sensor_key_rejects_that_row_only(client, asset, gateway_token):
    response = post_csv(client, gateway_token, f"sensor,ts,value\na\x00b,{EPOCH0},1\n{VIB},{EPOCH0 + 1},2\n")
    assert_only_the_good_row_is_stored(response, "sensor key contains a NUL character: 'a\\x00b'")


def test_raw_surrogate_bytes_in_a_json_sensor_key_reject_that_row_only(client, asset, gateway_token):
    body = json_with(f'{{"sensor": "x", "ts": {EPOCH0}, "value": 1}}').replace(b'"x"', b'"\xed\xa0\x80"')
    response = post_raw(client, gateway_token, body)
    assert_only_the_good_row_is_stored(response, "sensor key is not valid UTF-8: '\\udced\\udca0\\udc80'")


def test_invalid_utf8_in_a_csv_row_rejects_that_row_only(client, asset, gateway_token):
    body = f"sensor,ts,value\n\xff,{EPOCH0},1\n{VIB},{EPOCH0 + 1},2\n".encode().replace(b"\xc3\xbf", b"\xff")
    response = post_raw(client, gateway_token, body, "text/csv")
    assert_only_the_good_row_is_stored(response, "sensor key is not valid UTF-8: '\\udcff'")


def test_a_value_nested_a_thousand_levels_deep_rejects_that_row_only(client, asset, gateway_token):
    nested = "[" * 1000 + "]" * 1000
    response = post_raw(
        client, gateway_token, json_with(f'{{"sensor": "{VIB}", "ts": {EPOCH0}, "value": {nested}}}')
    )
    assert_only_the_good_row_is_stored(response, "value is not a number: an array")


def test_a_body_nested_deeper_than_any_parser_reads_is_a_json_400(client, asset, gateway_token):
    nested = "[" * 100_000 + "]" * 100_000
    response = post_raw(
        client, gateway_token, json_with(f'{{"sensor": "{VIB}", "ts": {EPOCH0}, "value": {nested}}}')
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")
    assert not Reading.objects.exists()


def test_a_csv_field_over_the_csv_size_limit_rejects_that_row_only(client, asset, gateway_token):
    response = post_csv(
        client, gateway_token, f"sensor,ts,value\n{'x' * 200_000},{EPOCH0},1\n{VIB},{EPOCH0 + 1},2\n"
    )
    assert_only_the_good_row_is_stored(
        response, "row is not valid CSV: field larger than field limit (131072)"
    )


def test_a_bare_carriage_return_in_csv_ends_a_line_instead_of_failing_the_body(client, asset, gateway_token):
    response = post_csv(client, gateway_token, f"sensor,ts,value\nx\r{VIB},{EPOCH0 + 1},2\n")
    assert_only_the_good_row_is_stored(response, "expected 3 fields (sensor,ts,value), got 1")


def test_a_huge_sensor_key_is_an_unknown_sensor_and_is_not_sent_to_the_database(client, asset, gateway_token):
    key = "k" * 1_000_000
    response = post_raw(client, gateway_token, json_with(json.dumps(reading(sensor=key))))
    assert_only_the_good_row_is_stored(response, f"unknown sensor: {key[:100]!r}")


@pytest.mark.parametrize(
    "content_type", [MULTIPART_CONTENT, "multipart/form-data", "application/x-www-form-urlencoded"]
)
def test_a_form_body_is_a_json_415(client, asset, gateway_token, content_type):
    body = encode_multipart(BOUNDARY, {"readings": json.dumps([reading()])})
    response = post_raw(client, gateway_token, body, content_type)
    assert response.status_code == 415
    assert response["Content-Type"] == "application/json"
    assert "send application/json or text/csv" in response.json()["error"]
    assert not Reading.objects.exists()


# --- defect 6: the oldest accepted timestamp --------------------------------------------------------------


def test_a_reading_from_1970_is_rejected_naming_the_age_limit(client, asset, gateway_token):
    response = post_json(client, gateway_token, {"readings": [reading(ts=0), reading(ts=EPOCH0 + 1)]})
    assert_only_the_good_row_is_stored(response, "timestamp is more than 3650 days in the past")


def test_the_age_limit_comes_from_the_setting(client, asset, gateway_token, settings):
    settings.VIGIL_INGEST_MAX_AGE_DAYS = 2
    now = time.time()
    rows = [reading(ts=now - 3 * 86400), reading(ts=now - 86400)]
    response = post_json(client, gateway_token, {"readings": rows})
    assert rejected_errors(response) == {0: "timestamp is more than 2 days in the past"}
    assert response.json()["accepted"] == 1


def test_a_caller_replaying_history_passes_its_own_age_bound(asset):
    ts = np.array([datetime(2000, 1, 1, tzinfo=dt_timezone.utc).timestamp(), EPOCH0])
    batch = ParsedBatch.from_arrays([VIB, VIB], ts, np.array([1.0, 2.0]))
    assert ingest_readings(None, batch).rejected == [(0, "timestamp is more than 3650 days in the past")]
    assert ingest_readings(None, batch, max_age_s=float("inf")).accepted == 1  # the 2000 row, now stored
    assert Reading.objects.count() == 2


def test_dataset_loaders_store_history_older_than_the_gateways_limit(asset):
    # C-MAPSS cycles are stamped from 2000-01-01: its loader must keep them.
    start = datetime(2000, 1, 1, tzinfo=dt_timezone.utc).timestamp()
    ts = start + 3600.0 * np.arange(5)
    accepted, duplicates, rejected = ingest_columns({"vibration": VIB}, ts, {"vibration": np.ones(5)})
    assert (accepted, duplicates, rejected) == (5, 0, 0)


# --- defect 8: the database unavailable -------------------------------------------------------------------


def _outage(*args, **kwargs):
    raise connection.Database.OperationalError("server closed the connection unexpectedly")


def test_a_database_outage_answers_the_api_with_a_json_503_and_retry_after(asset, gateway_token, monkeypatch):
    monkeypatch.setattr(Gateway, "authenticate", classmethod(lambda cls, token: _outage()))
    response = post_json(Client(raise_request_exception=False), gateway_token, {"readings": [reading()]})
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response.json() == {"error": "the database is temporarily unavailable: retry in 5 s"}


def test_a_driver_error_that_reaches_the_view_unwrapped_is_a_503_too(asset, gateway_token, monkeypatch):
    # psycopg's COPY is called through Django's cursor wrapper untranslated: its errors are the driver's.
    monkeypatch.setattr("plant.ingest.service.write_readings", _outage)
    response = post_json(Client(raise_request_exception=False), gateway_token, {"readings": [reading()]})
    assert response.status_code == 503 and response["Retry-After"] == "5"


def test_a_database_outage_answers_a_page_with_a_short_503_page(technician, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(technician)
    # Every query of the request fails, the session look-up first.
    monkeypatch.setattr(type(connections["default"]), "create_cursor", _outage)
    response = client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"temporarily unavailable" in response.content


def test_other_errors_are_not_disguised_as_an_outage(asset, gateway_token, monkeypatch):
    monkeypatch.setattr(Gateway, "authenticate", classmethod(lambda cls, token: 1 / 0))
    response = post_json(Client(raise_request_exception=False), gateway_token, {"readings": [reading()]})
    assert response.status_code == 500


@pytest.mark.django_db(transaction=True)
def test_a_database_that_cannot_be_reached_answers_503(asset, gateway_token):
    """A real failure, not a stub: PostgreSQL on a port nobody listens on; SQLite locked by another writer."""
    client = Client(raise_request_exception=False)
    if connection.vendor == "postgresql":
        with socket.socket() as probe:  # a port that was free a moment ago
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        port = connection.settings_dict["PORT"]
        connection.close()
        connection.settings_dict["PORT"] = closed_port
        try:
            response = post_json(client, gateway_token, {"readings": [reading()]})
        finally:
            connection.close()
            connection.settings_dict["PORT"] = port
    else:
        # The in-memory test database is shared by every connection to its URI: hold its write lock.
        holder = sqlite3.connect(connection.settings_dict["NAME"], uri=True, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE plant_gateway SET name = name")
        try:
            response = post_json(client, gateway_token, {"readings": [reading()]})
        finally:
            holder.rollback()
            holder.close()
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == "5"
    assert "temporarily unavailable" in response.json()["error"]
    assert post_json(client, gateway_token, {"readings": [reading()]}).json()["accepted"] == 1
