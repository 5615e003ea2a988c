"""Drift evaluated over a run with many new windows (the first scoring of an asset's history, a backlog, a
gateway's minutes-long batch): one evaluation per DRIFT_BIN_S, each vouching for its own stretch, so one
stray finding cannot open "check sensor X" on a healthy pump (it did on about one e2e world start in 20)."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.models import Alert
from alerts.services import sensor_faults
from alerts.services.sensor_faults import drift_evaluations
from plant.choices import QualityFlag
from plant.models import Reading
from plant.quality import DRIFT_BIN_S
from tests.alerts.test_sensor_faults import HOUR, _apply, _ends, _healthy, _sensor

pytestmark = pytest.mark.django_db


def _findings(monkeypatch, sensor_index: int, calls: list[int], found_on: set[int] | None) -> None:
    """find_drift reports column `sensor_index` drifting on the calls numbered in `found_on` (every call
    when None), and counts its calls."""

    def fake(medians, **_options):
        calls.append(len(calls))
        out = np.zeros(medians.shape[1], dtype=bool)
        out[sensor_index] = found_on is None or (len(calls) - 1) in found_on
        return out

    monkeypatch.setattr(sensor_faults, "find_drift", fake)


def _column(asset, role: str) -> int:
    return sorted(asset.sensors.values_list("pk", flat=True)).index(_sensor(asset, role).pk)


def test_one_stray_drift_finding_in_a_batch_of_history_opens_no_alert(asset, champion, monkeypatch):
    _healthy(asset, HOUR)
    calls: list[int] = []
    _findings(monkeypatch, _column(asset, "temperature"), calls, found_on=set())
    ends = _ends(0, 360)  # the hour scored at once, as an asset's first run does
    assert _apply(asset, champion, ends) == []
    evaluations = len(calls)

    # The same run with one stray finding, at the last evaluation (the one a single evaluation would be).
    calls.clear()
    _findings(monkeypatch, _column(asset, "temperature"), calls, found_on={evaluations - 1})
    assert _apply(asset, champion, ends) == []
    assert not Alert.objects.exists()
    flagged = Reading.objects.filter(quality=int(QualityFlag.DRIFT))
    assert 0 < flagged.count() <= DRIFT_BIN_S  # that finding vouches for its own 30 s, not 4 minutes
    assert 1 < evaluations <= 11  # one per 30 s over the last 5 minutes: a backlog's cost stays bounded


def test_findings_that_persist_through_one_batch_still_open_the_alert(asset, champion, monkeypatch):
    _healthy(asset, HOUR)
    _findings(monkeypatch, _column(asset, "temperature"), [], found_on=None)
    _apply(asset, champion, _ends(HOUR - 300, 30))
    alert = Alert.objects.get()
    assert alert.sensor == _sensor(asset, "temperature")


def test_drift_is_evaluated_once_per_bin_over_the_last_span_of_a_run():
    # An hour of new windows (an asset's first run): one evaluation per 30-s bin over the last 5 minutes.
    evaluations = drift_evaluations(0.0, 3600.0, 300.0)
    assert [end for end, _ in evaluations] == [float(e) for e in range(3300, 3601, 30)]
    assert all(end - since == DRIFT_BIN_S for end, since in evaluations)
    # The scorer's usual run, one new 10-s window: an evaluation only when it completes a bin.
    assert drift_evaluations(3600.0, 3610.0, 300.0) == []
    assert drift_evaluations(3620.0, 3630.0, 300.0) == [(3630.0, 3600.0)]
    assert drift_evaluations(3600.0, 3620.0, 300.0) == []
