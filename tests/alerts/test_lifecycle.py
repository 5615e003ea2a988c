"""Hysteresis, grouping, auto-close, severity and the events every state change writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.choices import AlertState, Severity
from alerts.models import Alert, AlertEvent, AlertStateError
from alerts.services import apply_scores, severity_for
from models_registry.services import retire
from tests.alerts.conftest import CLEAR, OPEN, fault_x, score, window_end, windows


@pytest.fixture
def x(trained):
    return fault_x(trained)


def test_m_minus_one_windows_above_open_do_not_open_an_alert(asset, champion, x):
    assert score(asset, champion, windows(0, [OPEN + 1, OPEN + 2], x=x)) == []
    score(asset, champion, windows(2, [OPEN - 1, OPEN + 1, OPEN + 1], x=x))
    assert not Alert.objects.exists()


def test_m_consecutive_windows_above_open_open_exactly_one_alert(asset, champion, x):
    ids = score(asset, champion, windows(0, [OPEN + 1, OPEN + 5, OPEN + 2], x=x))
    alert = Alert.objects.get()
    assert ids == [alert.pk]
    assert alert.state == AlertState.OPEN and not alert.is_shadow
    assert alert.kind == champion.kind and alert.model_version == champion
    assert alert.opened_at == window_end(2)
    assert alert.first_window_start == window_end(0) - timedelta(seconds=asset.asset_type.window_s)
    assert alert.peak_score == OPEN + 5 and alert.peak_window_end == window_end(1)
    assert alert.window_count == 3
    event = alert.events.get()
    assert (event.from_state, event.to_state, event.actor) == ("", AlertState.OPEN, None)


def test_windows_scored_in_separate_calls_count_as_consecutive(asset, champion, x):
    for k in range(2):
        assert score(asset, champion, windows(k, [OPEN + 1], x=x)) == []
    assert len(score(asset, champion, windows(2, [OPEN + 1], x=x))) == 1
    assert Alert.objects.count() == 1


def test_an_empty_batch_changes_nothing(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    before = list(Alert.objects.values())
    assert apply_scores(asset, champion, []) == []
    assert list(Alert.objects.values()) == before
    assert AlertEvent.objects.count() == 1


def test_further_anomalous_windows_update_the_alert_instead_of_opening_another(asset, champion, x):
    first = score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    again = score(asset, champion, windows(3, [OPEN + 2, OPEN + 30, OPEN + 3], x=x))
    alert = Alert.objects.get()
    assert again == first
    assert alert.window_count == 6
    assert alert.peak_score == OPEN + 30 and alert.peak_window_end == window_end(4)
    assert alert.last_seen_at == window_end(5)
    assert alert.events.count() == 1  # updates are not state changes


def test_dips_between_clear_and_open_keep_the_alert_open(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, champion, windows(3, [(OPEN + CLEAR) / 2] * 20, x=x))
    alert = Alert.objects.get()
    assert alert.state == AlertState.OPEN
    assert alert.window_count == 3 and alert.last_seen_at == window_end(2)


def test_fewer_than_n_windows_below_clear_keep_it_open(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, champion, windows(3, [CLEAR - 1] * 5 + [CLEAR + 1] + [CLEAR - 1] * 5, x=x))
    assert Alert.objects.get().state == AlertState.OPEN


def test_n_windows_below_clear_auto_close_it_with_a_system_event(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    ids = score(asset, champion, windows(3, [CLEAR - 1] * 6, x=x))
    alert = Alert.objects.get()
    assert ids == [alert.pk]
    assert alert.state == AlertState.AUTO_CLOSED and alert.closed_at is not None
    event = alert.events.last()
    assert (event.from_state, event.to_state, event.actor) == (AlertState.OPEN, AlertState.AUTO_CLOSED, None)
    assert event.reason == "condition cleared for 6 windows"


def test_a_new_alert_can_follow_an_auto_closed_one(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3 + [CLEAR - 1] * 6 + [OPEN + 1] * 3, x=x))
    states = list(Alert.objects.order_by("opened_at").values_list("state", flat=True))
    assert states == [AlertState.AUTO_CLOSED, AlertState.OPEN]


def test_windows_of_a_resolved_alert_do_not_open_a_new_one(asset, champion, engineer, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    Alert.objects.get().transition(AlertState.RESOLVED, actor=engineer, reason="replaced the bearing")
    assert score(asset, champion, windows(3, [OPEN + 1] * 2, x=x)) == []
    assert Alert.objects.count() == 1
    score(asset, champion, windows(5, [OPEN + 1], x=x))
    assert Alert.objects.filter(state=AlertState.OPEN).count() == 1


def test_the_database_refuses_a_second_active_alert_for_the_same_asset_and_kind(asset, champion, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    alert = Alert.objects.get()
    alert.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        alert.save()


def test_candidate_and_retired_versions_raise_nothing(asset, champion, trained, x):
    from tests.alerts.conftest import register

    candidate = register(trained, asset.asset_type)
    assert score(asset, candidate, windows(0, [OPEN + 1] * 3, x=x)) == []
    retire(champion, reason="test")
    champion.refresh_from_db()
    assert score(asset, champion, windows(0, [OPEN + 1] * 3, x=x)) == []
    assert not Alert.objects.exists()


def test_lower_is_worse_scores_mirror_every_comparison(asset, champion, x):
    from models_registry.models import ModelVersion

    ModelVersion.objects.filter(pk=champion.pk).update(
        output_spec={**champion.output_spec, "direction": "lower_is_anomalous"},
        open_threshold=-OPEN,
        clear_threshold=-CLEAR,
    )
    champion.refresh_from_db()
    score(asset, champion, windows(0, [-OPEN - 1, -OPEN - 9, -OPEN - 2], x=x))
    alert = Alert.objects.get()
    assert alert.peak_score == -OPEN - 9
    score(asset, champion, windows(3, [-CLEAR + 1] * 6, x=x))
    alert.refresh_from_db()
    assert alert.state == AlertState.AUTO_CLOSED


@pytest.mark.parametrize(
    ("peak", "criticality", "expected"),
    [
        (OPEN + 1, "medium", Severity.LOW),
        (OPEN + 5 * (OPEN - CLEAR), "medium", Severity.MEDIUM),
        (OPEN + 20 * (OPEN - CLEAR), "medium", Severity.HIGH),
        (OPEN + 20 * (OPEN - CLEAR), "high", Severity.CRITICAL),
        (OPEN + 20 * (OPEN - CLEAR), "low", Severity.MEDIUM),
        (OPEN + 1, "high", Severity.MEDIUM),
        (OPEN + 1, "low", Severity.LOW),
    ],
)
def test_severity_grows_with_the_peak_and_the_asset_criticality(peak, criticality, expected):
    assert severity_for(peak, OPEN, CLEAR, criticality) == expected


def test_severity_rises_when_the_peak_grows_on_a_critical_asset(asset, champion, x):
    asset.criticality = "high"
    asset.save()
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    assert Alert.objects.get().severity == Severity.MEDIUM
    score(asset, champion, windows(3, [OPEN + 50 * (OPEN - CLEAR)], x=x))
    assert Alert.objects.get().severity == Severity.CRITICAL


def test_human_moves_write_events_with_the_actor(asset, champion, technician, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    alert = Alert.objects.get()
    alert.transition(AlertState.ACKNOWLEDGED, actor=technician)
    until = timezone.now() + timedelta(hours=1)
    alert.transition(AlertState.SNOOZED, actor=technician, snoozed_until=until, snooze_reason="waiting")
    alert.transition(AlertState.RESOLVED, actor=technician, reason="fixed")
    events = list(alert.events.values_list("from_state", "to_state", "actor__username"))
    assert events == [
        ("", "open", None),
        ("open", "acknowledged", "tess"),
        ("acknowledged", "snoozed", "tess"),
        ("snoozed", "resolved", "tess"),
    ]
    with pytest.raises(AlertStateError, match="resolved"):
        alert.transition(AlertState.ACKNOWLEDGED, actor=technician)


def test_a_stale_copy_cannot_change_the_state_twice(asset, champion, technician, x):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    first, stale = Alert.objects.get(), Alert.objects.get()
    first.transition(AlertState.ACKNOWLEDGED, actor=technician)
    with pytest.raises(AlertStateError, match="concurrently"):
        stale.transition(AlertState.RESOLVED, actor=technician)
    assert AlertEvent.objects.count() == 2


def test_a_healthy_batch_without_an_active_alert_costs_one_query(
    asset, champion, x, django_assert_max_num_queries
):
    batch = windows(0, [CLEAR - 1, OPEN - 1, CLEAR], x=x)
    score(asset, champion, [])  # warm the content types / caches out of the count
    with django_assert_max_num_queries(3):  # savepoint, the active-alert look-up, release
        assert apply_scores(asset, champion, batch) == []


def test_the_database_refuses_a_second_active_shadow_alert_for_one_version(
    asset, champion, shadow_version, x
):
    score(asset, shadow_version, windows(0, [OPEN + 1] * 3, x=x))
    alert = Alert.objects.get()
    alert.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        alert.save()


def test_engineers_see_alerts_and_can_plan_maintenance_in_the_admin(client, asset, champion, engineer, x):
    from alerts.models import MaintenanceWindow
    from tests.conftest import PASSWORD

    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    client.login(username=engineer.username, password=PASSWORD)
    alert = Alert.objects.get()
    assert client.get("/admin/alerts/alert/").status_code == 200
    assert client.get(f"/admin/alerts/alert/{alert.pk}/change/").status_code == 200
    response = client.post(
        "/admin/alerts/maintenancewindow/add/",
        {
            "asset": asset.pk,
            "start_0": "2026-01-05",
            "start_1": "09:00:00",
            "end_0": "2026-01-05",
            "end_1": "11:00:00",
            "reason": "seal change",
        },
    )
    assert response.status_code == 302
    assert MaintenanceWindow.objects.get().created_by == engineer


def test_a_window_that_loses_the_race_to_open_updates_the_other_workers_alert(
    asset, champion, x, monkeypatch
):
    from alerts.services import lifecycle

    score(asset, champion, windows(0, [OPEN + 50, OPEN + 1, OPEN + 1, OPEN + 1], x=x))
    real, calls = lifecycle._active_alert, []

    def late(ctx):  # this worker loaded its state before the other worker's alert was committed
        calls.append(ctx)
        return None if len(calls) == 1 else real(ctx)

    monkeypatch.setattr(lifecycle, "_active_alert", late)
    ids = score(asset, champion, windows(4, [OPEN + 1, OPEN + 2, OPEN + 40, OPEN + 3], x=x))

    alert = Alert.objects.get()
    assert ids == [alert.pk] and len(calls) == 2
    # The window that tried to open is lost; the three after it update the other worker's alert, from
    # that alert's own count and peak.
    assert alert.window_count == 4 + 3 and alert.last_seen_at == window_end(7)
    assert alert.peak_score == OPEN + 50 and alert.peak_window_end == window_end(0)


def test_the_lifecycle_decides_with_the_detection_rule_engine(asset, champion, x, monkeypatch):
    from detection import rules

    real, seen = rules.step, []

    def spy(state, feed, params):
        seen.append([w.key for w in feed])
        return real(state, feed, params)

    monkeypatch.setattr(rules, "step", spy)
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))

    assert seen == [[window_end(k) for k in range(3)]] and Alert.objects.count() == 1


def test_a_long_window_clears_only_after_a_window_of_fresh_readings(asset, champion, x):
    """Windows of 12 steps share readings with the 11 after them: N = 6 windows below the clear threshold
    still hold the anomalous readings, so the alert stays open until 12 are (detection.rules.overlap)."""
    from plant.models import AssetType

    step = float(asset.asset_type.step_s)
    AssetType.objects.filter(pk=asset.asset_type_id).update(window_s=12 * step)
    champion.asset_type.refresh_from_db()
    asset.asset_type.refresh_from_db()

    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, champion, windows(3, [CLEAR - 1] * 6, x=x))
    assert Alert.objects.get().state == AlertState.OPEN
    score(asset, champion, windows(9, [CLEAR - 1] * 5, x=x))
    assert Alert.objects.get().state == AlertState.OPEN  # 11 below
    score(asset, champion, windows(14, [CLEAR - 1], x=x))
    alert = Alert.objects.get()
    assert alert.state == AlertState.AUTO_CLOSED
    assert alert.events.last().reason == "condition cleared for 12 windows"
