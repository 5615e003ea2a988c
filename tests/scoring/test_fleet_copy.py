"""The fleet sweep's bulk paths: the readings read as a binary COPY of per-sensor arrays, the Score rows
written from columns (a binary COPY on PostgreSQL), and the healthy assets of a chunk left out of the alert
rule engine — each gives exactly what the row-by-row path gives."""

from __future__ import annotations

import struct
from unittest import mock

import numpy as np
import pytest

from alerts.models import Score
from alerts.scoring import _insert_scores, _utc, score_assets
from alerts.services import ScoredWindow, apply_scores
from alerts.services.lifecycle import rules_needed
from plant import series
from plant.pgcopy import PG_EPOCH_OFFSET_US, pg_copy_series
from plant.series import read_readings
from tests.conftest import T0, make_asset
from tests.scoring.conftest import CLEAR, OPEN, START_S, fault, ingest, vibration_model

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"


def _array(code: str, oid: int, values: list, width: int) -> bytes:
    body = struct.pack(">iiiii", 1, 0, oid, len(values), 1) + b"".join(
        struct.pack(">i" + code, width, v) for v in values
    )
    return struct.pack(">i", len(body)) + body


def _series_row(sensor: int, ts_us: list[int], values: list[float], quality: list[int]) -> bytes:
    """One row as PostgreSQL's binary COPY writes (sensor bigint, ts timestamptz[], float8[], smallint[])."""
    return (
        struct.pack(">hiq", 4, 8, sensor)
        + _array("q", 1184, [t - PG_EPOCH_OFFSET_US for t in ts_us], 8)
        + _array("d", 701, values, 8)
        + _array("h", 21, quality, 2)
    )


def test_the_series_stream_gives_flat_columns_and_refuses_anything_else():
    t = 1_700_000_000_000_000
    rows = _series_row(7, [t, t + 1_000_001], [1.5, -2.0], [0, 3]) + _series_row(9, [t + 5], [4.25], [1])

    sid, ts_us, values, quality = pg_copy_series(HEADER + rows + TRAILER)

    assert sid.tolist() == [7, 7, 9]
    assert ts_us.tolist() == [t, t + 1_000_001, t + 5]
    assert values.tolist() == [1.5, -2.0, 4.25]
    assert quality.tolist() == [0, 3, 1] and quality.dtype == np.uint16
    assert [len(c) for c in pg_copy_series(HEADER + TRAILER)] == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="truncated"):
        pg_copy_series(HEADER + rows[:-3] + TRAILER)
    with pytest.raises(ValueError, match="not a binary COPY stream"):
        pg_copy_series(rows + TRAILER)
    null_value = _series_row(7, [t], [1.0], [0]).replace(
        struct.pack(">id", 8, 1.0), struct.pack(">id", -1, 1.0)
    )
    with pytest.raises(ValueError):
        pg_copy_series(HEADER + null_value + TRAILER)
    three_fields = struct.pack(">h", 3) + _series_row(7, [t], [1.0], [0])[2:]
    with pytest.raises(ValueError, match="is not"):
        pg_copy_series(HEADER + three_fields + TRAILER)


@pytest.mark.postgres
def test_a_sensor_whose_arrays_come_out_of_time_order_is_sorted(asset, monkeypatch):
    ingest(asset, START_S, 30)
    sensors = list(asset.sensors.order_by("pk").values_list("pk", flat=True))
    expected = read_readings(sensors, T0, _utc(START_S + 60))
    parse = series.pg_copy_series

    def reversed_arrays(buffer):
        sid, ts, values, quality = parse(buffer)
        order = np.lexsort((-ts, sid))  # every sensor's readings newest first
        return sid[order], ts[order], values[order], quality[order]

    monkeypatch.setattr(series, "pg_copy_series", reversed_arrays)
    got = read_readings(sensors, T0, _utc(START_S + 60))

    for column, want in zip(got, expected):
        np.testing.assert_array_equal(column, want)


def test_score_rows_store_the_window_ends_and_flags_the_orm_stores_and_skip_stored_windows(asset):
    version = vibration_model(asset.asset_type)
    # A fraction of a microsecond: rounded to the microsecond datetime.fromtimestamp gives.
    ends = np.array([START_S + 10, START_S + 20.0000125, START_S + 30.5])
    Score.objects.create(asset=asset, model_version=version, window_end=_utc(ends[0]), score=-1.0)

    _insert_scores(
        version,
        np.array([asset.pk] * 3),
        ends,
        np.array([1.0, 2.0, 3.0]),
        {1: {"vibration": 4, "current": 1}},
    )

    stored = list(Score.objects.order_by("window_end").values_list("window_end", "score", "flagged"))
    assert stored == [
        (_utc(ends[0]), -1.0, {}),  # already there: kept, not doubled, no error
        (_utc(ends[1]), 2.0, {"vibration": 4, "current": 1}),
        (_utc(ends[2]), 3.0, {}),
    ]


def test_the_rule_engine_is_asked_only_for_assets_that_need_it(asset):
    version = vibration_model(asset.asset_type)
    calm = [OPEN - 1.0, CLEAR]

    assert not rules_needed(version, asset, calm, with_active=set())
    assert rules_needed(version, asset, calm, with_active={asset.pk})  # an active alert to update
    assert rules_needed(version, asset, [*calm, OPEN + 0.1], with_active=set())
    assert not rules_needed(
        version, asset, [OPEN + 0.1], with_active=set(), thresholds={asset.pk: (20.0, 8.0)}
    )
    windows = [ScoredWindow(end=T0, score=s, x=None, flagged={}) for s in calm]
    with mock.patch("alerts.services.lifecycle._active_alert") as looked_up:
        assert not rules_needed(version, asset, calm, with_active=set())
        assert apply_scores(asset, version, windows, with_active=set()) == []
    assert not looked_up.called  # the same early return, without a query


def test_a_sweep_of_healthy_and_sick_assets_calls_the_rule_engine_for_the_sick_one_only(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(3)]
    vibration_model(assets[0].asset_type)
    for i, asset in enumerate(assets):
        ingest(asset, START_S, 600, vibration=fault(START_S + 300, START_S + 420) if i == 1 else None)

    with mock.patch("alerts.scoring.apply_scores", return_value=[]) as applied:
        score_assets([a.pk for a in assets])

    assert [call.args[0].pk for call in applied.call_args_list] == [assets[1].pk]
    assert Score.objects.filter(asset__in=assets).count() == 3 * len(range(30, 600, 10))
