"""Open/clear thresholds from scores of normal windows: one rule for a version and for each asset.

``thresholds(scores, rule)`` is the rule ``models_registry.training.train_anomaly`` sets a version's
thresholds with (on its hold-out scores) and ``asset_thresholds`` sets one asset's with (on its own
calibration scores), so an asset's thresholds differ from the version's only by the windows they come
from, never by the rule or the false-alarm budget.

The rule (``ThresholdRule``, read from the version's training params):

* ``open_rule = "quantile"``: the open threshold is the ``open_quantile`` (99.5 %) score;
* ``open_rule = "tail"``: the excesses over the ``tail_quantile`` (90 %) score u are fitted by an
  exponential (maximum likelihood: scale = their mean) and the open threshold is the score a share
  ``open_exceedance`` (1e-4) of windows exceeds, ``u + scale · ln((1 - tail_quantile) / open_exceedance)``,
  never below the largest score given (data declared normal never alarms);
* ``open_rule = "episodes"``: the open threshold is set from a false-alert budget stated in time, one false
  alert per asset per ``alert_budget_days`` (30) days, instead of a share of windows (see
  ``episode_threshold``); it needs the windows' ``window_s`` and ``step_s``;
* the clear threshold is the ``clear_quantile`` (97 %) score, and never above the open threshold.

Why "episodes" (a product rule, opt-in): an operator's false-alarm budget is alerts per asset per month, not
windows. The tail rule's 1e-4 of windows means one window a month at 5-minute steps but one every 14 hours
at 5-second steps, and it counts windows, while a false alert is one *episode*: overlapping windows above
the threshold together are one event (the lifecycle opens one alert for them). So the excursions of the
hold-out scores above the ``tail_quantile`` score u are declustered into events (runs declustering:
exceedances fewer than ``ceil(window_s / step_s)`` windows apart share readings and are one event; with
the product's windows that run length equals the clear hysteresis N = 6 as well), the events' peak excesses
over u are fitted by an exponential (the tail rule's assumption, now on event maxima: the peaks-over-
threshold model of declustered extremes, Coles 2001, ch. 5.3), and with the events' rate λ_u per day
(events / (windows · step_s / 86,400)) the open threshold is the level whose expected rate of events is the
budget: ``u + scale · ln(λ_u · alert_budget_days)``, never below the largest hold-out score (data declared
normal never alarms). The budget, one false alert per asset per 30 days, is a first-principles statement
(an alert a month that proves false is the most a maintenance team is asked to act on per machine without
losing trust in it; EEMUA 191's alarm-rate targets are per operator, far stricter per asset); it was fixed
before any evaluation and is the same for every dataset. A hold-out pooled over several assets counts
asset-days (windows · step_s), so the budget stays per asset; its interleaved windows only split events,
which raises λ_u and the threshold (the safe side).

Per asset, two things make the version's rule riskier than on a version's pooled hold-out:

* In-sample optimism: windows the model was fitted on score lower than new ones, so thresholds set on them
  are too low and the asset floods. The caller passes scores of windows the model was NOT fitted on (the
  fleet protocol: the last ``holdout_fraction`` of each asset's calibration period, which the model holds
  out; in the product: windows after the training range).
* Few windows: an asset's calibration has tens to hundreds of windows, and overlapping windows make them
  worth fewer: windows of ``window_s`` every ``step_s`` share most of their readings, so n of them hold
  about n / overlap independent ones (overlap = window_s / step_s, 6 for the product's 60 s / 10 s). The
  rule reads the scores above one quantile q (``open_quantile`` for "quantile", ``tail_quantile`` for
  "tail"); with fewer than ``MIN_TAIL_WINDOWS`` independent windows above q (n / overlap · (1 - q) < 10)
  the estimate is mostly noise and, worse, usually too low (a calm stretch has no tail to see), so the
  version's thresholds are used instead (``AssetThresholds.source == "version"``). With the product's
  windows and tail rule that is 600 windows (100 min of calibration scores); with the 99.5 % quantile rule
  12,000. Ten is the usual rule of thumb for the fewest excesses a tail estimate is taken from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.rules import overlap

OPEN_RULES = ("quantile", "tail", "episodes")
MIN_TAIL_WINDOWS = 10
SECONDS_PER_DAY = 86_400.0


class ThresholdError(ValueError):
    """A threshold rule's parameters are unusable; the message says which."""


@dataclass(frozen=True)
class ThresholdRule:
    """How open and clear thresholds follow from normal scores (see the module docstring)."""

    open_rule: str = "quantile"
    open_quantile: float = 0.995
    clear_quantile: float = 0.97
    tail_quantile: float = 0.9
    open_exceedance: float = 1e-4
    alert_budget_days: float = 30.0  # "episodes": one false alert per asset per this many days
    window_s: float | None = None  # "episodes": the windows' length and step, s
    step_s: float | None = None

    def __post_init__(self) -> None:
        if self.open_rule not in OPEN_RULES:
            raise ThresholdError(f"open_rule must be one of {', '.join(OPEN_RULES)}, got {self.open_rule!r}.")
        if not 0.0 < self.clear_quantile <= self.open_quantile < 1.0:
            raise ThresholdError("Quantiles must satisfy 0 < clear_quantile <= open_quantile < 1.")
        if not 0.0 < self.open_exceedance < 1.0 - self.tail_quantile < 1.0:
            raise ThresholdError("The tail rule needs 0 < open_exceedance < 1 - tail_quantile < 1.")
        if self.open_rule == "episodes":
            if not (self.alert_budget_days and self.alert_budget_days > 0):
                raise ThresholdError("The episodes rule needs alert_budget_days > 0.")
            if not (self.step_s and self.step_s > 0 and self.window_s and self.window_s >= self.step_s):
                raise ThresholdError(
                    "The episodes rule needs the windows' step_s > 0 and window_s >= step_s "
                    f"(got window_s={self.window_s!r}, step_s={self.step_s!r})."
                )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ThresholdRule:
        """The rule of a version's training params (unknown keys are the trainer's, not the rule's)."""
        fields = (
            "open_rule",
            "open_quantile",
            "clear_quantile",
            "tail_quantile",
            "open_exceedance",
            "alert_budget_days",
            "window_s",
            "step_s",
        )
        return cls(**{name: params[name] for name in fields if name in params})

    @property
    def read_quantile(self) -> float:
        """The quantile above which the open threshold is estimated."""
        return self.open_quantile if self.open_rule == "quantile" else self.tail_quantile

    def min_windows(self, overlap: float = 1.0) -> int:
        """Fewest scores an asset's own thresholds are set from: MIN_TAIL_WINDOWS independent windows
        above read_quantile, when each window overlaps ``overlap`` others (window_s / step_s)."""
        return math.ceil(MIN_TAIL_WINDOWS * max(overlap, 1.0) / (1.0 - self.read_quantile) - 1e-9)


@dataclass(frozen=True)
class AssetThresholds:
    """One asset's open/clear thresholds, how many scores set them and whether they are its own
    (``source == "asset"``) or the version's (too few scores)."""

    open_threshold: float
    clear_threshold: float
    count: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "open_threshold": self.open_threshold,
            "clear_threshold": self.clear_threshold,
            "count": self.count,
            "source": self.source,
        }


def tail_threshold(scores: np.ndarray, tail_quantile: float, exceedance: float) -> float:
    """The score a share ``exceedance`` of windows exceeds, from an exponential fit of the excesses over the
    ``tail_quantile`` score, and at least the largest score given (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    u = float(np.quantile(scores, tail_quantile))
    excess = scores[scores > u] - u
    scale = float(excess.mean()) if len(excess) else 0.0
    extrapolated = u + scale * float(np.log((1.0 - tail_quantile) / exceedance))
    return max(extrapolated, float(scores.max()))


def episode_threshold(
    scores: np.ndarray, tail_quantile: float, *, window_s: float, step_s: float, budget_days: float
) -> float:
    """The score whose expected rate of alert events is one per ``budget_days`` days, from scores of
    consecutive normal windows (``step_s`` apart, ``window_s`` long) in time order; at least the largest
    score given (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    u = float(np.quantile(scores, tail_quantile))
    top = float(scores.max())
    above = np.flatnonzero(scores > u)
    if len(above) == 0:
        return top
    # Windows fewer than window_s / step_s apart share readings: their exceedances are one event.
    run = overlap(window_s, step_s)
    starts = np.r_[0, np.flatnonzero(np.diff(above) >= run) + 1]
    peaks = np.maximum.reduceat(scores[above], starts)
    scale = float((peaks - u).mean())
    days = len(scores) * step_s / SECONDS_PER_DAY
    events_per_budget = len(peaks) / days * budget_days
    extrapolated = u + scale * math.log(events_per_budget) if events_per_budget > 1.0 else u
    return max(extrapolated, top)


def thresholds(scores: np.ndarray, rule: ThresholdRule) -> tuple[float, float]:
    """(open, clear) thresholds of normal ``scores`` by ``rule``; ThresholdError when there are none."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or not np.isfinite(scores).all():
        raise ThresholdError("thresholds need at least one score, all finite")
    if rule.open_rule == "tail":
        open_t = tail_threshold(scores, rule.tail_quantile, rule.open_exceedance)
    elif rule.open_rule == "episodes":
        open_t = episode_threshold(
            scores,
            rule.tail_quantile,
            window_s=float(rule.window_s),
            step_s=float(rule.step_s),
            budget_days=rule.alert_budget_days,
        )
    else:
        open_t = float(np.quantile(scores, rule.open_quantile))
    clear_t = float(np.quantile(scores, rule.clear_quantile))
    return open_t, min(clear_t, open_t)


def asset_thresholds(
    scores: np.ndarray, rule: ThresholdRule, version: tuple[float, float], *, overlap: float = 1.0
) -> AssetThresholds:
    """One asset's thresholds from scores of its normal windows the model was not fitted on, by the
    version's rule; the ``version`` (open, clear) pair when there are fewer than
    ``rule.min_windows(overlap)`` (``overlap`` = window_s / step_s of those windows)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) < rule.min_windows(overlap):
        return AssetThresholds(float(version[0]), float(version[1]), len(scores), "version")
    open_t, clear_t = thresholds(scores, rule)
    return AssetThresholds(open_t, clear_t, len(scores), "asset")
