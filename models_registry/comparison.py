"""Champion vs challenger over one period, judged by the same operator labels.

Two ways to get each version's alerts:

* ``backtest`` (default, like-for-like): the stored readings of the period go through the scorer's own
  pipeline (detection.pipeline: the version's regime standardisation, the feature windows, its complete
  windows minus each asset's current baseline for a baselined version — an asset still calibrating gets
  no alerts —, one batch of the version's ONNX artifact through models_registry.cache), and
  detection.rules.alert_episodes applies the lifecycle's open / hysteresis / auto-close rules with the
  version's thresholds. Both versions go through exactly this, so neither side is favoured by history the other did not have. Per-asset threshold
  overrides, maintenance suppression and the data-quality gate are not modelled (they decide how an alert is
  shown, not whether the model fires).
* ``recorded``: the alerts the versions really raised in the period — the current champion's all of them
  (shown to operators, and those it raised in shadow before its promotion), a former champion's visible
  alerts and a challenger's shadow alerts (empty for a version that never ran in shadow); a model's own
  alerts, never the sensor-fault rules' "check sensor X" alerts, here and in the observed follow-through
  alike. Each recorded episode says whether operators were shown it (``Episode.shown``): the observed
  follow-through is over exactly those of the champion, and the page counts them beside its alerts.

An alert (episode) is matched to the operator labels of its asset by time overlap: a confirmed fault or a
reported missed failure makes it a true alert, a false-alarm label a false alarm, a not-actionable label
neither; no overlapping label means no verdict is known. Precision and recall follow docs/architecture.md:
precision = true / (true + false alarms); recall = labelled faults (confirmed + missed) overlapped by at
least one alert / all labelled faults.

Follow-through estimate (``FOLLOW_THROUGH_MODEL``): each alert is assumed to get a verdict within
``VIGIL_FOLLOW_THROUGH_HOURS`` as often as the champion's alerts shown to operators in the period with the
same verdict in force did (confirmed faults, false alarms, not actionable, on machine-fault alerts: a
verdict on a "Check the sensor" or "Check the data link" alert judges the gate's call, so those count in
the overall rate only), and an alert without a known verdict as often as all of those did. This models
the mix of alerts only, not a change of trust; the page shows the observed rates it uses. The observed
rates are the health page's follow-through over those alerts; they
come from the alerts app (``provide_observed_follow_through``), which owns the per-alert facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from detection.pipeline import Pipeline, PipelineError
from detection.rules import alert_episodes, overlap
from detection.runtime import higher_is_worse
from detection.wording import unusual_text
from models_registry import baseline, cache
from plant.series import read_readings
from models_registry.models import ModelVersion
from models_registry.retrain import LabelEvent, feedback_events
from models_registry.training_data import reason_words, source_words
from plant.models import Asset, Reading, Sensor

MAX_PERIOD = timedelta(days=31)
BACKTEST, RECORDED = "backtest", "recorded"
FOLLOW_THROUGH_MODEL = (
    "Each alert is assumed to receive a verdict within {hours} h as often as the champion's alerts shown to "
    "operators in this period with the same verdict did; alerts with no known verdict as often as all of "
    "those did. "
    "This reflects the mix of alerts, not any change in how much technicians trust them."
)
TRUE_SOURCES = ("confirmed_fault", "missed_failure", "manual_fault")


class ComparisonError(ValueError):
    """The comparison cannot be made as asked (empty or too long period); the message says why."""


@dataclass
class Episode:
    """One alert of one version on one asset, as times, with the operator verdict matched to it."""

    asset: Asset
    start: datetime  # start of its first window
    last_seen: datetime
    opened: datetime
    closed: datetime | None
    peak: float
    verdict: str = ""  # a LabelEvent source, or "" when no label overlaps
    reason: str = ""
    alert_id: int | None = None
    open_threshold: float | None = None  # what it was judged by: its peak is told against it
    higher: bool = True
    shown: bool = False  # recorded: operators were shown it (a shadow alert never is; a backtest's: none)

    @property
    def peak_text(self) -> str:
        """Its peak as the board tells it ("5.3× the alert level"): the two versions score on their own
        scales, so raw peaks side by side compare nothing."""
        if self.open_threshold is None:
            return f"{self.peak:.3g}"
        return unusual_text(self.peak, self.open_threshold, higher=self.higher)

    @property
    def verdict_label(self) -> str:
        text = source_words(self.verdict)
        return f"{text} — {reason_words(self.reason)}" if self.reason else text

    def overlaps(self, other: Episode) -> bool:
        return (
            self.asset.pk == other.asset.pk
            and self.start <= other.last_seen
            and other.start <= self.last_seen
        )


@dataclass
class Side:
    """One version's alerts over the period and the figures computed from them."""

    version: ModelVersion
    source: str
    episodes: list[Episode] = field(default_factory=list)
    true_alerts: int = 0
    false_alarms: int = 0
    not_actionable: int = 0
    unknown: int = 0
    faults_caught: int = 0
    faults_total: int = 0
    precision: float | None = None
    recall: float | None = None
    per_asset_week: float = 0.0
    follow_through: float | None = None
    error: str = ""

    @property
    def shown_alerts(self) -> int:
        """How many of its recorded alerts operators were shown: what the observed follow-through counts."""
        return sum(episode.shown for episode in self.episodes)


@dataclass
class Comparison:
    challenger: Side
    champion: Side | None
    start: datetime
    end: datetime
    mode: str
    assets: list[Asset]
    labels: dict[str, int]
    added: list[Episode]
    removed: list[Episode]
    observed: dict[str, Any]
    follow_through_model: str = ""

    @property
    def labels_total(self) -> int:
        return sum(self.labels.values())


def compared_assets(version: ModelVersion, site_ids: Collection[int] | None = None) -> QuerySet[Asset]:
    """The active assets of the version's type, on the sites `site_ids` only when given (a user's sites)."""
    assets = version.asset_type.assets.filter(is_active=True)
    return assets if site_ids is None else assets.filter(site_id__in=list(site_ids))


def default_period(
    version: ModelVersion, *, site_ids: Collection[int] | None = None
) -> tuple[datetime, datetime]:
    """The last 30 days of the asset type's readings (all of them when there are fewer)."""
    from django.db.models import Max, Min

    sensors = list(compared_assets(version, site_ids).values_list("sensors__pk", flat=True))
    bounds = Reading.objects.filter(sensor_id__in=[s for s in sensors if s]).aggregate(
        first=Min("ts"), last=Max("ts")
    )
    if bounds["last"] is None:
        from django.utils import timezone

        now = timezone.now()
        return now - timedelta(days=30), now
    return max(bounds["first"], bounds["last"] - timedelta(days=30)), bounds["last"]


def compare(
    challenger: ModelVersion,
    champion: ModelVersion | None,
    start: datetime,
    end: datetime,
    mode: str = BACKTEST,
    *,
    site_ids: Collection[int] | None = None,
) -> Comparison:
    """Both versions' alerts over [start, end] matched to the same operator labels (see module docstring),
    on the assets of the sites `site_ids` (every site when None): a user compares on their sites only."""
    if end <= start:
        raise ComparisonError("the period is empty: its end must be after its start")
    if end - start > MAX_PERIOD:
        raise ComparisonError(f"the period can be at most {MAX_PERIOD.days} days")
    if mode not in (BACKTEST, RECORDED):
        raise ComparisonError(f"unknown mode {mode!r}; use {BACKTEST} or {RECORDED}")
    assets = list(compared_assets(challenger, site_ids).select_related("site").order_by("pk"))
    events = [event for event in feedback_events([a.pk for a in assets], start=start, end=end)]
    faults = [event for event in events if event.source in TRUE_SOURCES]
    observed = observed_follow_through(champion, assets, start, end) if champion else {}
    weeks = max((end - start) / timedelta(days=7), 1e-9)

    def side(version: ModelVersion, shadow: bool) -> Side:
        result = Side(version=version, source=mode)
        try:
            if mode == BACKTEST:
                result.episodes = backtest(version, assets, start, end)
            else:
                result.episodes = recorded(version, assets, start, end, shadow=shadow)
        except Exception as exc:  # an unreadable artifact must not take the page down
            result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        _judge(result, events, faults, observed, len(assets), weeks)
        return result

    challenger_side = side(challenger, shadow=True)
    champion_side = side(champion, shadow=False) if champion is not None else None
    added, removed = [], []
    if champion_side is not None:
        added = [
            e for e in challenger_side.episodes if not any(e.overlaps(o) for o in champion_side.episodes)
        ]
        removed = [
            e for e in champion_side.episodes if not any(e.overlaps(o) for o in challenger_side.episodes)
        ]
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        counts[event.source] += 1
    return Comparison(
        challenger=challenger_side,
        champion=champion_side,
        start=start,
        end=end,
        mode=mode,
        assets=assets,
        labels=dict(counts),
        added=added,
        removed=removed,
        observed=observed,
        follow_through_model=FOLLOW_THROUGH_MODEL.format(hours=settings.VIGIL_FOLLOW_THROUGH_HOURS),
    )


def _judge(
    side: Side,
    events: list[LabelEvent],
    faults: list[LabelEvent],
    observed: dict[str, Any],
    n_assets: int,
    weeks: float,
) -> None:
    by_asset: dict[int, list[LabelEvent]] = defaultdict(list)
    for event in events:
        by_asset[event.asset_id].append(event)
    for episode in side.episodes:
        start_s, end_s = episode.start.timestamp(), episode.last_seen.timestamp()
        hits = [e for e in by_asset[episode.asset.pk] if e.start_s <= end_s and start_s <= e.end_s]
        for wanted in (TRUE_SOURCES, ("false_alarm", "manual_normal"), ("not_actionable",)):
            match = next((e for e in hits if e.source in wanted), None)
            if match is not None:
                episode.verdict, episode.reason = match.source, match.reason
                break
    side.true_alerts = sum(e.verdict in TRUE_SOURCES for e in side.episodes)
    side.false_alarms = sum(e.verdict in ("false_alarm", "manual_normal") for e in side.episodes)
    side.not_actionable = sum(e.verdict == "not_actionable" for e in side.episodes)
    side.unknown = sum(e.verdict == "" for e in side.episodes)
    judged = side.true_alerts + side.false_alarms
    side.precision = side.true_alerts / judged if judged else None
    side.faults_total = len(faults)
    side.faults_caught = sum(
        any(
            e.asset.pk == f.asset_id
            and e.start.timestamp() <= f.end_s
            and f.start_s <= e.last_seen.timestamp()
            for e in side.episodes
        )
        for f in faults
    )
    side.recall = side.faults_caught / side.faults_total if side.faults_total else None
    side.per_asset_week = len(side.episodes) / max(n_assets, 1) / weeks
    rates = observed.get("rates") or {}
    if side.episodes and rates:
        overall = observed.get("overall")
        expected = 0.0
        for episode in side.episodes:
            key = "true" if episode.verdict in TRUE_SOURCES else episode.verdict or "unknown"
            key = "false_alarm" if key == "manual_normal" else key
            rate = rates.get(key, overall)
            expected += overall if rate is None else rate
        side.follow_through = expected / len(side.episodes) if overall is not None else None


ObservedFollowThrough = Callable[[ModelVersion, Collection[int], datetime, datetime], dict[str, Any]]
# Set by the alerts app (AlertsConfig.ready): the follow-through of the champion's alerts shown to operators
# comes from the alerts' per-alert facts, which this lower layer may not import.
_observed_follow_through: ObservedFollowThrough | None = None


def provide_observed_follow_through(source: ObservedFollowThrough | None) -> None:
    """Install the function ``compare`` asks for the champion's observed follow-through: called with the
    champion, the compared asset ids and the period, it returns ``alerts`` (how many), ``overall``,
    ``rates`` (per verdict key: true, false_alarm, not_actionable) and ``counts``."""
    global _observed_follow_through
    _observed_follow_through = source


def observed_follow_through(
    champion: ModelVersion, assets: list[Asset], start: datetime, end: datetime
) -> dict[str, Any]:
    """Follow-through of the champion's alerts shown to operators that opened in the period, overall and per
    verdict, from
    the provided source (nothing is observed when none was provided)."""
    if _observed_follow_through is None:
        return {}
    return _observed_follow_through(champion, [asset.pk for asset in assets], start, end)


RecordedAlerts = Callable[[ModelVersion, list[Asset], datetime, datetime, bool], list[Episode]]
# Set by the alerts app (AlertsConfig.ready): the alerts a version really raised are alerts' rows, which
# this lower layer may not import.
_recorded_alerts: RecordedAlerts | None = None


def provide_recorded_alerts(source: RecordedAlerts | None) -> None:
    """Install the function ``recorded`` asks: called with the version, the assets, the period and
    ``shadow``, it returns the Episodes of the alerts the version raised that opened in the period."""
    global _recorded_alerts
    _recorded_alerts = source


def recorded(
    version: ModelVersion, assets: list[Asset], start: datetime, end: datetime, *, shadow: bool
) -> list[Episode]:
    """The alerts the version really raised (shadow ones for a shadow version) that opened in the period,
    from the provided source (none recorded when none was provided)."""
    if _recorded_alerts is None:
        return []
    return _recorded_alerts(version, assets, start, end, shadow)


def backtest(version: ModelVersion, assets: list[Asset], start: datetime, end: datetime) -> list[Episode]:
    """The alerts the version would have raised from the stored readings of [start, end] (see module)."""

    asset_type = version.asset_type
    roles = list(asset_type.roles.order_by("key").values_list("key", flat=True))
    try:
        pipeline = Pipeline.from_spec(version.feature_spec, version.output_spec, roles)
    except PipelineError as exc:
        raise ComparisonError(f"{version} cannot score these assets: {exc}") from None
    window_s, step_s = float(asset_type.window_s), float(asset_type.step_s)
    sensors: dict[int, tuple[int, str]] = {}
    periods: dict[int, dict[str, float]] = defaultdict(dict)
    taken: set[tuple[int, str]] = set()
    for pk, asset_id, role, period in (
        Sensor.objects.filter(asset__in=assets)
        .order_by("pk")
        .values_list("pk", "asset_id", "role__key", "sample_period_s")
    ):
        if (asset_id, role) not in taken:  # one sensor per role, as the scorer reads them
            taken.add((asset_id, role))
            sensors[pk] = (asset_id, role)
            periods[asset_id][role] = period
    begin = start - timedelta(seconds=window_s)
    sid, ts, values, quality = read_readings(list(sensors), begin, end)
    series: dict[int, dict[str, tuple]] = defaultdict(dict)
    if len(sid):
        bounds = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1], True])
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            asset_id, role = sensors[int(sid[lo])]
            series[asset_id][role] = (ts[lo:hi], values[lo:hi], quality[lo:hi])
    todo = [asset for asset in assets if series.get(asset.pk)]
    if not todo:
        return []
    built = pipeline.windows(
        {asset.pk: series[asset.pk] for asset in todo},
        roles,
        window_s=window_s,
        step_s=step_s,
        start_s={asset.pk: begin.timestamp() + 1e-6 for asset in todo},
        end_s={asset.pk: end.timestamp() for asset in todo},
        sample_period_s={asset.pk: periods[asset.pk] for asset in todo},
        # As the scorer: an asset's windows are over the roles it has (optional sensors, NaN columns).
        absent_roles={asset.pk: [role for role in roles if (asset.pk, role) not in taken] for asset in todo},
    )
    vectors = None
    if pipeline.baselined:
        # The assets' current calibrations of the version's mode, as the scorer uses; an asset still
        # calibrating gets no alerts.
        vectors = baseline.current_steps(version, [asset.pk for asset in todo])
    # The thresholds the scorer uses for each asset: a robust version's calibrated ones, else the version's
    # (noise-control overrides are alerts' rows, outside this layer).
    in_force = baseline.thresholds_in_force(version, [asset.pk for asset in todo])
    try:
        scored = pipeline.run(
            lambda: cache.loaded(version),
            built,
            baselines=vectors,
            groups={asset.pk: asset.site_id for asset in todo},  # a peer-relative version's peer groups
        )
    except PipelineError as exc:
        raise ComparisonError(f"{version} cannot score these assets: {exc}") from None
    higher = higher_is_worse(version.output_spec)
    open_n, clear_n = int(settings.VIGIL_ALERT_OPEN_WINDOWS), int(settings.VIGIL_ALERT_CLEAR_WINDOWS)
    episodes: list[Episode] = []
    for asset in todo:
        part = scored.get(asset.pk)
        if part is None:
            continue
        ends, scores = part.ends, part.scores
        open_t, clear_t = in_force.get(asset.pk, (version.open_threshold, version.clear_threshold))
        for item in alert_episodes(
            scores, open_t, clear_t, open_n, clear_n, higher=higher, window_overlap=overlap(window_s, step_s)
        ):
            episodes.append(
                Episode(
                    asset=asset,
                    start=_utc(ends[item.first] - window_s),
                    last_seen=_utc(ends[item.last_seen]),
                    opened=_utc(ends[item.opened]),
                    closed=None if item.closed is None else _utc(ends[item.closed]),
                    peak=float(scores[item.peak]),
                    open_threshold=float(open_t),
                    higher=higher,
                )
            )
    episodes.sort(key=lambda e: (e.opened, e.asset.pk))
    return episodes


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=dt_timezone.utc)
