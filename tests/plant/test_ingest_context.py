"""load_context: the stored readings a batch's quality flags are computed against (both backends)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from plant.ingest.store import datetime_to_us, load_context
from plant.models import Reading
from tests.conftest import T0, make_readings

pytestmark = pytest.mark.django_db


def sorted_rows(columns) -> list[tuple[int, int, float]]:
    sid, ts, value = columns
    assert (sid.dtype, ts.dtype, value.dtype) == (np.int64, np.int64, np.float64)
    return sorted(zip(sid.tolist(), ts.tolist(), value.tolist()))


def test_it_returns_the_last_readings_before_the_batch_and_those_inside_its_span(asset):
    vib, cur = asset.sensors.order_by("pk")[:2]
    make_readings(vib, T0, [float(i) + 0.25 for i in range(10)])
    make_readings(cur, T0, [-1.5, 2.5, 3.5])
    first, last = datetime_to_us(T0 + timedelta(seconds=6)), datetime_to_us(T0 + timedelta(seconds=7))

    rows = sorted_rows(
        load_context(np.array([vib.pk, cur.pk]), np.array([first, first]), np.array([last, last]), 3, 100)
    )

    at = lambda s: datetime_to_us(T0 + timedelta(seconds=s))  # noqa: E731
    expected_vib = [(vib.pk, at(s), s + 0.25) for s in (3, 4, 5, 6, 7)]
    expected_cur = [(cur.pk, at(s), v) for s, v in ((0, -1.5), (1, 2.5), (2, 3.5))]
    assert rows == sorted(expected_vib + expected_cur)


def test_timestamps_keep_their_microseconds(asset):
    vib = asset.sensors.first()
    moment = T0 + timedelta(microseconds=123_457)
    Reading.objects.create(sensor=vib, ts=moment, value=7.0)
    later = datetime_to_us(T0 + timedelta(seconds=5))

    rows = sorted_rows(load_context(np.array([vib.pk]), np.array([later]), np.array([later]), 30, 100))

    assert rows == [(vib.pk, datetime_to_us(moment), 7.0)]


def test_a_sensor_without_stored_readings_has_no_context(asset):
    vib = asset.sensors.first()
    now = datetime_to_us(T0)

    assert sorted_rows(load_context(np.array([vib.pk]), np.array([now]), np.array([now]), 30, 100)) == []
    none = np.empty(0, np.int64)
    assert sorted_rows(load_context(none, none, none, 30, 100)) == []
