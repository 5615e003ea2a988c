"""Parsing batches into columns: the bulk path, the per-row error path and the shape errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from plant.ingest import BatchError, ParsedBatch, parse_csv, parse_json

T0_US = 1_767_600_000_000_000  # 2026-01-05T08:00:00Z


def as_json(rows) -> bytes:
    return json.dumps({"readings": rows}).encode()


def test_a_clean_json_batch_becomes_columns_in_utc_microseconds():
    batch = parse_json(
        as_json(
            [
                {"sensor": "a", "ts": "2026-01-05T10:00:00+02:00", "value": 1},
                {"sensor": "b", "ts": "2026-01-05T08:00:00.5Z", "value": 2.5},
            ]
        ),
        100,
    )
    assert batch.keys == ["a", "b"]
    assert batch.ts_us.tolist() == [T0_US, T0_US + 500_000]
    assert batch.values.tolist() == [1.0, 2.5]
    assert batch.index.tolist() == [0, 1]
    assert batch.errors == []


def test_epoch_seconds_keep_microsecond_precision():
    batch = parse_json(as_json([{"sensor": "a", "ts": 1767600000.123456, "value": 1}]), 10)
    assert batch.ts_us.tolist() == [T0_US + 123_456]


def test_mixed_iso_and_epoch_timestamps_in_one_batch_are_both_understood():
    batch = parse_json(
        as_json(
            [
                {"sensor": "a", "ts": 1767600000, "value": 1},
                {"sensor": "a", "ts": "2026-01-05T08:00:01Z", "value": 1},
            ]
        ),
        10,
    )
    assert batch.ts_us.tolist() == [T0_US, T0_US + 1_000_000]


def test_bad_rows_are_reported_with_their_index_and_the_good_rows_kept():
    rows = [
        {"sensor": "a", "ts": 1767600000, "value": 1},
        {"sensor": 7, "ts": 1767600000, "value": 1},
        {"sensor": "a", "ts": False, "value": 1},
        {"sensor": "a", "ts": -5, "value": 1},
        {"sensor": "a", "ts": 1767600000, "value": [1]},
        {"sensor": "a", "ts": 1767600001, "value": 2},
    ]
    batch = parse_json(as_json(rows), 10)
    assert batch.index.tolist() == [0, 5]
    assert batch.total == 6
    errors = dict(batch.errors)
    assert errors[1] == "sensor must be a string (the sensor key)"
    assert errors[2].startswith("timestamp must be an ISO 8601 string or epoch seconds")
    assert errors[3].startswith("timestamp out of range")
    assert errors[4] == "value is not a number: [1]"


def test_a_row_gets_one_message_even_with_several_problems():
    batch = parse_json(as_json([{"value": "x"}]), 10)
    assert batch.errors == [(0, "missing field 'sensor'")]


def test_the_batch_limit_is_a_413_batch_error():
    with pytest.raises(BatchError) as caught:
        parse_json(as_json([{"sensor": "a", "ts": 1, "value": 1}] * 3), 2)
    assert caught.value.status == 413


def test_csv_epoch_and_iso_rows_parse_and_short_rows_are_rejected():
    text = "sensor,ts,value\na,1767600000,1.5\nb,2026-01-05T08:00:00Z,-2\nc,1767600000\nd,1767600000,abc\n"
    batch = parse_csv(text.encode(), 10)
    assert batch.keys == ["a", "b"]
    assert batch.ts_us.tolist() == [T0_US, T0_US]
    assert dict(batch.errors) == {
        2: "expected 3 fields (sensor,ts,value), got 2",
        3: "value is not a number: 'abc'",
    }


def test_a_csv_header_is_matched_without_regard_to_case_spaces_or_a_bom():
    batch = parse_csv("\ufeffSensor, TS ,Value\r\na,1767600000,1\r\n".encode(), 10)
    assert batch.keys == ["a"]


def test_a_csv_with_only_a_header_is_an_empty_batch():
    assert len(parse_csv(b"sensor,ts,value\n", 10)) == 0


def test_invalid_utf8_in_a_csv_row_rejects_that_row_only():
    batch = parse_csv(
        b"sensor,ts,value\n\xff\xfe,1767600000,2\na,1767600000,\xed\xa0\x80\nb,1767600000,3\n", 10
    )
    assert batch.keys == ["b"]
    assert batch.errors[0] == (0, "sensor key is not valid UTF-8: '\\udcff\\udcfe'")
    assert batch.errors[1][0] == 1 and batch.errors[1][1].startswith("value is not a number")


def test_trusted_arrays_build_a_batch_and_still_reject_non_finite_values():
    ts = np.array(["2026-01-05T08:00:00", "2026-01-05T08:00:01"], dtype="datetime64[us]")
    batch = ParsedBatch.from_arrays(["a", "a"], ts, np.array([1.0, np.nan]))
    assert batch.ts_us.tolist() == [T0_US]
    assert batch.errors == [(1, "value is not finite: nan")]


def test_iso_timestamps_of_every_common_shape_match_fromisoformat_to_the_microsecond():
    rng = np.random.default_rng(3)
    stamps = []
    for seconds, minutes, micro in zip(
        rng.uniform(0, 4e9, 3000),
        rng.choice([0, 120, -330, 840, -720], 3000),
        rng.choice([0, 123000, 999999], 3000),
    ):
        moment = datetime.fromtimestamp(seconds, timezone(timedelta(minutes=int(minutes))))
        moment = moment.replace(microsecond=int(micro))
        stamps += [
            moment.isoformat(),
            moment.isoformat(timespec="milliseconds"),
            moment.isoformat().replace("+00:00", "Z"),
        ]
    bulk = parse_json(as_json([{"sensor": "a", "ts": s, "value": 1} for s in stamps]), 10_000)
    expected = [round(datetime.fromisoformat(s).timestamp() * 1e6) for s in stamps]
    assert bulk.ts_us.tolist() == expected


def test_an_impossible_date_in_a_bulk_batch_is_named_by_the_row_path():
    rows = [
        {"sensor": "a", "ts": "2026-01-05T08:00:00Z", "value": 1},
        {"sensor": "a", "ts": "2026-02-29T08:00:00Z", "value": 1},
    ]
    batch = parse_json(as_json(rows), 10)
    assert batch.errors == [(1, "unparseable timestamp: '2026-02-29T08:00:00Z'")]


def test_a_csv_header_line_the_csv_module_refuses_is_a_batch_error_naming_the_header():
    with pytest.raises(
        BatchError, match="CSV header must be 'sensor,ts,value', got a line that is not valid"
    ):
        parse_csv(("s" * 200_000 + ",ts,value\na,1767600000,1\n").encode(), 10)


def test_a_csv_body_of_only_a_byte_order_mark_is_a_batch_error():
    with pytest.raises(BatchError, match="no header line"):
        parse_csv(b"\xef\xbb\xbf", 10)
