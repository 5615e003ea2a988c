"""The health page's Plotly trend: the operators' trust (follow-through, actionability) drawn against the
model's quality (precision, recall), one point per period, as a dict for ``json_script``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alerts.metrics.kpis import PRIORITIES, PRIORITY_TARGET
from alerts.metrics.rows import MetricsRow, rate_text
from alerts.metrics.trust import FLOOR

SERIES = (
    ("follow_through", "Follow-through", "#1f4e79", "solid"),
    ("actionability", "Actionability", "#d97706", "solid"),
    ("precision", "Precision", "#16a34a", "dash"),
    ("recall", "Recall", "#7c3aed", "dash"),
)


def trend_figure(totals: Sequence[MetricsRow], flagged: Sequence[str] = ()) -> dict[str, Any]:
    """Four lines over the periods of ``totals``; flagged periods get a red marker on follow-through."""
    periods = [row.period for row in totals]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": periods,
            "y": [getattr(row, attr) for row in totals],
            # The hover says what the rate divides, as the table does: 'Follow-through 100% (2 of 2 due)'.
            "customdata": [rate_text(row, attr) for row in totals],
            "line": {"color": colour, "dash": dash, "width": 3 if dash == "solid" else 2},
            "hovertemplate": f"{name} %{{customdata}}<extra>%{{x}}</extra>",
            "connectgaps": False,
        }
        for attr, name, colour, dash in SERIES
    ]
    marked = [row for row in totals if row.period in set(flagged)]
    if marked:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Trust warning",
                "x": [row.period for row in marked],
                "y": [row.follow_through for row in marked],
                "marker": {"color": "#dc2626", "size": 14, "symbol": "circle-open", "line": {"width": 3}},
                "hoverinfo": "skip",
            }
        )
    return {
        "data": data,
        "layout": {
            "height": 340,
            "margin": {"l": 50, "r": 20, "t": 20, "b": 40},
            "xaxis": {"type": "category"},
            "yaxis": {"range": [0, 1.05], "tickformat": ".0%"},
            "legend": {"orientation": "h", "y": -0.15},
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": FLOOR,
                    "y1": FLOOR,
                    "line": {"color": "#dc2626", "width": 1, "dash": "dot"},
                }
            ],
            "paper_bgcolor": "rgba(0,0,0,0)",
        },
    }


# The alarm-management KPIs' charts: one line per site over its buckets, the standard's targets drawn as
# dotted lines (green: the target, red: the limit the warning checks).
KPI_CHARTS = (
    ("per_tech_per_10min", "Alerts per technician per 10 minutes", ".2f", ((1, "~1: very likely acceptable"),
                                                                           (2, "~2: maximum manageable"))),
    ("per_tech_per_day", "Alerts per technician per day", ".0f", ((150, "~150: very likely acceptable"),
                                                                 (300, "~300: maximum manageable"))),
    ("flood_pct", "10-minute periods in flood (> 10 alerts)", ".1%", ((0.01, "target < 1 %"),)),
    ("stale_max_day", "Stale alerts (most on one day)", "d", ((5, "target < 5 a day"),)),
)  # fmt: skip
TARGET_COLOURS = ("#16a34a", "#dc2626")
SITE_COLOURS = ("#1f4e79", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f")


def _target_lines(targets: Sequence[tuple[float, str]]) -> tuple[list[dict], list[dict]]:
    shapes, notes = [], []
    for index, (value, text) in enumerate(targets):
        colour = TARGET_COLOURS[min(index, 1) if len(targets) > 1 else 1]
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": value,
                "y1": value,
                "line": {"color": colour, "width": 1, "dash": "dot"},
            }
        )
        notes.append(
            {
                "xref": "paper",
                "x": 1,
                "y": value,
                "xanchor": "right",
                "yanchor": "bottom",
                "text": text,
                "showarrow": False,
                "font": {"size": 10, "color": colour},
            }
        )
    return shapes, notes


def kpi_figures(sites: Sequence[Any]) -> list[dict[str, Any]]:
    """One figure per charted KPI (``KPI_CHARTS``) with a line per site (``SiteKpis``), and the priority
    mix of each site over the range against the ~80 / 15 / 5 % guide; each as {id, title, figure}."""
    figures = []
    for attr, title, fmt, targets in KPI_CHARTS:
        data = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": site.site.name,
                "x": [row.period for row in site.rows],
                "y": [getattr(row, attr) for row in site.rows],
                "line": {"color": SITE_COLOURS[i % len(SITE_COLOURS)], "width": 2},
                "hovertemplate": f"%{{y:{fmt}}}<extra>{site.site.name} %{{x}}</extra>",
            }
            for i, site in enumerate(sites)
        ]
        peak = max([v for trace in data for v in trace["y"] if v is not None] + [t for t, _ in targets])
        shapes, notes = _target_lines(targets)
        figures.append(
            {
                "id": f"kpi-{attr.replace('_', '-')}",
                "title": title,
                "figure": {
                    "data": data,
                    "layout": {
                        "height": 260,
                        "margin": {"l": 50, "r": 20, "t": 10, "b": 40},
                        "xaxis": {"type": "category"},
                        "yaxis": {"range": [0, peak * 1.15], "tickformat": fmt if "%" in fmt else ""},
                        "legend": {"orientation": "h", "y": -0.25},
                        "shapes": shapes,
                        "annotations": notes,
                        "paper_bgcolor": "rgba(0,0,0,0)",
                    },
                },
            }
        )
    names, guide = PRIORITIES, PRIORITY_TARGET
    data = [
        {
            "type": "bar",
            "name": site.site.name,
            "x": [name.title() for name in names],
            "y": [site.priority_mix[name] for name in names],
            "marker": {"color": SITE_COLOURS[i % len(SITE_COLOURS)]},
            "hovertemplate": f"%{{y:.0%}}<extra>{site.site.name}</extra>",
        }
        for i, site in enumerate(sites)
    ]
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "Guide ~80 / 15 / 5 %",
            "x": [name.title() for name in names],
            "y": [guide[name] for name in names],
            "marker": {"color": "#16a34a", "size": 14, "symbol": "line-ew-open", "line": {"width": 3}},
            "hovertemplate": "guide %{y:.0%}<extra></extra>",
        }
    )
    figures.append(
        {
            "id": "kpi-priority-mix",
            "title": "Priority mix (low / medium / high) against the guide",
            "figure": {
                "data": data,
                "layout": {
                    "height": 260,
                    "barmode": "group",
                    "margin": {"l": 50, "r": 20, "t": 10, "b": 40},
                    "yaxis": {"range": [0, 1.05], "tickformat": ".0%"},
                    "legend": {"orientation": "h", "y": -0.25},
                    "paper_bgcolor": "rgba(0,0,0,0)",
                },
            },
        }
    )
    return figures
