"""The trust-erosion warning: a pure function over metric rows, so it can be tested without a database.

Follow-through is the operators' side of trust: when they stop answering alerts, the cause is usually a
stream of alerts they have learnt to dismiss or ignore. A period is flagged when its follow-through fell
by at least ``drop`` from the calendar period just before it, or is below ``floor``; the warning names
the assets and model versions with the most dismissed (false alarm, not actionable) or ignored
(auto-closed untouched) alerts opened in that period.

A period is judged on its due alerts (the follow-through denominator: a verdict given, or the answer window
over), and only with at least ``MIN_DUE`` of them, for the period itself and for the one it is compared
with. Counting alerts instead let a period of 6 alerts with 1 due warn on "0 %", or a month two days old
warn on its first answer: a rate over one or two answers is not a trend. A period still running is judged
on what is due so far, which is a fair measure once enough is due; the warning says how many that is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.metrics.params import previous_period
from alerts.metrics.rows import DriverCount

DROP = 0.15
FLOOR = 0.60
# Below this many due alerts in a period one answer moves the rate by 20 points or more: too noisy to warn on.
MIN_DUE = 5
TOP = 3
_EPS = 1e-9


class PeriodRow(Protocol):
    period: str
    followed: int
    due: int

    @property
    def follow_through(self) -> float | None: ...


@dataclass(frozen=True)
class TrustWarning:
    """One flagged period: why, and who drives it (largest count of dismissed or ignored alerts first)."""

    period: str
    follow_through: float
    followed: int
    due: int
    previous_period: str | None
    previous: float | None
    reasons: tuple[str, ...]
    assets: tuple[DriverCount, ...]
    models: tuple[DriverCount, ...]

    @property
    def message(self) -> str:
        names = ", ".join(f"{d.label} ({d.count})" for d in self.assets) or "no single asset"
        models = ", ".join(f"{d.label} ({d.count})" for d in self.models) or "no single model"
        return (
            f"Follow-through in {self.period} is {self.follow_through:.0%} ({self.followed} of {self.due} due):"
            f" {'; '.join(self.reasons)}. "
            f"Dismissed or ignored alerts come mostly from {names}; models: {models}."
        )


def trust_warnings(
    totals: Sequence[PeriodRow],
    asset_drivers: Sequence[DriverCount],
    model_drivers: Sequence[DriverCount],
    *,
    drop: float = DROP,
    floor: float = FLOOR,
    min_due: int = MIN_DUE,
    top: int = TOP,
) -> list[TrustWarning]:
    """The flagged periods of ``totals`` (one row per period), oldest first."""
    by_period = {row.period: row for row in totals}
    warnings = []
    for row in sorted(totals, key=lambda r: r.period):
        current = row.follow_through
        if current is None or row.due < min_due:
            continue
        before_label = previous_period(row.period)
        before_row = by_period.get(before_label)
        before = before_row.follow_through if before_row is not None and before_row.due >= min_due else None
        reasons = []
        if before is not None and before - current >= drop - _EPS:
            reasons.append(f"down {100 * (before - current):.0f} points from {before:.0%} in {before_label}")
        if current < floor - _EPS:
            reasons.append(f"below {floor:.0%}")
        if reasons:
            warnings.append(
                TrustWarning(
                    period=row.period,
                    follow_through=current,
                    followed=row.followed,
                    due=row.due,
                    previous_period=before_label if before is not None else None,
                    previous=before,
                    reasons=tuple(reasons),
                    assets=_top(asset_drivers, row.period, top),
                    models=_top(model_drivers, row.period, top),
                )
            )
    return warnings


def _top(drivers: Sequence[DriverCount], period: str, top: int) -> tuple[DriverCount, ...]:
    ranked = sorted((d for d in drivers if d.period == period and d.count), key=lambda d: (-d.count, d.label))
    return tuple(ranked[:top])
