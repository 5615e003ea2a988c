"""The one vocabulary that turns a stored explanation into words a technician can read.

Everything a person sees about why an alert fired (the board's cards, the detail page, the live board's
websocket cards, later notifications) is built here, from the explanation dict of ``detection.explain``
(features with name, value, φ, optional ``raw``/``baseline`` and ``response``), the normal ranges
(``typical_ranges``: feature -> (p10, p90) of the model's background) and the sensor roles' labels and
units (``role -> (label, unit)``, read from ``plant.SensorRole`` by the caller). It imports no Django, so
the edge runner or a notification task can use it as is.

Rules (the wording tests check them against the stored numbers):

* Only sensors that pushed the score are named: roles whose summed φ is positive, largest first
  (``pushes``, the one rule the alert's title, ``detection.explain.dominant_roles``, uses too); within a
  sensor only its features with positive φ, largest first. A feature that lowered the score is never a
  reason. For a model whose low scores are bad (remaining life) the signs are mirrored: the explanation
  says which (``higher_is_worse``, written by ``detection.explain``).
* "Usual" is the feature's p10–p90 over the model's background (for a baselined model shifted by the
  asset's operating point, so it is in the sensor's own units). The direction word follows the sign of
  value − usual range: above / below / within.
* Spread statistics (std → "varying", diff_rms → "jumping") give a ratio: value ÷ the usual upper bound
  when above, the usual lower bound ÷ value when below ("5× more than usual"). Level statistics (mean,
  min, max) give the distance to the usual range in the sensor's unit ("12 °C above its usual range"): a
  ratio of two temperatures means nothing. Trends (slope, stored per second) are told per minute.
* The counterfactual ("back under the alert level below 0.11 mm/s") is stated only when the model allows
  an exact one: quadratic-form models store, per feature, the score as a quadratic in that feature with
  the others fixed (``response``); the value closest to the current one at which every branch is under
  the open threshold is reported. Other models, or no such value: nothing is said.
* A score is told as a multiple of the alert level ("3.6× the alert level"), windows as a duration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from detection.features import role_of

SPREAD_STATS = {"std": "varying", "diff_rms": "jumping"}
LEVEL_SUBJECT = {
    "mean": "{label} is",
    "max": "{label}'s highest reading is",
    "min": "{label}'s lowest reading is",
}
STAT_NAMES = {
    "mean": "average",
    "std": "variation",
    "min": "lowest reading",
    "max": "highest reading",
    "slope": "trend",
    "diff_rms": "jumpiness",
}
STUCK_RATIO = 1000  # a spread this many times under its usual one is told as "hardly varying at all"
TOGETHER = "unusual only together with the other sensors"


def fmt(value: float, digits: int = 3) -> str:
    """Short human number: 4.1, 0.0123, 7,412."""
    if value != value:  # NaN
        return "–"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"  # 7,412 rather than 7.41e+03
    return f"{value:.{digits}g}"


def ratio_text(ratio: float) -> str:
    """ "5×", "1.4×", "12×": one decimal below 10, whole numbers above."""
    if ratio >= 10:
        return f"{ratio:,.0f}×"
    return f"{ratio:.1f}".rstrip("0").rstrip(".") + "×"


def with_unit(value: float, unit: str, *, signed: bool = False) -> str:
    text = fmt(value)
    if signed and value > 0:
        text = "+" + text
    return f"{text} {unit}".strip()


def rate_unit(unit: str) -> str:
    """The unit of a trend told per minute: "°C per minute", "per minute" without a unit."""
    return f"{unit} per minute".strip()


def stat_of(feature: str) -> str:
    return feature.rpartition("__")[2]


@dataclass(frozen=True)
class Finding:
    """One feature of an explanation against its usual range, in the sensor's units (trends per minute)."""

    feature: str
    role: str
    stat: str
    sensor: str  # the role's label
    unit: str
    value: float  # what the sensor showed (trends per minute)
    low: float | None
    high: float | None
    phi: float
    back_to_normal: float | None = None  # the counterfactual value (same units as value), if one exists
    share: float | None = None  # φ / Σ|φ| over the explanation's features (findings sets it)

    @property
    def stat_name(self) -> str:
        return STAT_NAMES.get(self.stat, self.stat.replace("_", " "))

    @property
    def shown_unit(self) -> str:
        return rate_unit(self.unit) if self.stat == "slope" else self.unit

    @property
    def direction(self) -> str:
        """above / below / within the usual range ("" without one): the sign of value − usual."""
        if self.low is None or self.high is None:
            return ""
        return "above" if self.value > self.high else "below" if self.value < self.low else "within"

    @property
    def arrow(self) -> str:
        return {"above": "↑", "below": "↓", "within": "≈"}.get(self.direction, "")

    @property
    def ratio(self) -> float | None:
        """For spread statistics outside their range: how many times more (or less) than usual."""
        if self.stat not in SPREAD_STATS or self.direction not in ("above", "below"):
            return None
        if self.direction == "above":
            return self.value / self.high if self.high and self.high > 0 else None
        return self.low / self.value if self.value > 0 and self.low is not None else None

    @property
    def value_text(self) -> str:
        return with_unit(self.value, self.shown_unit, signed=self.stat == "slope")

    @property
    def usual_text(self) -> str:
        if self.low is None or self.high is None:
            return ""
        if self.stat == "slope":
            return f"usually {self.range_text}"
        return f"usually {fmt(self.low)}–{with_unit(self.high, self.unit)}"

    @property
    def range_text(self) -> str:
        if self.low is None or self.high is None:
            return ""
        if self.stat == "slope":
            flat = "flat, " if self.low < 0 < self.high else ""
            return f"{flat}{with_unit(self.low, '', signed=True)} to {with_unit(self.high, rate_unit(self.unit), signed=True)}"
        return f"{fmt(self.low)}–{with_unit(self.high, self.unit)}"

    @property
    def effect_text(self) -> str:
        return f"{'+' if self.phi >= 0 else '−'}{fmt(abs(self.phi), 2)}"

    @property
    def share_text(self) -> str:
        """The feature's push as a share of all the features' pushes, for people ("+39 %", "−2 %", "+<1 %");
        φ itself (``effect_text``) is for engineers, in the model details."""
        if self.share is None:
            return self.effect_text
        percent = abs(self.share) * 100
        return f"{'+' if self.phi >= 0 else '−'}{'<1' if percent < 0.5 else f'{percent:.0f}'} %"

    @property
    def headline(self) -> str:
        """What the feature does, in words: "Vibration is varying 5× more than usual"."""
        label, direction, unit = self.sensor, self.direction, self.unit
        if self.stat == "slope":
            return self._trend(label)
        if direction == "within":
            return f"{label}'s {self.stat_name} is within its usual range but {TOGETHER}"
        if self.stat in SPREAD_STATS:
            verb = SPREAD_STATS[self.stat]
            between = " between readings" if self.stat == "diff_rms" else ""
            if direction == "below" and (self.value <= 0 or (self.ratio or math.inf) > STUCK_RATIO):
                return f"{label} is {'not' if self.value <= 0 else 'hardly'} {verb} at all{between}"
            ratio = self.ratio
            if ratio is None:
                return f"{label} is {verb} {'more' if direction == 'above' else 'less'} than usual{between}"
            more = "more" if direction == "above" else "less"
            times = ratio_text(ratio)
            if times == "1×":  # just past the range's edge: "1× less than usual" says nothing
                return f"{label} is {verb} slightly {more} than usual{between}"
            return f"{label} is {verb} {times} {more} than usual{between}"
        subject = LEVEL_SUBJECT.get(self.stat, f"{label}'s {self.stat_name} is").format(label=label)
        if not direction:
            return f"{subject} {with_unit(self.value, unit)}"
        gap = self.value - self.high if direction == "above" else self.low - self.value
        return f"{subject} {with_unit(gap, unit)} {direction} its usual range"

    def _trend(self, label: str) -> str:
        unit, value, direction = rate_unit(self.unit), self.value, self.direction
        moving = "rising" if value > 0 else "falling" if value < 0 else "steady"
        size = f" {with_unit(abs(value), unit)}" if value else ""
        if direction == "within":
            return f"{label}'s trend is within its usual range but {TOGETHER}"
        if direction == "above":  # value > high
            if value > 0:
                return f"{label} is {moving}{size}" + (", faster than usual" if self.low >= 0 else "")
            return f"{label} is {'falling only' if value < 0 else 'steady'}{size}, slower than usual"
        if direction == "below":  # value < low
            if value < 0:
                return f"{label} is {moving}{size}" + (", faster than usual" if self.high <= 0 else "")
            return f"{label} is {'rising only' if value > 0 else 'steady'}{size}, slower than usual"
        return f"{label} is {moving}{size}"

    @property
    def evidence(self) -> str:
        """The numbers behind the headline: "0.30 mm/s vs 0.06–0.11 mm/s"."""
        if not self.usual_text:
            return self.value_text
        if self.stat == "slope":
            # The headline of a rise or fall outside its usual range already says how fast: only the
            # usual range is left to tell ("is rising 0.8 °C per minute: usually flat, ...").
            if self.value and self.direction in ("above", "below"):
                return self.usual_text
            return f"{self.value_text} ({self.usual_text})"
        return f"{self.value_text} vs {self.range_text}"

    @property
    def counterfactual(self) -> str:
        """ "back under the alert level below 0.11 mm/s" (other sensors as they are), or ""."""
        if self.back_to_normal is None:
            return ""
        side = "below" if self.back_to_normal < self.value else "above"
        return f"back under the alert level {side} {with_unit(self.back_to_normal, self.shown_unit, signed=self.stat == 'slope')}"

    @property
    def sentence(self) -> str:
        """Headline and evidence, with the counterfactual when there is one."""
        text = f"{self.headline}: {self.evidence}"
        if self.counterfactual:
            text += f"; on its own it would be {self.counterfactual}"
        return text


@dataclass(frozen=True)
class SensorReason:
    """One sensor that pushed the score: its positive findings, largest contribution first."""

    role: str
    sensor: str
    contribution: float  # Σφ over the role's features (> 0)
    findings: tuple[Finding, ...]

    @property
    def lead(self) -> Finding:
        return self.findings[0]

    @property
    def sentence(self) -> str:
        return self.lead.sentence

    @property
    def more(self) -> tuple[Finding, ...]:
        """The sensor's other pushes that are outside their usual range (those within it say little)."""
        return tuple(f for f in self.findings[1:] if f.direction in ("above", "below"))


def higher_is_worse(explanation: Mapping[str, Any] | None) -> bool:
    """Whether the explained score is bad when high: the explanation's ``higher_is_worse`` (``explain``
    stores the model's direction with it); True for explanations stored without one."""
    return bool((explanation or {}).get("higher_is_worse", True))


def pushes(
    explanation: Mapping[str, Any] | None,
    *,
    higher: bool | None = None,
    parts: Mapping[str, str] | None = None,
) -> list[tuple[str, float]]:
    """Which sensors pushed the score towards the alert, in what order: every role whose features' summed φ
    (its net push) is positive in the bad direction, with that push, largest first.

    The one rule behind the alert's words (``reasons``) and its title (``detection.explain.dominant_roles``,
    ``top_role``). The net push, not the summed |φ|: a sensor whose features cancel out did not move the
    score, and one that pulled it away from the alert is no reason for it. ``higher`` is the direction in
    which scores are bad; None takes the explanation's own (``higher_is_worse``). ``parts`` (role -> the part
    of the machine it sits on, e.g. a bearing's x and y channels -> that bearing) sums the roles of one part
    into one push named by the part; a role it does not name stands alone.
    """
    sign = 1.0 if (higher_is_worse(explanation) if higher is None else higher) else -1.0
    totals: dict[str, float] = {}
    for feature in (explanation or {}).get("features", []):
        role = role_of(feature["name"])
        role = (parts or {}).get(role, role)
        totals[role] = totals.get(role, 0.0) + sign * float(feature.get("phi") or 0.0)
    return sorted(((role, push) for role, push in totals.items() if push > 0), key=lambda item: -item[1])


def findings(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
    *,
    open_threshold: float | None = None,
    higher: bool | None = None,
) -> list[Finding]:
    """Every feature of an explanation as a Finding, largest |φ| first.

    A baselined model's input is the change from the asset's operating point: the value shown is the
    sensor's own (``raw``) and the usual range is moved by the same ``baseline``. ``higher``: as ``pushes``.
    """
    higher = higher_is_worse(explanation) if higher is None else higher
    out = []
    for feature in (explanation or {}).get("features", []):
        name = feature["name"]
        role, stat = role_of(name), stat_of(name)
        label, unit = roles.get(role, (role.replace("_", " ").capitalize(), ""))
        base = float(feature.get("baseline") or 0.0)
        low, high = ranges.get(name, (None, None))
        if low is not None and high is not None:
            low, high = low + base, high + base
        value = float(feature.get("raw", feature["value"]))
        back = None
        if open_threshold is not None and higher and feature.get("response"):
            t = back_to_normal(feature["response"], float(feature["value"]), open_threshold)
            back = None if t is None else t + base
        scale = 60.0 if stat == "slope" else 1.0  # trends are stored per second, told per minute
        out.append(
            Finding(
                feature=name,
                role=role,
                stat=stat,
                sensor=label,
                unit=unit,
                value=value * scale,
                low=None if low is None else low * scale,
                high=None if high is None else high * scale,
                phi=float(feature.get("phi") or 0.0),
                back_to_normal=None if back is None else back * scale,
            )
        )
    out.sort(key=lambda f: abs(f.phi), reverse=True)
    total = sum(abs(f.phi) for f in out)
    return [replace(f, share=f.phi / total) for f in out] if total > 0 else out


def reasons(
    explanation: Mapping[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]],
    roles: Mapping[str, tuple[str, str]],
    *,
    open_threshold: float | None = None,
    higher: bool | None = None,
    top: int | None = None,
) -> list[SensorReason]:
    """The sensors that pushed the score towards the alert, in ``pushes``' order (summed φ > 0; < 0 for a
    model whose low scores are bad; ``higher`` None: the explanation's own direction), each with its
    features that pushed the same way (largest first); at most ``top`` sensors. ``contribution`` is the
    push in the bad direction (always > 0)."""
    higher = higher_is_worse(explanation) if higher is None else higher
    sign = 1.0 if higher else -1.0
    by_role: dict[str, list[Finding]] = {}
    for finding in findings(explanation, ranges, roles, open_threshold=open_threshold, higher=higher):
        if sign * finding.phi > 0:
            by_role.setdefault(finding.role, []).append(finding)
    out = [
        SensorReason(
            role=role,
            sensor=by_role[role][0].sensor,
            contribution=push,
            findings=tuple(sorted(by_role[role], key=lambda f: sign * f.phi, reverse=True)),
        )
        for role, push in pushes(explanation, higher=higher)
    ]
    return out if top is None else out[:top]


def back_to_normal(response: Sequence[Sequence[float]], value: float, threshold: float) -> float | None:
    """The value of one feature, closest to ``value``, at which every branch's score a·t² + b·t + c is
    down to ``threshold`` with the other features fixed; None when no such value exists (or the curve is
    not convex, so the set is not one interval)."""
    low, high = -math.inf, math.inf
    for a, b, c in response:
        span = _below(a, b, c - threshold)
        if span is None:
            return None
        low, high = max(low, span[0]), min(high, span[1])
    if not low < high:
        return None
    if low < value < high:
        return None  # already under the level through this feature alone: nothing to say
    bound = low if value <= low else high
    return bound if math.isfinite(bound) else None


def _below(a: float, b: float, c: float) -> tuple[float, float] | None:
    """The open interval where a·t² + b·t + c < 0 (a ≥ 0), or None when it is empty or not an interval."""
    scale = max(abs(a), abs(b), abs(c), 1e-300)
    if a < -1e-12 * scale:
        return None
    if a <= 0:  # negligibly below zero (above): a line
        if abs(b) <= 1e-12 * scale:
            return (-math.inf, math.inf) if c < 0 else None
        root = -c / b
        return (-math.inf, root) if b > 0 else (root, math.inf)
    disc = b * b - 4 * a * c
    if disc <= 0:
        return None
    # The roots in the form without cancellation: with a tiny against b, (-b ± √disc) / 2a loses the near
    # root's digits, and dropping a·t² (a line) misses it by a·t², which at a far root is not small.
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
    near, far = c / q, q / a
    return (min(near, far), max(near, far))


def unusual_text(
    score: float | None,
    open_threshold: float | None,
    *,
    higher: bool = True,
    life_unit_s: float | None = None,
) -> str:
    """How unusual a score is, as a multiple of the alert level: "3.6× the alert level". A remaining useful
    life (``life_unit_s``: seconds in one unit of the score) is said as what it is: "remaining life 21 h
    (alert below 30 h)"."""
    if score is None or open_threshold is None or score != score:
        return "unknown"
    if life_unit_s is not None:
        alert_at = duration_text(open_threshold * life_unit_s)
        return f"remaining life {duration_text(score * life_unit_s)} (alert below {alert_at})"
    if higher and open_threshold > 0 and score >= 0:
        return f"{ratio_text(score / open_threshold)} the alert level"
    beyond = score >= open_threshold if higher else score <= open_threshold
    return "past the alert level" if beyond else "within the alert level"


def opening_text(windows: int, *, higher: bool = True) -> str:
    """Why the rules opened an alert, for its first event: "score above the open threshold for 3 consecutive
    windows"; "below" for a score whose low values are bad (a remaining useful life)."""
    return f"score {'above' if higher else 'below'} the open threshold for {windows} consecutive windows"


def duration_text(seconds: float) -> str:
    """ "40 s", "2 min", "1 h 5 min", "3 days"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} days"


def calibration_trend_text(label: str, unit: str, first: float, last: float) -> str:
    """A sensor whose level moved steadily through a calibration period (detection.baseline.level_trends),
    told to the engineer who owns the calibration: "Flow rose steadily through it (31.5 → 31.9 m³/h)"."""
    went = "rose" if last > first else "fell"
    return f"{label} {went} steadily through it ({fmt(first)} → {with_unit(last, unit)})"
