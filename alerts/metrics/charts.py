"""The health page's Plotly trend: the operators' trust (follow-through, actionability) drawn against the
model's quality (precision, recall), one point per period, as a dict for ``json_script``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alerts.metrics.rows import MetricsRow
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
            "line": {"color": colour, "dash": dash, "width": 3 if dash == "solid" else 2},
            "hovertemplate": f"{name} %{{y:.0%}}<extra>%{{x}}</extra>",
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
