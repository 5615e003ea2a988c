"""Alarm-management KPIs (ISA-18.2 / IEC 62682 / EEMUA 191) per site and per shift, day or week, and the
warning when one leaves its band.

What an "alarm" is here: a visible alert once it was shown to operators (``shown_at`` of the per-alert
facts, ``alerts.metrics.facts``: an alert opened in a maintenance window counts from its move to open, one
never shown not at all). Its "condition" is (asset, model kind, category): a sensor fault
(``AlertCategory.SENSOR_FAULT``) or a data link to check (``DATA_LINK``: readings went missing) is a condition
of its own beside the machine fault of the same asset, and each site's alerts are also counted per category.
Buckets are the site's own: its time zone (``Site.timezone``), its days, ISO weeks and shifts
(``Site.shift_starts``). An alert counts in the bucket in which it was shown, and only when it was shown
inside the query's dates.

Definitions (targets and the band a warning checks, with their sources; docs/architecture.md):

* technicians: users in the technician group with a membership of the site (today's memberships: there
  is no roster history). The per-technician rates are None for a site without one.
* alerts per technician per 10 minutes = alerts / technicians / (bucket length / 10 min), and per day =
  alerts / technicians / (bucket length / 24 h). ISA-18.2 / EEMUA 191: ~1 per 10 min (~150 a day) "very
  likely acceptable", ~2 per 10 min (~300 a day) "maximum manageable"; the warning fires above the maximum
  manageable. A bucket still running (or cut by the query's dates) is ``partial`` and counts only its
  elapsed part, and its rates exist only once ``RATE_MIN_ELAPSED`` (1 h) of it has passed (``rated``):
  both rates are averages the standards judge over a whole shift or day, and over a few minutes they are
  an artefact of the division, not a load (3 alerts in the first 7 minutes of a shift read as 303 a day,
  "out of band"; each alert moves an hour's rate by 1/6 per 10 min at most). The standards' own measure of
  a short span is the flood (more than 10 alerts in one 10-minute period), which is checked on every
  10-minute period, running or not, so a real burst at the start of a shift still warns. Before the hour
  the page says "so far: N alerts in M min", with no rate and no band; after it, the rate is over the
  elapsed part and the page says so.
* flood: a 10-minute period (aligned on UTC multiples of 10 minutes) in which the site showed more than
  10 alerts; the KPI is flood periods / 10-minute periods of the bucket. Target < 1 %.
* chattering: ``VIGIL_KPI_CHATTER_OPENS`` (3) or more alerts of one condition shown within
  ``VIGIL_KPI_CHATTER_MINUTES`` (60) minutes; every alert of such a burst is a chattering alert, counted
  in its own bucket. ISA-18.2's process-alarm rule is 3 in 1 minute; a Vigil alert needs several windows
  to open and several clear windows to close, so an hour is the scale on which a condition that keeps
  re-opening shows. Target: none.
* fleeting: closed within ``VIGIL_KPI_RESPOND_MINUTES`` (5) of being shown with no human event at all
  before it closed: nobody could have responded. Target: none.
* stale: an alert still active 24 h after it was shown with no human answer (acknowledge, snooze,
  verdict) in those 24 h; it is stale from then until it closes or is answered. A bucket counts the
  alerts stale at some moment inside it; ``stale_max_day`` is the largest such count of any site day the
  bucket touches. Target < 5 on any day.
* bad actors: the 10 conditions with the most alerts over the query's dates, per site, and their share of
  all its alerts. Target: a share of ~1–5 % at most; with 10 conditions or fewer the top 10 are every
  alert, so the share is not checked then.
* priority mix: Vigil's severities mapped onto the standard's three priorities — low → low, medium →
  medium, high and critical → high — against ~80 / 15 / 5 %. Out of band when the high share passes twice
  its guide (10 %) or the medium share twice its guide (30 %), over buckets with 20 alerts or more.

Computed from one statement over the per-alert facts (one row per alert, no aggregation in SQL): the
10-minute periods, the bursts and the stale spans are sequences over time, simpler and exact in Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, Q

from alerts.choices import AlertCategory, AlertKind, Severity, category_counts
from alerts.metrics.facts import alert_facts_sql, epoch_s, fetch
from alerts.metrics.params import MetricsQuery
from alerts.models import Alert
from detection.wording import duration_text
from plant.choices import Role
from plant.models import Asset, Site, SiteMembership

TEN_MINUTES = 600
DAY = 86400
FLOOD_ALERTS = 10  # more than this many in 10 minutes is a flood
STALE_AFTER = timedelta(hours=24)
TOP = 10
PRIORITIES = ("low", "medium", "high")
PRIORITY_OF = {
    Severity.LOW: "low",
    Severity.MEDIUM: "medium",
    Severity.HIGH: "high",
    Severity.CRITICAL: "high",
}
PRIORITY_TARGET = {"low": 0.80, "medium": 0.15, "high": 0.05}
PRIORITY_MIN_ALERTS = 20
# A partial bucket's rates are averages over its elapsed part: not judged over less than this (docstring).
RATE_MIN_ELAPSED = timedelta(hours=1)


@dataclass(frozen=True)
class Band:
    """A KPI's targets: ``good`` is the standard's target, ``limit`` where the warning fires."""

    title: str
    good: float
    limit: float
    source: str


BANDS = {
    "per_tech_per_10min": Band("Alerts per technician per 10 minutes", 1, 2, "ISA-18.2 / EEMUA 191"),
    "per_tech_per_day": Band("Alerts per technician per day", 150, 300, "ISA-18.2 / EEMUA 191"),
    "flood_pct": Band("10-minute periods in flood (> 10 alerts)", 0.01, 0.01, "ISA-18.2"),
    "chattering": Band("Chattering alerts", 0, 0, "ISA-18.2"),
    "fleeting": Band("Fleeting alerts", 0, 0, "ISA-18.2"),
    "stale_max_day": Band("Stale alerts on one day (> 24 h unanswered)", 5, 5, "ISA-18.2"),
    "priority_mix": Band(
        "Priority mix (low / medium / high)", 0.05, 0.10, "ISA-18.2 / IEC 62682 / EEMUA 191"
    ),
    "bad_actor_share": Band("Share of alerts from the top 10 conditions", 0.01, 0.05, "ISA-18.2"),
}


def chatter_opens() -> int:
    return settings.VIGIL_KPI_CHATTER_OPENS


def chatter_window() -> timedelta:
    return timedelta(minutes=settings.VIGIL_KPI_CHATTER_MINUTES)


def respond_window() -> timedelta:
    return timedelta(minutes=settings.VIGIL_KPI_RESPOND_MINUTES)


@dataclass
class KpiRow:
    """The KPIs of one site in one shift, day or week (``period`` is its label in the site's time)."""

    site_id: int
    site: str
    period: str
    start: datetime
    end: datetime
    seconds: float
    technicians: int
    # The whole bucket's length; ``seconds`` is the part inside the query's dates and before now.
    length: float = 0.0
    running: bool = False  # not over yet at the time of the query (its elapsed part counts)
    alerts: int = 0
    ten_minute_periods: int = 0
    flood_periods: int = 0
    peak_10min: int = 0
    chattering: int = 0
    chattering_conditions: int = 0
    fleeting: int = 0
    stale: int = 0
    stale_max_day: int = 0
    priorities: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0))

    @property
    def partial(self) -> bool:
        """Only part of the bucket counts: it is still running, or the query's dates cut it."""
        return self.seconds < self.length

    @property
    def rated(self) -> bool:
        """Enough of the bucket has passed for its per-technician rates (``RATE_MIN_ELAPSED``, or all of a
        shorter bucket): before that they are None and the page shows what passed so far."""
        return self.seconds > 0 and self.seconds >= min(RATE_MIN_ELAPSED.total_seconds(), self.length)

    @property
    def seconds_text(self) -> str:
        return duration_text(self.seconds)

    @property
    def so_far(self) -> str:
        """'3 alerts in 7 min': what a partial bucket's numbers are counted over."""
        return f"{self.alerts} alert{'' if self.alerts == 1 else 's'} in {self.seconds_text}"

    @property
    def period_text(self) -> str:
        """The bucket's label, and for a partial one how much of it counts: '2026-09-14 06:00 (so far: 3
        alerts in 7 min of 8 h)', or the part inside the query's dates."""
        return f"{self.period} ({self.partial_text})" if self.partial else self.period

    @property
    def partial_text(self) -> str:
        """How much of a partial bucket counts: 'so far: 3 alerts in 7 min of 8 h'."""
        if self.running:
            return f"so far: {self.so_far} of {duration_text(self.length)}"
        return f"{self.seconds_text} of {duration_text(self.length)} in the dates chosen"

    @property
    def per_tech_per_10min(self) -> float | None:
        if not self.technicians or not self.rated:
            return None
        return self.alerts / self.technicians / (self.seconds / TEN_MINUTES)

    @property
    def per_tech_per_day(self) -> float | None:
        if not self.technicians or not self.rated:
            return None
        return self.alerts / self.technicians / (self.seconds / DAY)

    @property
    def flood_pct(self) -> float | None:
        return self.flood_periods / self.ten_minute_periods if self.ten_minute_periods else None

    @property
    def priority_mix(self) -> dict[str, float | None]:
        return {name: (n / self.alerts if self.alerts else None) for name, n in self.priorities.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "period": self.period,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seconds": self.seconds,
            "partial": self.partial,
            "rated": self.rated,
            "technicians": self.technicians,
            "alerts": self.alerts,
            "per_tech_per_10min": self.per_tech_per_10min,
            "per_tech_per_day": self.per_tech_per_day,
            "ten_minute_periods": self.ten_minute_periods,
            "flood_periods": self.flood_periods,
            "flood_pct": self.flood_pct,
            "peak_10min": self.peak_10min,
            "chattering": self.chattering,
            "chattering_conditions": self.chattering_conditions,
            "fleeting": self.fleeting,
            "stale": self.stale,
            "stale_max_day": self.stale_max_day,
            "priorities": dict(self.priorities),
            "priority_mix": self.priority_mix,
        }


@dataclass(frozen=True)
class BadActor:
    """One of a site's most frequent conditions over the query's dates."""

    asset_id: int
    label: str
    kind: str
    category: str
    alerts: int
    share: float

    @property
    def kind_label(self) -> str:
        """What raised them, as the pages say it ("Anomaly detector"); the API keeps the code."""
        return AlertKind(self.kind).label if self.kind in AlertKind.values else self.kind

    @property
    def category_label(self) -> str:
        return AlertCategory(self.category).label if self.category in AlertCategory.values else self.category

    def as_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset_id,
            "label": self.label,
            "kind": self.kind,
            "category": self.category,
            "alerts": self.alerts,
            "share": self.share,
        }


@dataclass
class SiteKpis:
    """A site's KPI rows (oldest first), its bad actors and their share of all its alerts."""

    site: Site
    technicians: int
    rows: list[KpiRow]
    alerts: int
    conditions: int
    bad_actors: list[BadActor]
    # (category, alerts) over the query's dates: machine faults, sensors and data links to check, apart.
    categories: list[tuple[AlertCategory, int]] = field(default_factory=list)

    @property
    def priority_mix(self) -> dict[str, float | None]:
        """Shares of the priorities over the query's dates (every alert counted is in one row)."""
        counts = {name: sum(row.priorities[name] for row in self.rows) for name in PRIORITIES}
        return {name: (n / self.alerts if self.alerts else None) for name, n in counts.items()}

    @property
    def bad_actor_share(self) -> float | None:
        return sum(b.alerts for b in self.bad_actors) / self.alerts if self.alerts else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site.slug,
            "name": self.site.name,
            "timezone": self.site.timezone,
            "shift_starts": [f"{start:%H:%M}" for start in self.site.shift_start_times()],
            "technicians": self.technicians,
            "alerts": self.alerts,
            "conditions": self.conditions,
            "categories": {category.value: n for category, n in self.categories},
            "bad_actors": [b.as_dict() for b in self.bad_actors],
            "bad_actor_share": self.bad_actor_share,
            "rows": [row.as_dict() for row in self.rows],
        }


@dataclass(frozen=True)
class KpiWarning:
    """A KPI out of its band on a site: in how many of the buckets, and the worst one."""

    site: str
    kpi: str
    periods: tuple[str, ...]
    worst_period: str
    worst: str
    target: str

    @property
    def title(self) -> str:
        return BANDS[self.kpi].title

    @property
    def message(self) -> str:
        where = (
            f"in {len(self.periods)} periods, worst {self.worst_period}"
            if len(self.periods) > 1
            else f"in {self.worst_period}"
        )
        return f"{self.site}: {self.title} {self.worst} {where} (target {self.target}, {BANDS[self.kpi].source})."

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "kpi": self.kpi,
            "periods": list(self.periods),
            "worst_period": self.worst_period,
            "worst": self.worst,
            "target": self.target,
            "message": self.message,
        }


@dataclass
class KpiReport:
    """The KPIs of every site of the query, and the warnings."""

    kpi_period: str
    sites: list[SiteKpis]
    warnings: list[KpiWarning]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kpi_period": self.kpi_period,
            "chatter_opens": chatter_opens(),
            "chatter_minutes": chatter_window().total_seconds() / 60,
            "respond_minutes": respond_window().total_seconds() / 60,
            "sites": [site.as_dict() for site in self.sites],
            "warnings": [warning.as_dict() for warning in self.warnings],
        }


def bucket_of(moment: datetime, kpi_period: str, zone: ZoneInfo, shift_starts: list) -> tuple[datetime, str]:
    """The start (aware, UTC) and label of the site's day ('2026-09-14'), ISO week ('2026-W37') or shift
    ('2026-09-14 06:00') that holds ``moment``."""
    local = moment.astimezone(zone)
    day = local.date()
    if kpi_period == "week":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        start, label = datetime.combine(monday, time.min, zone), f"{year:04d}-W{week:02d}"
    elif kpi_period == "day":
        start, label = datetime.combine(day, time.min, zone), day.isoformat()
    else:
        earlier = [start for start in shift_starts if start <= local.time()]
        if earlier:
            start_day, first = day, earlier[-1]
        else:  # before the day's first shift: the previous day's last shift
            start_day, first = day - timedelta(days=1), shift_starts[-1]
        start, label = datetime.combine(start_day, first, zone), f"{start_day.isoformat()} {first:%H:%M}"
    # In UTC: the difference of two times of one ZoneInfo is wall-clock time, wrong across a DST change.
    return start.astimezone(dt_timezone.utc), label


def bucket_end(start: datetime, kpi_period: str, zone: ZoneInfo, shift_starts: list) -> datetime:
    """The start (aware, UTC) of the bucket after the one starting at ``start``, by the site's wall clock
    (so a day or a night shift has an hour more or less across a daylight-saving change)."""
    local = start.astimezone(zone)
    if kpi_period == "week":
        end = datetime.combine(local.date() + timedelta(days=7), time.min, zone)
    elif kpi_period == "day":
        end = datetime.combine(local.date() + timedelta(days=1), time.min, zone)
    else:
        later = [s for s in shift_starts if s > local.time()]
        if later:
            end = datetime.combine(local.date(), later[0], zone)
        else:
            end = datetime.combine(local.date() + timedelta(days=1), shift_starts[0], zone)
    return end.astimezone(dt_timezone.utc)


def _days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[date]:
    """The site days that [start, end) touches."""
    day, last = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def technicians_by_site(site_ids: Collection[int]) -> dict[int, int]:
    """Active users in the technician group with a membership of each site (the per-technician
    denominator)."""
    pairs = set(
        SiteMembership.objects.filter(
            site_id__in=list(site_ids), user__is_active=True, user__groups__name=Role.TECHNICIAN
        ).values_list("site_id", "user_id")
    )
    return dict(Counter(site_id for site_id, _ in pairs))


def _facts(site_ids: Collection[int], since: datetime | None, until: datetime | None) -> list[tuple]:
    """(site, asset, kind, category, severity, shown, closed, first human event) of every visible alert
    of the sites that could count, times as UTC epoch seconds (to the millisecond), in the order shown:
    opened before the range's end and not closed before its start (an alert shown before the range can
    be stale inside it)."""
    alerts = Alert.objects.filter(is_shadow=False, asset__site_id__in=list(site_ids))
    if until:
        alerts = alerts.filter(opened_at__lt=until)
    if since:
        alerts = alerts.filter(Q(closed_at__isnull=True) | Q(closed_at__gte=since))
    sql, params = alert_facts_sql(
        alerts,
        k_site=F("asset__site_id"),
        k_asset=F("asset_id"),
        c_kind=F("kind"),
        c_category=F("category"),
        c_severity=F("severity"),
        c_closed=F("closed_at"),
    )
    times = ", ".join(epoch_s(column) for column in ("shown_at", "c_closed", "first_human_at"))
    rows = fetch(
        f"{sql} SELECT k_site, k_asset, c_kind, c_category, c_severity, {times} FROM facts"
        " ORDER BY shown_at, id",
        params,
    )
    return [(*row[:5], *(None if value is None else round(value, 3) for value in row[5:])) for row in rows]


def alarm_kpis(site_ids: Collection[int], query: MetricsQuery, *, now: datetime) -> KpiReport:
    """The KPIs of the query's sites (its one site, or all of ``site_ids``) over its dates, per its
    ``kpi_period``, with the warnings of the KPIs out of their band."""
    sites = [query.site] if query.site else list(Site.objects.filter(pk__in=list(site_ids)).order_by("name"))
    since, until = query.since(), query.until()
    limit = min(until, now) if until else now
    facts = _facts([site.pk for site in sites], since, until)
    technicians = technicians_by_site([site.pk for site in sites])
    by_site: dict[int, list[tuple]] = {}
    for fact in facts:
        by_site.setdefault(fact[0], []).append(fact)
    labels = dict(Asset.objects.filter(site__in=sites).values_list("pk", "name"))
    result = [
        _site_kpis(
            site,
            by_site.get(site.pk, []),
            technicians.get(site.pk, 0),
            query.kpi_period,
            since,
            limit,
            labels,
            now,
        )
        for site in sites
    ]
    return KpiReport(kpi_period=query.kpi_period, sites=result, warnings=kpi_warnings(result))


def _site_kpis(
    site: Site,
    facts: list[tuple],
    technicians: int,
    kpi_period: str,
    since: datetime | None,
    limit: datetime,
    labels: dict[int, str],
    now: datetime,
) -> SiteKpis:
    zone, starts = site.zone, site.shift_start_times()
    since_s, limit_s = (since.timestamp() if since else None), limit.timestamp()
    rows: dict[datetime, KpiRow] = {}
    last: list[tuple[float, float, KpiRow]] = []

    def row(moment: float) -> KpiRow:
        # The alerts come in time order: most fall in the bucket of the one before (no time-zone work).
        if last and last[0][0] <= moment < last[0][1]:
            return last[0][2]
        start, label = bucket_of(datetime.fromtimestamp(moment, dt_timezone.utc), kpi_period, zone, starts)
        found = rows.get(start)
        if found is None:
            end = bucket_end(start, kpi_period, zone, starts)
            seconds = max(0.0, (min(end, limit) - max(start, since or start)).total_seconds())
            found = rows[start] = KpiRow(
                site_id=site.pk,
                site=site.name,
                period=label,
                start=start,
                end=end,
                seconds=seconds,
                technicians=technicians,
                length=(end - start).total_seconds(),
                running=start <= now < end,
                ten_minute_periods=-(-int(seconds) // TEN_MINUTES),
            )
        last[:] = [(found.start.timestamp(), found.end.timestamp(), found)]
        return found

    shown = [fact for fact in facts if (since_s is None or fact[5] >= since_s) and fact[5] < limit_s]
    respond_s = respond_window().total_seconds()
    slots: Counter[tuple[datetime, int]] = Counter()
    conditions: dict[tuple, list[float]] = {}
    for _, asset, kind, category, severity, shown_at, closed, human in shown:
        target = row(shown_at)
        target.alerts += 1
        target.priorities[PRIORITY_OF.get(severity, "low")] += 1
        slots[(target.start, int(shown_at // TEN_MINUTES))] += 1
        conditions.setdefault((asset, kind, category), []).append(shown_at)
        if closed is not None and (human is None or human > closed) and closed - shown_at < respond_s:
            target.fleeting += 1
    for (start, _), n in slots.items():
        rows[start].peak_10min = max(rows[start].peak_10min, n)
        if n > FLOOD_ALERTS:
            rows[start].flood_periods += 1
    # Chattering: every alert of a burst of ``opens`` within the window, once each.
    opens, window_s = chatter_opens(), chatter_window().total_seconds()
    for times in conditions.values():
        burst: set[int] = set()
        for i in range(opens - 1, len(times)):
            if times[i] - times[i - opens + 1] <= window_s:
                burst.update(range(i - opens + 1, i + 1))
        chattering_in: dict[datetime, int] = {}
        for i in sorted(burst):
            target = row(times[i])
            target.chattering += 1
            chattering_in[target.start] = 1
        for start in chattering_in:
            rows[start].chattering_conditions += 1
    # Stale spans, clipped to the range: counted per bucket and per site day.
    stale_days: Counter[date] = Counter()
    stale_after_s = STALE_AFTER.total_seconds()
    for *_, shown_at, closed, human in facts:
        stale_from = shown_at + stale_after_s
        if since_s is not None:
            stale_from = max(stale_from, since_s)
        stale_until = min(moment for moment in (closed, human, limit_s) if moment is not None)
        if stale_from >= stale_until:
            continue
        utc = dt_timezone.utc
        for day in _days(
            datetime.fromtimestamp(stale_from, utc), datetime.fromtimestamp(stale_until, utc), zone
        ):
            stale_days[day] += 1
        moment = stale_from
        while moment < stale_until:
            target = row(moment)
            target.stale += 1
            moment = target.end.timestamp()
    for target in rows.values():
        target.stale_max_day = max(
            (stale_days[day] for day in _days(target.start, target.end, zone)), default=0
        )
    per_condition = Counter({key: len(times) for key, times in conditions.items()})
    total = len(shown)
    bad_actors = [
        BadActor(
            asset_id=asset,
            label=labels.get(asset, str(asset)),
            kind=kind,
            category=category,
            alerts=n,
            share=n / total,
        )
        for (asset, kind, category), n in sorted(
            per_condition.items(), key=lambda item: (-item[1], labels.get(item[0][0], ""), item[0])
        )[:TOP]
    ]
    return SiteKpis(
        site=site,
        technicians=technicians,
        rows=sorted(rows.values(), key=lambda r: r.start),
        alerts=total,
        conditions=len(conditions),
        bad_actors=bad_actors,
        categories=category_counts(fact[3] for fact in shown),
    )


def _rate(_row: KpiRow, value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _count(_row: KpiRow, value: int) -> str:
    return str(value)


def mix_text(mix: dict[str, float | None]) -> str:
    """'80 / 15 / 5 %' (low / medium / high), '—' without alerts."""
    if mix["low"] is None:
        return "—"
    return " / ".join(f"{100 * mix[name]:.0f}" for name in PRIORITIES) + " %"


def kpi_warnings(sites: list[SiteKpis]) -> list[KpiWarning]:
    """One warning per (site, KPI) out of its band in any bucket (the worst bucket named); a pure function
    of the KPI rows, like the trust-erosion warning."""
    warnings: list[KpiWarning] = []

    def check(
        site: SiteKpis,
        kpi: str,
        values: list[tuple[KpiRow, Any]],
        shown: Callable[[KpiRow, Any], str],
        target: str,
    ) -> None:
        out = [(row, value) for row, value in values if value is not None and value > BANDS[kpi].limit]
        if kpi == "stale_max_day":  # "fewer than 5 on any day": 5 is already out
            out = [(row, value) for row, value in values if value >= BANDS[kpi].limit]
        if out:
            worst_row, worst = max(out, key=lambda item: (item[1], item[0].start))
            warnings.append(
                KpiWarning(
                    site=site.site.name,
                    kpi=kpi,
                    periods=tuple(row.period_text for row, _ in out),
                    worst_period=worst_row.period_text,
                    worst=shown(worst_row, worst),
                    target=target,
                )
            )

    for site in sites:
        rows = site.rows
        check(site, "per_tech_per_10min", [(r, r.per_tech_per_10min) for r in rows], _rate, "≤ 1, at most 2")
        check(site, "per_tech_per_day", [(r, r.per_tech_per_day) for r in rows], _rate, "≤ 150, at most 300")
        check(site, "flood_pct", [(r, r.flood_pct) for r in rows], lambda _r, v: f"{v:.1%}", "< 1 %")
        check(site, "chattering", [(r, r.chattering) for r in rows], _count, "none")
        check(site, "fleeting", [(r, r.fleeting) for r in rows], _count, "none")
        check(site, "stale_max_day", [(r, r.stale_max_day) for r in rows], _count, "< 5 on any day")
        mix = []
        for r in rows:
            if r.alerts >= PRIORITY_MIN_ALERTS:
                shares = r.priority_mix
                # How far past the band: the larger of high / 10 % and medium / 30 %, scaled to the high band.
                over = max(shares["high"] / 0.10, shares["medium"] / 0.30) * BANDS["priority_mix"].limit
                mix.append((r, over))
        check(
            site,
            "priority_mix",
            mix,
            lambda r, _v: mix_text(r.priority_mix),
            "~80 / 15 / 5 %; high ≤ 10 %, medium ≤ 30 %",
        )
        share = site.bad_actor_share
        if share is not None and site.conditions > TOP and share > BANDS["bad_actor_share"].limit:
            warnings.append(
                KpiWarning(
                    site=site.site.name,
                    kpi="bad_actor_share",
                    periods=("the whole range",),
                    worst_period="the whole range",
                    worst=f"{share:.0%}",
                    target="~1–5 % at most",
                )
            )
    return warnings
