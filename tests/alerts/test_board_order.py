"""``Alert.board_order``: text that sorts as the board's order rule (the most severe first, then the oldest,
then by id), which board_alerts sorts by and static/js/board.js compares as text. It must hold for any time
an alert can carry (a gateway whose clock restarted at 1970, or before it) and any id the column takes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from alerts.choices import Severity
from alerts.models import Alert


def alert(pk: int, severity: str, opened_at: datetime) -> Alert:
    return Alert(pk=pk, severity=severity, opened_at=opened_at)


def rule(a: Alert) -> tuple[int, datetime, int]:
    return (-Severity(a.severity).rank, a.opened_at, a.pk)


def test_the_text_sorts_as_the_rule_across_1970_and_any_id():
    times = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 0, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 12, 6, 14, 0, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    ids = [-(2**63), -7, -1, 0, 1, 9, 2**63 - 1]
    alerts = [
        alert(pk, severity, at) for (pk, severity, at) in itertools.product(ids, ["low", "critical"], times)
    ]
    by_text = sorted(alerts, key=lambda a: a.board_order)
    assert [rule(a) for a in by_text] == sorted(rule(a) for a in alerts)


def test_an_alert_before_1970_stands_before_a_later_one():
    earlier = alert(2, "high", datetime(1969, 12, 31, 22, 0, tzinfo=UTC))
    later = alert(1, "high", datetime(1969, 12, 31, 23, 0, tzinfo=UTC))
    assert earlier.board_order < later.board_order
