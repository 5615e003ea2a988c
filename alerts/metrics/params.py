"""The parameters of a metrics question (grouping, period, date range, site) and their validation.

The page, the JSON/CSV API and the alert export all read their query string through ``parse_query``, so a
bad value gets the same message everywhere, naming the parameter (``MetricsParamError.param``). The
rules for any query-string value (printable, bounded dates and years) are plant.params'.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from plant.models import Site
from plant.params import ParamError, check_date, check_year, shown, text

GROUP_BYS = ("site", "asset", "asset_type", "model_version")
PERIODS = ("month", "week")
# The alarm-management KPIs' periods (alerts.metrics.kpis), in each site's own time zone and shifts.
KPI_PERIODS = ("day", "shift", "week")
MAX_RANGE_DAYS = 3 * 366
_MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")
_WEEK_RE = re.compile(r"([0-9]{4})-W([0-9]{2})")

# The metrics' name for plant.params.ParamError: one error type for every query-string value.
MetricsParamError = ParamError


@dataclass(frozen=True)
class MetricsQuery:
    """What to compute: rows per (period, key of ``group_by``), alerts opened in [start, end], one site or
    all the user's sites."""

    group_by: str = "site"
    period: str = "month"
    start: date | None = None
    end: date | None = None
    site: Site | None = None
    kpi_period: str = "day"

    def since(self) -> datetime | None:
        return _aware(self.start) if self.start else None

    def until(self) -> datetime | None:
        """Exclusive upper bound: midnight after ``end`` (the end date is included)."""
        return _aware(self.end + timedelta(days=1)) if self.end else None

    def as_params(self, **changes: str) -> dict[str, str]:
        """The query string that asks this again (for links), with ``changes`` applied."""
        params = {"group_by": self.group_by, "period": self.period}
        if self.kpi_period != KPI_PERIODS[0]:
            params["kpi_period"] = self.kpi_period
        if self.start:
            params["start"] = self.start.isoformat()
        if self.end:
            params["end"] = self.end.isoformat()
        if self.site:
            params["site"] = self.site.slug
        params.update(changes)
        return params

    def with_group(self, group_by: str) -> MetricsQuery:
        return replace(self, group_by=group_by)


def _aware(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = text(params, name) or choices[0]
    if value not in choices:
        raise MetricsParamError(name, f"{shown(value)} is not one of {', '.join(choices)}")
    return value


def _date(params: Mapping[str, str], name: str) -> date | None:
    raw = text(params, name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise MetricsParamError(name, f"{shown(raw)} is not a date; use YYYY-MM-DD") from None
    return check_date(name, day)


def parse_query(params: Mapping[str, str], site_ids: Collection[int]) -> MetricsQuery:
    """Read group_by, period, kpi_period, start, end and site (a slug among ``site_ids``); MetricsParamError
    if bad."""
    group_by = _choice(params, "group_by", GROUP_BYS)
    period = _choice(params, "period", PERIODS)
    kpi_period = _choice(params, "kpi_period", KPI_PERIODS)
    start, end = _date(params, "start"), _date(params, "end")
    if start and end and end < start:
        raise MetricsParamError("end", f"{end} is before start {start}")
    if start and end and (end - start).days > MAX_RANGE_DAYS:
        raise MetricsParamError("end", f"the range can span at most {MAX_RANGE_DAYS} days")
    site = None
    slug = text(params, "site")
    if slug:
        site = Site.objects.filter(slug=slug, pk__in=list(site_ids)).first()
        if site is None:
            raise MetricsParamError("site", f"no site {shown(slug)} among your sites")
    return MetricsQuery(
        group_by=group_by, period=period, start=start, end=end, site=site, kpi_period=kpi_period
    )


def period_label(moment: datetime, period: str) -> str:
    """'2026-09' for a month, '2026-W37' (ISO week) for a week; ``moment`` is the period's truncated start."""
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    year, week, _ = local.date().isocalendar()
    return f"{year:04d}-W{week:02d}"


def period_kind(label: str) -> str:
    """'month' or 'week' from the form of a period label; MetricsParamError("period") otherwise."""
    if _MONTH_RE.fullmatch(label):
        return "month"
    if _WEEK_RE.fullmatch(label):
        return "week"
    raise MetricsParamError(
        "period", f"{shown(label, 20)} is not a period; use a month (2026-09) or a week (2026-W37)"
    )


def period_bounds(label: str) -> tuple[datetime, datetime]:
    """[start, end) of a period label ('2026-09' or '2026-W37') in the current time zone; MetricsParamError
    for a month or week that does not exist or whose end is past Python's last date."""
    kind = period_kind(label)
    year, number = (
        int(part) for part in (_MONTH_RE if kind == "month" else _WEEK_RE).fullmatch(label).groups()
    )
    try:
        if kind == "month" and 1 <= number <= 12:
            return _aware(date(year, number, 1)), _aware(date(year + number // 12, number % 12 + 1, 1))
        if kind == "week":
            monday = date.fromisocalendar(year, number, 1)
            return _aware(monday), _aware(monday + timedelta(days=7))
    except (ValueError, OverflowError):  # year 0, or a period that ends after 9999-12-31
        pass
    raise MetricsParamError("period", f"{shown(label, 20)} is not a valid {kind}")


def parse_period(label: str) -> tuple[datetime, datetime]:
    """A period label typed by a user (a drill-down link): its bounds, the year within plant.params' years.
    Labels the metrics compute themselves go to period_bounds, whatever their year."""
    period_kind(label)
    check_year("period", int(label[:4]))
    return period_bounds(label)


def previous_period(label: str) -> str:
    """The calendar period just before ``label`` (of the same kind)."""
    start, _ = period_bounds(label)
    return period_label(start - timedelta(days=1), period_kind(label))
