"""The asset chart: one stacked row per sensor with a shared time axis, as a Plotly figure dict.

Series are read at the coarsest level that still fills the chart (plant.rollups.level_for): raw rows
when the range is small, SQL buckets of raw rows up to about half a day, then the 1-minute and, from
about six weeks, the 1-hour rollups, bucketed again by the database; plant.downsample thins them so no
trace carries more than settings.VIGIL_CHART_MAX_POINTS points, however long the range. Flagged readings get marker traces, one per quality flag, in the flag's colour.
The line breaks (a null point) where the readings have a gap by the ingest's GAP rule (detection.quality.gap_before),
so a link outage is not drawn as a straight line; each gap adds one point beyond the budget.

Each row is titled by a horizontal line above it (the sensor's role and unit), not a y-axis title: a rotated
title longer than its row (~150 px) was cut off, and on a phone it also took a column of the plot's width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime, timezone as dt_timezone
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings

from plant.choices import QualityFlag
from plant.downsample import minmax_indices, minmax_points, thin_indices
from plant.forms import TimeRange
from plant.ingest.service import quality_rules
from plant.models import Sensor
from detection.quality import gap_before
from plant.rollups import level_for, load_level_buckets
from plant.series import BucketSeries, RawSeries, load_buckets, load_raw

# Above this many expected readings per trace the database buckets the data instead of sending rows.
RAW_FACTOR = 4
LINE_COLOUR = "#1f4e79"
# Plotly treats a magnitude above Number.MAX_VALUE * 1e-4 (~1.8e304) as "not a number" and breaks the line
# there (a NaN path). Stored values beyond DRAW_LIMIT are drawn at it, their hover text shows them exactly.
DRAW_LIMIT = 1e300
NO_READINGS = "No readings in this range"
# A row title wraps at this many characters: about 230 px at 12 px, the plot's width at 360 px wide.
ROW_TITLE_WRAP = 34
ROW_TITLE_LINE_PX = 15
ROW_TITLE_FONT = {"size": 12, "color": "#111827"}


def max_points() -> int:
    return settings.VIGIL_CHART_MAX_POINTS


def uses_buckets(sensor: Sensor, seconds: float, budget: int) -> bool:
    """Judged from the sensor's sample period, so deciding costs no query."""
    return seconds / _period(sensor) > RAW_FACTOR * budget


def _period(sensor: Sensor) -> float:
    return sensor.sample_period_s if sensor.sample_period_s > 0 else 1.0


def asset_figure(sensors: Sequence[Sensor], span: TimeRange, tz_name: str = "UTC") -> dict:
    """Plotly figure (data + layout) of the sensors over the range; at most two queries in all (four from
    rollups: the newest rolled-up bucket per sensor and the raw readings after it)."""
    budget = max_points()
    bucketed = [s.pk for s in sensors if uses_buckets(s, span.seconds, budget)]
    raw_ids = [s.pk for s in sensors if s.pk not in bucketed]
    raw = load_raw(raw_ids, span.start, span.end) if raw_ids else {}
    # Two points (min and max) per bucket keep the trace within budget.
    width_s = span.seconds / max(1, budget // 2)
    buckets = {}
    if bucketed:
        level = level_for(span.seconds, budget)
        if level is None:
            buckets = load_buckets(bucketed, span.start, span.end, width_s)
        else:
            buckets = load_level_buckets(level, bucketed, span.start, span.end, width_s)
    tz = _zone(tz_name)
    gap_factor = quality_rules()["gap_factor"]

    data: list[dict] = []
    n = len(sensors)
    titles = [row_title(sensor) for sensor in sensors]
    title_px = ROW_TITLE_LINE_PX * max((t.count("<br>") + 1 for t in titles), default=1)
    margin = {"l": 64, "r": 16, "t": title_px + 10, "b": 48}
    total_px = max(260, 180 * n + 60 + title_px)
    plot_px = total_px - margin["t"] - margin["b"]
    # The gap between rows holds the next row's title.
    gap = (title_px + 12) / plot_px if n > 1 else 0.0
    height = (1.0 - gap * (n - 1)) / n if n else 1.0
    layout: dict = {
        "height": total_px,
        "margin": margin,
        "showlegend": False,
        "hovermode": "x unified",
        "xaxis": {
            "type": "date",
            "range": [_iso(span.start.timestamp(), tz), _iso(span.end.timestamp(), tz)],
            "title": {"text": f"Time ({tz_name})"},
            "anchor": f"y{n}" if n > 1 else "y",
        },
        "annotations": [],
    }
    for row, (sensor, title) in enumerate(zip(sensors, titles, strict=True), start=1):
        axis = "y" if row == 1 else f"y{row}"
        top = 1.0 - (row - 1) * (height + gap)
        layout["yaxis" if row == 1 else f"yaxis{row}"] = {
            "domain": [max(0.0, top - height), top],
            "automargin": True,
        }
        layout["annotations"].append(
            {
                "name": "row-title",
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": top,
                "xanchor": "left",
                "yanchor": "bottom",
                "align": "left",
                "text": title,
                "showarrow": False,
                "font": ROW_TITLE_FONT,
            }
        )
        if sensor.pk in raw:
            x, y, markers = _raw_trace(raw[sensor.pk], budget, _period(sensor), gap_factor)
        else:
            x, y, markers = _bucket_trace(buckets[sensor.pk], budget, _period(sensor), gap_factor)
        if not len(x):
            # Said in the row itself, so empty axes never read as "the chart failed" or "the value is 0".
            layout["annotations"].append(
                {
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": top - height / 2,
                    "text": NO_READINGS,
                    "showarrow": False,
                    "font": {"size": 13, "color": "#4b5563"},
                }
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": sensor.key,
                "x": wall_clock(x, tz),
                **_y(y, "", f" {sensor.unit}<extra>{sensor.key}</extra>"),
                "yaxis": axis,
                "line": {"color": LINE_COLOUR, "width": 1},
            }
        )
        for flag, (mx, my) in markers.items():
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{sensor.key}: {flag.label}",
                    "x": wall_clock(mx, tz),
                    **_y(my, f"{flag.label}: ", f" {sensor.unit}<extra>{sensor.key}</extra>"),
                    "yaxis": axis,
                    "marker": {
                        "color": flag.colour,
                        "size": 7,
                        "symbol": "circle-open",
                        "line": {"width": 2},
                    },
                }
            )
    # All rows share the one x axis at the bottom, so zooming one zooms all.
    return {"data": data, "layout": layout}


def row_title(sensor: Sensor) -> str:
    """The sensor's role (its key when it has none) and unit, wrapped to lines of ROW_TITLE_WRAP
    characters (Plotly does not wrap text)."""
    text = (sensor.role.label if sensor.role_id else sensor.key) + (
        f" ({sensor.unit})" if sensor.unit else ""
    )
    return "<br>".join(textwrap.wrap(text, ROW_TITLE_WRAP, break_on_hyphens=False)) or text


def trace_points(figure: dict) -> list[int]:
    return [len(trace["x"]) for trace in figure["data"]]


def _raw_trace(
    series: RawSeries, budget: int, period_s: float, gap_factor: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    keep = minmax_indices(series.t, series.value, budget)
    markers = {}
    for flag in QualityFlag:
        idx = np.flatnonzero(series.quality & int(flag))
        if len(idx):
            idx = idx[thin_indices(len(idx), budget)]
            markers[flag] = (series.t[idx], series.value[idx])
    # Judged on every reading, not the thinned ones: the line breaks before a kept point when a gap lies
    # between it and the previous kept point.
    gaps = np.cumsum(gap_before(series.t, period_s, gap_factor))[keep]
    breaks = np.zeros(len(keep), dtype=bool)
    breaks[1:] = gaps[1:] != gaps[:-1]
    return (*_broken(series.t[keep], series.value[keep], breaks), markers)


def _bucket_trace(
    series: BucketSeries, budget: int, period_s: float, gap_factor: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    t_mid = series.t_mid
    x, y = minmax_points(t_mid, series.lo, series.hi)
    if len(x) > budget:  # only when the bucket width was rounded; never expected
        keep = thin_indices(len(x), budget)
        x, y = x[keep], y[keep]
    # Neighbouring buckets lie a bucket width apart however dense the readings: the gap rule is applied
    # with the longer of the sample period and the bucket width.
    breaks = gap_before(x, max(period_s, series.width_s), gap_factor)
    # A marker sits on whichever flagged extreme lies farther from the bucket mean: the spike, not the
    # ordinary readings around it.
    far = np.where(
        np.abs(series.flagged_hi - series.mean) >= np.abs(series.flagged_lo - series.mean),
        series.flagged_hi,
        series.flagged_lo,
    )
    markers = {}
    for flag in QualityFlag:
        idx = np.flatnonzero(series.flag_counts[flag] > 0)
        if len(idx):
            idx = idx[thin_indices(len(idx), budget)]
            markers[flag] = (t_mid[idx], far[idx])
    return (*_broken(x, y, breaks), markers)


def _broken(x: np.ndarray, y: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The line with a NaN point (drawn as a gap: Plotly breaks a line at a null y) halfway into each gap
    that ``breaks`` marks (true at the point that ends it), so the line is not drawn straight across it."""
    at = np.flatnonzero(breaks)
    if not len(at):
        return x, y
    mid = (np.asarray(x, dtype=float)[at - 1] + np.asarray(x, dtype=float)[at]) / 2
    return np.insert(np.asarray(x, dtype=float), at, mid), np.insert(np.asarray(y, dtype=float), at, np.nan)


def _zone(name: str) -> ZoneInfo | dt_timezone:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return dt_timezone.utc


def _iso(epoch_s: float, tz: ZoneInfo | dt_timezone) -> str:
    # Plotly date axes ignore UTC offsets, so times are sent as naive local wall-clock times.
    return datetime.fromtimestamp(float(epoch_s), tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def wall_clock(epoch_s: np.ndarray, tz: ZoneInfo | dt_timezone) -> list[str]:
    """``_iso`` of every time, vectorised: a chart has thousands and strftime was most of its Python time.
    The zone's offset is looked up once per distinct minute (offsets change on whole minutes)."""
    t = np.asarray(epoch_s, dtype=float)
    if not len(t):
        return []
    minutes, where = np.unique(np.floor(t / 60.0), return_inverse=True)
    offsets = np.array(
        [datetime.fromtimestamp(m * 60.0, tz).utcoffset().total_seconds() for m in minutes]  # type: ignore[union-attr]
    )
    # Rounded to microseconds as fromtimestamp rounds (the fraction of the second, half to even), then cut
    # to milliseconds as _iso's [:-3] cuts.
    whole = np.floor(t)
    local_us = whole * 1e6 + np.round((t - whole) * 1e6) + np.round(offsets[where.ravel()]) * 1e6
    stamps = (local_us // 1000).astype(np.int64).astype("datetime64[ms]")
    return [text.replace("T", " ") for text in np.datetime_as_string(stamps, unit="ms").tolist()]


def drawable(values: np.ndarray | Sequence[float]) -> tuple[list[float | None], list[float | None] | None]:
    """(drawn, stored): the values as Plotly can draw them (a gap for NaN or infinity, magnitudes above
    DRAW_LIMIT at DRAW_LIMIT) and, when that moved any value, the values themselves for the hover text."""
    values = np.asarray(values, dtype=float)
    stored = _floats(values)
    with np.errstate(invalid="ignore"):
        moved = np.isfinite(values) & (np.abs(values) > DRAW_LIMIT)
    if not moved.any():
        return stored, None
    return _floats(np.where(moved, np.copysign(DRAW_LIMIT, values), values)), stored


def _y(values: np.ndarray, before: str, after: str) -> dict:
    """A trace's y and hovertemplate (``before`` value ``after``), with the stored values as customdata
    when some are drawn at DRAW_LIMIT."""
    drawn, stored = drawable(values)
    if stored is None:
        return {"y": drawn, "hovertemplate": f"{before}%{{y:.3g}}{after}"}
    return {"y": drawn, "customdata": stored, "hovertemplate": f"{before}%{{customdata:.3g}}{after}"}


def _floats(values: np.ndarray) -> list[float | None]:
    return [round(float(v), 6) if np.isfinite(v) else None for v in values]
