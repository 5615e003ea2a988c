"""Plotly figures of the alert detail page, as dicts serialised into the page with ``json_script``.

* ``sensor_figure``: the contributing sensors over the alert with context before and after (the alert's
  span again on each side, at least CONTEXT_MIN), built by plant.charts.asset_figure (so the same series
  reading, downsampling and flag markers as the asset page) plus a shaded anomalous span and the peak.
* ``shap_figure``: horizontal bars, one per feature in sensor terms, φ in score units; the title carries
  the base value and the score, which the bars add up to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from alerts.models import Alert
from detection.wording import Finding, SensorReason
from plant.charts import asset_figure, drawable
from plant.forms import TimeRange
from plant.models import Sensor

CONTEXT_MIN = timedelta(minutes=15)
MAX_SENSORS = 5
MAX_BARS = 12
SPAN_COLOUR = "rgba(220, 38, 38, 0.14)"
RAISE_COLOUR = "#dc2626"
LOWER_COLOUR = "#2563eb"
# Height of the Plotly toolbar (modebar) row: a chart title starts below it. The figure names the room
# this adds to the title's own padding in layout.meta.toolbar_px, so that static/js/charts.js gives it back
# where it hides the toolbar (touch screens).
TOOLBAR_PX = 34
TITLE_PAD_PX = 8


def alert_span(alert: Alert) -> tuple[datetime, datetime]:
    """The anomalous span: from the start of the first opening window to the last anomalous window."""
    return alert.first_window_start, max(alert.last_seen_at, alert.first_window_start)


def chart_range(alert: Alert, now: datetime | None = None) -> TimeRange:
    start, end = alert_span(alert)
    pad = max(end - start, CONTEXT_MIN)
    now = now or timezone.now()
    stop = min(end + pad, max(now, end + timedelta(minutes=1)))
    return TimeRange(start - pad, stop, "custom")


def evidence_windows(before: datetime) -> list[tuple[int, datetime, datetime]]:
    """(asset id, start, end) of every alert's chart span once complete (chart_range at its widest), for
    the alerts whose span starts before `before`: raw-reading retention keeps the readings inside them."""
    rows = Alert.objects.order_by().values_list("asset_id", "first_window_start", "last_seen_at")
    windows = []
    for asset_id, first, last in rows.iterator(chunk_size=10_000):
        alert = Alert(asset_id=asset_id, first_window_start=first, last_seen_at=last)
        span = chart_range(alert, now=datetime.max.replace(tzinfo=UTC))
        if span.start < before:
            windows.append((asset_id, span.start, span.end))
    return windows


def chart_sensors(sensors: Sequence[Sensor], lines: Sequence[Finding | SensorReason]) -> list[Sensor]:
    """The sensors of the contributing roles, largest contribution first; every sensor (at most
    MAX_SENSORS) while the explanation is pending."""
    by_role: dict[str, list[Sensor]] = {}
    for sensor in sensors:
        by_role.setdefault(sensor.role.key, []).append(sensor)
    roles = list(dict.fromkeys(line.role for line in lines))
    if not roles:
        return list(sensors)[:MAX_SENSORS]
    picked = [sensor for role in roles for sensor in by_role.get(role, [])]
    return picked[:MAX_SENSORS]


def sensor_figure(alert: Alert, sensors: Sequence[Sensor], tz_name: str) -> dict[str, Any]:
    """The sensors around the alert, the anomalous span shaded and the peak window marked."""
    span = chart_range(alert)
    figure = asset_figure(sensors, span, tz_name)
    tz = _zone(tz_name)
    start, end = alert_span(alert)
    layout = figure["layout"]
    # The first row's title sits above the plot's top edge at the left; the span's label goes above it.
    title_px = layout["margin"]["t"]
    layout["shapes"] = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": _local(start, tz),
            "x1": _local(end, tz),
            "y0": 0,
            "y1": 1,
            "fillcolor": SPAN_COLOUR,
            "line": {"width": 0},
            "layer": "below",
        },
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": _local(alert.peak_window_end, tz),
            "x1": _local(alert.peak_window_end, tz),
            "y0": 0,
            "y1": 1,
            "line": {"color": RAISE_COLOUR, "width": 1, "dash": "dot"},
        },
    ]
    layout["annotations"] = [
        *layout.get("annotations", []),  # e.g. a sensor's "no readings in this range"
        {
            "xref": "x",
            "yref": "paper",
            # Right-aligned to the span's end: an alert still going on ends at the chart's right edge, and a
            # label starting at the span would run off it on a phone (the chart has context on the left).
            "x": _local(end, tz),
            "y": 1,
            "yanchor": "bottom",
            "yshift": title_px - 8,
            "xanchor": "right",
            "text": "anomalous",
            "showarrow": False,
            "font": {"size": 11, "color": RAISE_COLOUR},
        },
    ]
    layout["margin"] = {**layout["margin"], "t": title_px + 16}
    return figure


def shap_figure(
    explanation: Mapping[str, Any] | None, lines: Sequence[Finding], *, max_bars: int = MAX_BARS
) -> dict[str, Any]:
    """Bars of φ per feature (largest |φ| on top); the rest are summed into one "other features" bar."""
    if not explanation:
        return {"data": [], "layout": {"title": {"text": "Explanation pending"}}}
    shown = list(lines[:max_bars])
    rest = sum(line.phi for line in lines[max_bars:])
    labels = [f"{line.sensor} {line.stat_name}" for line in shown]
    phis = [line.phi for line in shown]
    details = [f"{line.value_text} ({line.usual_text or 'no normal range'})" for line in shown]
    if len(lines) > max_bars:
        labels.append(f"{len(lines) - max_bars} other features")
        phis.append(rest)
        details.append("summed")
    values, _ = drawable(phis)  # never NaN in the page's JSON, never a bar too long for Plotly
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": values,
                "y": labels,
                "marker": {"color": [RAISE_COLOUR if (v or 0.0) >= 0 else LOWER_COLOUR for v in values]},
                "customdata": details,
                "hovertemplate": "%{y} = %{customdata}<br>%{x:+.3g} to the score<extra></extra>",
            }
        ],
        "layout": {
            # The title sits under the Plotly toolbar (top right, ~30 px high), never behind it; without the
            # toolbar (a touch screen) charts.js takes the room for it (meta.toolbar_px) away again.
            "title": {
                # In words: the score and its base value are in the (engineers') model details.
                "text": "What made this window unusual",
                "font": {"size": 14},
                "x": 0,
                "xanchor": "left",
                "y": 1,
                "yref": "container",
                "yanchor": "top",
                "pad": {"t": TOOLBAR_PX, "l": 10},
            },
            "height": max(240, 28 * len(values) + 130),
            "meta": {"toolbar_px": TOOLBAR_PX - TITLE_PAD_PX},
            "margin": {"l": 10, "r": 16, "t": TOOLBAR_PX + 32, "b": 40},
            # No axis title: the note above the chart says what the bars are, and on a phone the feature
            # names leave the plot too narrow for one (it ran off the chart's right edge).
            "xaxis": {"zeroline": True},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "showlegend": False,
        },
    }


def _zone(name: str):
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _local(moment: datetime, tz) -> str:
    # Plotly date axes ignore UTC offsets; plant.charts sends naive local wall-clock times, so must we.
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
