"""Fuzzing the read side (issue 11): generated query strings against the metrics API (JSON and CSV), the
health page, its drill-down, the alert export and the asset chart, as an engineer and as a technician.

Every answer must be below 500, come back within REQUEST_S, and a streamed export must end (its size is
bounded for the small history used here). The values mix what the views accept (dates, ISO weeks, months,
groupings, ids of real sites and assets) with what they must refuse: dates past 9999 or before 1970, year
0000 periods, NUL and other control characters, any Unicode, invalid UTF-8 percent-escapes, ids of 30
digits and repeated keys. The seed is fixed so CI sends the same SEED-determined requests on every run.
"""

from __future__ import annotations

import string
import time
from collections import Counter
from datetime import date, datetime, timedelta
from urllib.parse import quote, quote_from_bytes

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, seed, settings, strategies as st

from alerts.metrics import DRILL_METRICS, GROUP_BYS, PERIODS
from alerts.metrics.params import KPI_PERIODS
from plant.choices import QualityFlag
from plant.forms import RANGE_PRESETS
from tests.alerts.test_metrics_golden import build_golden_history
from tests.conftest import make_readings
from tests.plant.test_views import strict_json

SEED = 20261104
EXAMPLES = 300  # each example is sent to every endpoint by both roles: 300 x 6 x 2 = 3,600 requests
MIN_REQUESTS = 3_500
REQUEST_S = 5.0  # a generous bound for one answer on a CI machine; an endless export never meets it
MAX_EXPORT_BYTES = 1_000_000
KEYS = (
    "start",
    "end",
    "group_by",
    "period",
    "kpi_period",
    "include",
    "site",
    "key",
    "metric",
    "format",
    "range",
    "asset",
)

HOSTILE = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\x1b[31m",
        "\x7f",
        "\u0085",
        "\u2028",
        "\ufeff",
        "\u00b2",
        "\u0661\u0662",
        "9999-12-31",
        "0000-01-01",
        "0001-01-01",
        "1969-12-31",
        "9999-12-31T23:59",
        "10000-01-01",
        "9999-12",
        "0000-01",
        "9999-W52",
        "2026-W53",
        "2026-W00",
        "2026-13",
        "2026-02-30",
        "-1",
        "1e308",
        "NaN",
        "Infinity",
        "9" * 30,
        "all",
        "none",
        " ",
        "",
        "x" * 5000,
    ]
)
YEARS = st.integers(min_value=0, max_value=99_999)


def often(usual: st.SearchStrategy[str], rare: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``usual`` four times in five. (st.one_of(a, a, b) would not do: it draws each distinct branch
    equally often.)"""
    return st.sampled_from([usual, usual, usual, usual, rare]).flatmap(lambda strategy: strategy)


RECENT = st.one_of(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)).map(date.isoformat),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)).map(
        lambda d: d.isoformat(timespec="minutes")
    ),
)
DATES = often(
    RECENT,
    st.one_of(
        st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
            lambda d: d.isoformat(timespec="minutes")
        ),
        st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", YEARS, st.integers(0, 99), st.integers(0, 99)),
    ),
)
PERIOD_LABELS = often(
    st.one_of(
        st.builds(lambda y, m: f"{y}-{m:02d}", st.integers(2025, 2027), st.integers(1, 12)),
        st.builds(lambda y, w: f"{y}-W{w:02d}", st.integers(2025, 2027), st.integers(1, 53)),
    ),
    st.one_of(
        st.builds(lambda y, m: f"{y:04d}-{m:02d}", YEARS, st.integers(0, 99)),
        st.builds(lambda y, w: f"{y:04d}-W{w:02d}", YEARS, st.integers(0, 99)),
    ),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=0, max_value=50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
TEXT = st.text(max_size=30).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
ANY = st.one_of(HOSTILE, TEXT, NUMBERS)


def values(key: str, ids: list[int], slugs: list[str]) -> st.SearchStrategy[str]:
    """Values for one key: mostly of its own kind (valid or just out of range), sometimes anything."""
    own = {
        "start": DATES,
        "end": DATES,
        "period": st.one_of(PERIOD_LABELS, st.sampled_from(PERIODS)),
        "group_by": st.sampled_from(GROUP_BYS),
        "kpi_period": st.sampled_from(KPI_PERIODS),
        "include": st.sampled_from(["kpis", "kpis,kpis", ""]),
        "site": st.sampled_from([*slugs, "east", "north\x00"]),
        "key": st.one_of(st.sampled_from([*map(str, ids), "all", "none"]), NUMBERS),
        "metric": st.sampled_from(DRILL_METRICS),
        "format": st.sampled_from(["json", "csv"]),
        "range": st.sampled_from(list(RANGE_PRESETS)),
        "asset": st.one_of(st.sampled_from(ids).map(str), NUMBERS),
    }.get(key, ANY)
    return often(own, ANY)


def queries(ids: list[int], slugs: list[str]) -> st.SearchStrategy[str]:
    """A query string: some of the known keys once each, then up to two more pairs whose key may repeat a
    known one or be anything; values are percent-encoded, or raw escapes (e.g. invalid UTF-8)."""
    pair_values = {key: values(key, ids, slugs).map(lambda v: quote(v, safe="")) for key in KEYS}
    known = st.fixed_dictionaries({}, optional=pair_values).map(lambda d: list(d.items()))
    odd_key = st.text(alphabet=string.printable, max_size=6).map(lambda k: quote(k, safe=""))
    raw = st.binary(max_size=12).map(lambda b: quote_from_bytes(b, safe=""))
    extra = st.one_of(
        st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), pair_values[k])),
        st.tuples(st.one_of(st.sampled_from(KEYS), odd_key), raw),
    )
    return st.builds(lambda a, b: a + b, known, st.lists(extra, max_size=2)).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    )


@pytest.fixture
def history(db, settings):
    """The golden alert history, and an hour of readings up to now on p-101 with the largest doubles."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    golden = build_golden_history()
    sensor = golden.p101.sensors.order_by("key").first()
    values = [1e308 if i == 400 else -1e308 if i == 800 else 50.0 + i % 7 for i in range(1200)]
    quality = [int(QualityFlag.OUT_OF_RANGE) if abs(v) > 100 else 0 for v in values]
    make_readings(sensor, timezone.now() - timedelta(hours=1), values, period_s=3.0, quality=quality)
    return golden


def test_generated_query_strings_never_get_a_5xx_nor_an_endless_answer(history):
    engineer, technician = Client(), Client()
    engineer.force_login(history.engineer)
    technician.force_login(history.tess)
    asset_ids = [history.p101.pk, history.p102.pk, history.f201.pk]
    site_ids = [history.north.pk, history.south.pk]
    sent: list[tuple[int, str]] = []
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def endpoints(asset: int) -> list[str]:
        return [
            "/api/v1/metrics",
            "/api/v1/metrics.csv",
            "/alerts/health/",
            "/alerts/health/kpis/",
            "/alerts/health/alerts/",
            "/alerts/export.csv",
            f"/assets/{asset}/chart.json",
        ]

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # no replay of saved failures: every run sends exactly the seed's requests
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        query=queries(asset_ids + site_ids, [history.north.slug, history.south.slug]),
        asset=st.one_of(st.sampled_from(asset_ids), st.integers(min_value=0, max_value=10**25)),
    )
    def check(query: str, asset: int) -> None:
        for path in endpoints(asset):
            for who, client in (("engineer", engineer), ("technician", technician)):
                url = f"{path}?{query}"
                began = time.monotonic()
                response = client.get(url)
                if response.streaming:
                    size = 0
                    for part in response.streaming_content:
                        size += len(part)
                        assert size <= MAX_EXPORT_BYTES, f"{who} {url}: the export does not end"
                elif path.endswith(".json") and response.status_code == 200:
                    strict_json(response.content)
                elapsed = time.monotonic() - began
                sent.append((response.status_code, url))
                endpoint = "/assets/<id>/chart.json" if path.startswith("/assets/") else path
                seconds[endpoint] = seconds.get(endpoint, 0.0) + elapsed
                assert response.status_code < 500, f"{who} {url}: {response.status_code}"
                assert elapsed < REQUEST_S, f"{who} {url}: {elapsed:.1f} s"
                if path.startswith("/api/") and response.status_code in (400, 403):
                    assert response["Content-Type"] == "application/json", f"{who} {url}"

    check()
    wall = time.monotonic() - started
    statuses = Counter(status for status, _ in sent)
    print(f"\nmetrics fuzz: {len(sent)} requests, seed {SEED}, {wall:.1f} s, statuses {dict(statuses)}")
    print("seconds per endpoint:", {endpoint: round(total, 1) for endpoint, total in seconds.items()})
    assert len(sent) >= MIN_REQUESTS
    assert 200 in statuses and 400 in statuses, "the generated values reach both the answers and the errors"
