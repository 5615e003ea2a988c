from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from plant.charts import asset_figure, max_points, trace_points, uses_buckets
from plant.choices import QualityFlag
from plant.downsample import lttb_indices, minmax_indices, minmax_points, thin_indices
from plant.forms import TimeRange
from plant.series import load_buckets, load_raw
from tests.conftest import T0, make_readings


def noisy_series_with_spike(n: int = 100_000, spike_at: int = 54_321) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(n, dtype=float)
    y = 10 + rng.normal(0, 0.1, n)
    y[spike_at] = 50.0
    return t, y


def test_minmax_keeps_a_single_sample_spike_within_the_budget():
    t, y = noisy_series_with_spike()
    keep = minmax_indices(t, y, 2000)
    assert len(keep) <= 2000
    assert 54_321 in keep
    assert y[keep].max() == 50.0
    assert np.all(np.diff(keep) > 0)


def test_minmax_returns_short_series_whole():
    t = np.arange(10, dtype=float)
    assert list(minmax_indices(t, t * 2, 2000)) == list(range(10))


def test_minmax_ignores_nan_values():
    t = np.arange(10_000, dtype=float)
    y = np.sin(t / 100)
    y[::7] = np.nan
    keep = minmax_indices(t, y, 200)
    assert not np.isnan(y[keep]).any()


def test_lttb_stays_within_budget_and_keeps_the_ends_and_the_spike():
    t, y = noisy_series_with_spike()
    keep = lttb_indices(t, y, 2000)
    assert len(keep) <= 2000
    assert keep[0] == 0 and keep[-1] == len(t) - 1
    assert 54_321 in keep


def test_minmax_points_draws_two_points_per_bucket_and_one_where_flat():
    x, y = minmax_points(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0]), np.array([3.0, 1.0, 5.0]))
    assert list(x) == [0.0, 0.0, 1.0, 2.0, 2.0]
    assert sorted(y[:2]) == [1.0, 3.0] and y[2] == 1.0 and sorted(y[3:]) == [0.0, 5.0]


def test_thin_indices_spreads_evenly():
    assert list(thin_indices(5, 10)) == [0, 1, 2, 3, 4]
    idx = thin_indices(1000, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 999


@pytest.mark.django_db
def test_sql_buckets_keep_the_spike_and_its_flag(asset):
    sensor = asset.sensors.get(role__key="vibration")
    values = np.full(20_000, 5.0)
    values[12_345] = 90.0
    quality = np.zeros(20_000, dtype=int)
    quality[12_345] = QualityFlag.SPIKE
    make_readings(sensor, T0, values, quality=quality)
    series = load_buckets([sensor.pk], T0, T0 + timedelta(seconds=20_000), width_s=20.0)[sensor.pk]
    assert len(series.index) == 1000
    assert series.count.sum() == 20_000
    assert series.hi.max() == 90.0 and series.lo.min() == 5.0
    spike_bucket = 12_345 // 20
    assert series.index[series.flag_counts[QualityFlag.SPIKE] > 0].tolist() == [spike_bucket]
    assert series.flagged_hi[series.index == spike_bucket][0] == 90.0
    assert series.flag_counts[QualityFlag.STUCK].sum() == 0


@pytest.mark.django_db
def test_sql_buckets_agree_with_numpy_on_bucket_boundaries(asset):
    sensor = asset.sensors.get(role__key="current")
    make_readings(sensor, T0 + timedelta(milliseconds=250), np.arange(600), period_s=1.0)
    series = load_buckets([sensor.pk], T0, T0 + timedelta(minutes=10), width_s=60.0)[sensor.pk]
    assert series.index.tolist() == list(range(10))
    assert series.count.tolist() == [60] * 10
    assert series.lo.tolist() == [60.0 * i for i in range(10)]
    assert series.mean[0] == pytest.approx(29.5)


@pytest.mark.django_db
def test_chart_uses_raw_rows_for_a_short_range(asset, django_assert_num_queries):
    sensors = list(asset.sensors.select_related("role"))
    for sensor in sensors:
        make_readings(sensor, T0, np.linspace(0, 10, 600))
    span = TimeRange(T0, T0 + timedelta(minutes=10), "1h")
    assert not any(uses_buckets(s, span.seconds, 2000) for s in sensors)
    assert len(load_raw([sensors[0].pk], span.start, span.end)[sensors[0].pk].t) == 600
    with django_assert_num_queries(1):
        figure = asset_figure(sensors, span)
    assert trace_points(figure) == [600] * len(sensors)


@pytest.mark.django_db
def test_chart_of_a_long_dense_range_stays_within_budget_and_shows_flags(asset, settings):
    settings.VIGIL_CHART_MAX_POINTS = 200
    sensor = asset.sensors.select_related("role").get(role__key="pressure")
    values = np.full(30_000, 2.0)
    values[777] = 99.0
    quality = np.zeros(30_000, dtype=int)
    quality[777] = QualityFlag.SPIKE | QualityFlag.OUT_OF_RANGE
    make_readings(sensor, T0, values, quality=quality)
    span = TimeRange(T0, T0 + timedelta(seconds=30_000), "24h")
    assert uses_buckets(sensor, span.seconds, 200)
    figure = asset_figure([sensor], span, "Europe/Berlin")
    line, *markers = figure["data"]
    assert len(line["x"]) <= 200
    assert max(line["y"]) == 99.0
    assert {m["name"] for m in markers} == {f"{sensor.key}: spike", f"{sensor.key}: out of range"}
    assert all(m["y"] == [99.0] for m in markers)
    # 08:00 UTC is 09:00 in Berlin in January; Plotly gets local wall-clock times.
    assert figure["layout"]["xaxis"]["range"][0].startswith("2026-01-05 09:00:00")
    assert [a["text"] for a in figure["layout"]["annotations"] if a.get("name") == "row-title"] == [
        "Pressure (bar)"
    ]


@pytest.mark.django_db
def test_each_row_is_titled_by_a_horizontal_line_in_the_gap_above_it_wrapped_to_a_phones_width(asset):
    # A rotated y-axis title longer than its ~150 px row was cut off, worst at a phone's width.
    sensors = list(asset.sensors.select_related("role").order_by("role__key"))
    sensors[0].role.label = "Vibration RMS, accelerometer 1 of the drive end bearing"
    span = TimeRange(T0, T0 + timedelta(hours=1), "1h")

    layout = asset_figure(sensors, span, "UTC")["layout"]

    titles = [a for a in layout["annotations"] if a.get("name") == "row-title"]
    assert len(titles) == len(sensors) >= 2
    axes = [layout["yaxis" if row == 1 else f"yaxis{row}"] for row in range(1, len(sensors) + 1)]
    assert not any("title" in axis for axis in axes)
    lines = titles[0]["text"].split("<br>")
    assert " ".join(lines) == f"{sensors[0].role.label} ({sensors[0].unit})"
    assert len(lines) == 2 and all(len(line) <= 34 for line in lines)
    assert titles[1]["text"] == f"{sensors[1].role.label} ({sensors[1].unit})"
    plot_px = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    title_px = 2 * 15  # two lines of 15 px
    assert layout["margin"]["t"] >= title_px  # the first title fits above the plot
    for title, axis in zip(titles, axes, strict=True):
        assert (title["y"], title["yanchor"], title["xanchor"]) == (axis["domain"][1], "bottom", "left")
    for above, axis in zip(axes, axes[1:], strict=False):
        # the gap between two rows holds the lower row's title
        assert (above["domain"][0] - axis["domain"][1]) * plot_px >= title_px


@pytest.mark.django_db
def test_chart_line_breaks_at_a_data_gap_by_the_ingest_gap_rule(asset, settings):
    # QA: 05:00 to 06:35 without readings was drawn as a straight line across the outage.
    sensor = asset.sensors.select_related("role").get(role__key="pressure")
    make_readings(sensor, T0, np.full(60, 2.0))
    make_readings(sensor, T0 + timedelta(minutes=95), np.full(60, 3.0))
    # Two readings gap_factor periods apart are not a gap by the rule: no break there.
    make_readings(sensor, T0 + timedelta(minutes=95, seconds=59 + settings.VIGIL_QUALITY_GAP_FACTOR), [3.0])
    span = TimeRange(T0, T0 + timedelta(minutes=100), "1h")
    assert not uses_buckets(sensor, span.seconds, max_points())
    line = asset_figure([sensor], span)["data"][0]
    assert line["y"].count(None) == 1
    at = line["y"].index(None)
    assert line["y"][at - 1] == 2.0 and line["y"][at + 1] == 3.0
    assert line["x"][at - 1] < line["x"][at] < line["x"][at + 1]


@pytest.mark.django_db
def test_bucketed_chart_line_breaks_at_a_long_data_gap_only(asset, settings):
    settings.VIGIL_CHART_MAX_POINTS = 200
    sensor = asset.sensors.select_related("role").get(role__key="pressure")
    make_readings(sensor, T0, np.full(10_000, 2.0))
    make_readings(sensor, T0 + timedelta(seconds=20_000), np.full(10_000, 3.0))
    span = TimeRange(T0, T0 + timedelta(seconds=30_000), "24h")
    assert uses_buckets(sensor, span.seconds, 200)
    line = asset_figure([sensor], span)["data"][0]
    assert line["y"].count(None) == 1
    at = line["y"].index(None)
    assert line["y"][at - 1] == 2.0 and line["y"][at + 1] == 3.0
