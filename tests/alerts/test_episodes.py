"""detection.rules.alert_episodes agrees with the real lifecycle (apply_scores) on the same scores."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction

from alerts.models import Alert, Score
from alerts.services import ScoredWindow, apply_scores
from detection.rules import active_mask, alert_episodes
from alerts.services.lifecycle import assets_with_active_alert
from alerts.services.overrides import threshold_overrides
from tests.alerts.builders import bare_champion
from tests.conftest import T0

OPEN, CLEAR, M, N = 10.0, 5.0, 3, 6


def end_of(k: int):
    return T0 + timedelta(seconds=10 * k)


def run_lifecycle(asset, version, scores, chunk: int) -> tuple[list[Alert], dict[int, range]]:
    """Store and apply the scores chunk by chunk as the fleet scorer does (one transaction per chunk,
    the active-alert and override look-ups for the chunk). Returns the alerts and, per auto-closed alert,
    the window indices of the chunk in which it closed."""
    closed_in: dict[int, range] = {}
    for first in range(0, len(scores), chunk):
        part = range(first, min(first + chunk, len(scores)))
        batch = [ScoredWindow(end=end_of(k), score=float(scores[k]), x=None, flagged={}) for k in part]
        with transaction.atomic():
            Score.objects.bulk_create(
                [Score(asset=asset, model_version=version, window_end=w.end, score=w.score) for w in batch]
            )
            active = assets_with_active_alert(version, [asset.pk])
            overrides = threshold_overrides(version, [asset.pk])
            apply_scores(asset, version, batch, with_active=active, thresholds=overrides)
        for pk in (
            Alert.objects.filter(state="auto_closed").exclude(pk__in=closed_in).values_list("pk", flat=True)
        ):
            closed_in[pk] = part
    return list(Alert.objects.order_by("opened_at")), closed_in


def assert_same(asset, version, scores, *, chunk: int, higher: bool = True):
    alerts, closed_in = run_lifecycle(asset, version, scores, chunk)
    episodes = alert_episodes(scores, version.open_threshold, version.clear_threshold, M, N, higher=higher)
    got = [
        (a.opened_at, a.last_seen_at, a.peak_window_end, a.peak_score, a.state == "auto_closed")
        for a in alerts
    ]
    expected = [
        (end_of(e.opened), end_of(e.last_seen), end_of(e.peak), float(scores[e.peak]), e.closed is not None)
        for e in episodes
    ]
    assert got == expected
    for alert, episode in zip(alerts, episodes, strict=True):
        if episode.closed is not None:
            assert episode.closed in closed_in[alert.pk]
    return alerts, episodes


HIGH = [0.0] * 4
PATTERNS = {
    # The peak is the middle window of the opening run, not the window that opened the alert.
    "peak_inside_the_opening_run": HIGH + [12, 15, 11, 8, 2, 2, 2, 2, 2, 2, 0, 0],
    "flapping_around_the_open_threshold": HIGH
    + [12, 2, 12, 12, 2, 12, 12, 12, 2, 12, 2, 12, 12, 2, 2, 2, 2, 2, 2, 12, 12, 12, 1, 1],
    "held_open_by_the_hysteresis_band": HIGH
    + [11, 11, 11]
    + [7, 6, 9, 5.0, 6] * 4
    + [13, 4, 4, 4, 4, 4, 9, 4, 4, 4, 4, 4, 4, 0],
    "reopening_right_after_the_close": HIGH
    + [11, 12, 11]
    + [1] * 6
    + [11, 14, 11]
    + [1] * 6
    + [12, 12, 12, 12],
    "scores_equal_to_the_thresholds_are_neither": HIGH
    + [10, 10, 10, 11, 11, 11, 5, 5, 5, 5, 5, 5, 5, 4]
    + [4] * 6,
}


@pytest.mark.parametrize("chunk", [1, 7])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_alert_episodes_raise_the_same_alerts_as_the_lifecycle(asset, pattern, chunk):
    version = bare_champion(asset.asset_type)

    alerts, _ = assert_same(asset, version, PATTERNS[pattern], chunk=chunk)

    assert alerts  # every pattern raises at least one alert


def test_the_peak_of_an_alert_can_be_a_window_before_the_one_that_opened_it(asset):
    version = bare_champion(asset.asset_type)

    (alert,), (episode,) = assert_same(asset, version, PATTERNS["peak_inside_the_opening_run"], chunk=1)

    assert alert.peak_score == 15.0 and episode.peak == 5 and episode.opened == 6


@pytest.mark.parametrize("chunk", [1, 13])
def test_alert_episodes_match_the_lifecycle_on_a_seeded_random_walk(asset, chunk):
    rng = np.random.default_rng(0)
    walk, level = [], 6.5
    for step in rng.normal(0.0, 2.5, 260):  # mean-reverting, so it keeps crossing both thresholds
        level += 0.3 * (6.5 - level) + step
        walk.append(round(level, 2))
    version = bare_champion(asset.asset_type)

    alerts, episodes = assert_same(asset, version, walk, chunk=chunk)

    assert len(alerts) >= 3  # the walk crosses both thresholds several times


def test_alert_episodes_mirror_the_comparisons_for_a_lower_is_worse_model(asset):
    version = bare_champion(asset.asset_type, open_threshold=-10.0, clear_threshold=-5.0, direction="lower")
    scores = [-x for x in PATTERNS["held_open_by_the_hysteresis_band"]]

    alerts, episodes = assert_same(asset, version, scores, chunk=5, higher=False)

    assert len(alerts) == 1 and alerts[0].peak_score == -13.0 and alerts[0].state == "auto_closed"


def test_active_mask_marks_the_windows_from_opening_to_closing():
    episodes = alert_episodes([0, 11, 11, 11, 1, 1, 1, 1, 1, 1, 1, 11, 11, 11], OPEN, CLEAR, M, N)

    assert active_mask(14, episodes).nonzero()[0].tolist() == [3, 4, 5, 6, 7, 8, 9, 13]
