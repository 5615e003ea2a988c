"""Explanations: attached before the broadcast and faithful; when explaining fails, a task completes it."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from alerts import broadcast
from alerts.broadcast import broadcast_alerts
from alerts.choices import AlertCategory, AlertState, ExplanationStatus
from alerts.models import Alert, Score
from alerts.services import ExplanationUnavailable, lifecycle
from detection.explain import dominant_roles
from alerts.tasks import complete_explanation_task, sweep_pending_explanations_task
from detection.runtime import ModelRuntimeError
from models_registry import cache
from alerts.writeback import alert_words
from plant.choices import QualityFlag
from tests.alerts.conftest import OPEN, fault_x, score, synthetic_series, window_end, windows
from tests.conftest import make_readings

TOLERANCE = 1e-4


def phi_sum(explanation: dict) -> float:
    return sum(f["phi"] for f in explanation["features"])


def test_the_opening_window_explanation_is_faithful_to_the_onnx_model(asset, champion, trained):
    x = fault_x(trained)
    sensors = dict(asset.sensors.values_list("role__key", "key"))
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x), sensors=sensors)
    explanation = Alert.objects.get().explanation
    model_output = float(cache.loaded(champion).score(x[None, :])[0])
    assert explanation["output"] == pytest.approx(model_output, rel=1e-5)
    assert explanation["additivity_error"] <= TOLERANCE
    assert abs(phi_sum(explanation) + explanation["base_value"] - explanation["output"]) <= TOLERANCE
    assert explanation["window_end"] == window_end(2).isoformat()
    vibration = next(f for f in explanation["features"] if f["name"] == "vibration__mean")
    assert vibration["sensor"] == "north.p-101.vibration"


def test_the_explanation_is_attached_before_the_alert_is_broadcast(
    asset, champion, trained, monkeypatch, django_capture_on_commit_callbacks
):
    seen = []
    monkeypatch.setattr(
        broadcast,
        "_send",
        lambda site_id, ids: seen.extend(
            Alert.objects.filter(pk__in=ids).values_list("explanation_status", flat=True)
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        broadcast_alerts(score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained))))
    assert seen == [ExplanationStatus.READY]


def test_the_peak_is_explained_again_only_when_it_moves_more_than_ten_percent(asset, champion, trained):
    x = fault_x(trained)
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x))
    score(asset, champion, windows(3, [(OPEN + 1) * 1.05], x=fault_x(trained, offset=45)))
    assert Alert.objects.get().peak_explanation is None
    score(asset, champion, windows(4, [(OPEN + 1) * 1.5, (OPEN + 1) * 1.2], x=fault_x(trained, offset=80)))
    alert = Alert.objects.get()
    assert alert.peak_window_end == window_end(4)
    assert alert.peak_explanation["window_end"] == window_end(4).isoformat()
    assert alert.peak_explanation["additivity_error"] <= TOLERANCE


@pytest.fixture
def failing_explainer(monkeypatch):
    def broken(version):
        raise ModelRuntimeError("artifact unreadable")

    monkeypatch.setattr(cache, "loaded", broken)
    return monkeypatch


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(complete_explanation_task, "delay", lambda alert_id: calls.append(alert_id))
    return calls


def test_a_failing_explainer_still_opens_the_alert_as_pending_and_enqueues_a_task(
    asset, champion, trained, failing_explainer, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ids = score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    alert = Alert.objects.get()
    assert ids == [alert.pk] and alert.state == AlertState.OPEN
    assert alert.explanation is None and alert.explanation_status == ExplanationStatus.PENDING
    assert enqueued == [alert.pk]


def test_a_broker_outage_while_enqueueing_never_breaks_scoring(
    asset, champion, failing_explainer, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def down(alert_id):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(complete_explanation_task, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, champion, windows(0, [OPEN + 1] * 3, x=None))
    assert Alert.objects.get().explanation_status == ExplanationStatus.PENDING
    assert "could not enqueue the explanation" in caplog.text


def store_window_readings(asset, end, *, vibration_offset: float = 0.0, seconds: int = 120) -> None:
    """1 Hz readings for every sensor over `seconds` before `end` (inclusive), vibration shifted."""
    series = synthetic_series(seconds + 1, seed=3)
    start = end - timedelta(seconds=seconds)
    for sensor in asset.sensors.select_related("role"):
        values = series[sensor.role.key][1] + (vibration_offset if sensor.role.key == "vibration" else 0.0)
        make_readings(sensor, start, values)


def test_the_title_and_the_first_line_of_the_words_name_the_same_sensor(
    asset, champion, trained, monkeypatch
):
    # The demo's alert read "Discharge pressure alert" above a first line about vibration: pressure's
    # features pushed hard both ways (a large summed |φ|, net +0.4), vibration's pushed +2.
    pushed = {"pressure__std": 5.0, "pressure__mean": -4.6, "vibration__std": 2.0}
    real = lifecycle.explain

    def explained(*args, **kwargs):
        result = real(*args, **kwargs)
        for feature in result["features"]:
            feature["phi"] = pushed.get(feature["name"], 0.0)
        return result

    monkeypatch.setattr(lifecycle, "explain", explained)
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    alert = Alert.objects.get()
    assert alert.dominant_role == "vibration"
    words = alert_words(alert)
    assert words["category_label"] == words["top_sensor"] == alert.why[0].sensor
    assert alert.why[0].role == "vibration"


def test_the_task_completes_a_pending_explanation_from_the_readings(
    asset, champion, failing_explainer, enqueued, django_capture_on_commit_callbacks
):
    flagged = {"temperature": int(QualityFlag.STUCK)}
    score(asset, champion, windows(10, [OPEN + 1] * 3, x=None, flagged=flagged))
    alert = Alert.objects.get()
    assert alert.category == AlertCategory.SENSOR_FAULT  # provisional: a flagged sensor, no explanation yet
    store_window_readings(asset, alert.opened_at, vibration_offset=40.0)
    failing_explainer.undo()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert complete_explanation_task(alert.pk) == ExplanationStatus.READY
    alert.refresh_from_db()
    assert alert.explanation_status == ExplanationStatus.READY
    assert alert.explanation["window_end"] == alert.opened_at.isoformat()
    assert alert.explanation["additivity_error"] <= TOLERANCE
    x = np.array([f["value"] for f in alert.explanation["features"]], dtype=np.float32)
    assert alert.explanation["output"] == pytest.approx(float(cache.loaded(champion).score(x[None, :])[0]))
    assert dominant_roles(alert.explanation) == ["vibration"]
    assert alert.category == AlertCategory.MACHINE_FAULT  # temperature turned out not to matter
    event = alert.events.last()
    assert event.from_state == event.to_state == AlertState.OPEN and "category" in event.reason
    assert len(callbacks) == 1  # the completed alert is broadcast again

    assert complete_explanation_task(alert.pk) is None  # idempotent
    assert alert.events.count() == 2


def test_the_task_completes_before_the_scorers_rows_are_visible_with_the_artifacts_own_score(
    asset, champion, failing_explainer, enqueued
):
    """The task can run before the scorer's Score row of the opening window is visible (seen in the demo on
    SQLite): the explanation's score is then the artifact's score of that input, never NaN, which made the
    JSON invalid (SQLite's JSON_VALID check, PostgreSQL's jsonb: an IntegrityError, a retry)."""
    score(asset, champion, windows(10, [OPEN + 1] * 3, x=None))
    alert = Alert.objects.get()
    store_window_readings(asset, alert.opened_at, vibration_offset=40.0)
    failing_explainer.undo()
    Score.objects.filter(window_end=alert.opened_at).delete()

    assert complete_explanation_task(alert.pk) == ExplanationStatus.READY
    alert.refresh_from_db()
    assert alert.explanation["score"] == alert.explanation["output"]
    assert np.isfinite(alert.explanation["score"])


def test_the_task_retries_while_the_window_cannot_be_rebuilt(asset, champion, failing_explainer, enqueued):
    score(asset, champion, windows(10, [OPEN + 1] * 3, x=None))
    alert = Alert.objects.get()
    with pytest.raises(ExplanationUnavailable):
        complete_explanation_task(alert.pk)
    assert Alert.objects.get().explanation_status == ExplanationStatus.PENDING


def test_the_task_marks_the_explanation_failed_after_the_last_retry(
    asset, champion, failing_explainer, enqueued
):
    score(asset, champion, windows(10, [OPEN + 1] * 3, x=None))
    alert = Alert.objects.get()
    result = complete_explanation_task.apply(args=(alert.pk,), retries=complete_explanation_task.max_retries)
    assert result.get() == "failed"
    assert Alert.objects.get().explanation_status == ExplanationStatus.FAILED


def test_the_task_does_nothing_for_a_deleted_alert(db):
    assert complete_explanation_task(123456) is None


def test_the_task_uses_the_flags_the_scorer_stored(
    asset, champion, failing_explainer, enqueued, django_capture_on_commit_callbacks
):
    flagged = {"vibration": int(QualityFlag.STUCK)}
    score(asset, champion, windows(10, [OPEN + 1] * 3, x=None, flagged=flagged))
    alert = Alert.objects.get()
    assert Score.objects.get(window_end=alert.opened_at).flagged == flagged
    store_window_readings(asset, alert.opened_at, vibration_offset=40.0)
    failing_explainer.undo()
    complete_explanation_task(alert.pk)
    alert.refresh_from_db()
    assert alert.category == AlertCategory.SENSOR_FAULT
    assert alert.events.count() == 1  # unchanged category: no event


def test_the_task_is_routed_to_the_explain_queue():
    from config.celery import app

    route = app.amqp.router.route({}, complete_explanation_task.name, args=(1,), kwargs={})
    assert route["queue"].name == "explain"


def test_the_sweep_requeues_only_explanations_pending_longer_than_the_setting(
    asset, champion, trained, failing_explainer, enqueued, settings
):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    stale = Alert.objects.get()
    assert stale.explanation_status == ExplanationStatus.PENDING
    settings.VIGIL_EXPLANATION_SWEEP_AFTER_S = 300.0
    assert sweep_pending_explanations_task() == 0 and enqueued == []  # just opened: its own task may run

    Alert.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=6))
    assert sweep_pending_explanations_task() == 1
    assert enqueued == [stale.pk]

    Alert.objects.filter(pk=stale.pk).update(explanation_status=ExplanationStatus.READY)
    assert sweep_pending_explanations_task() == 0 and enqueued == [stale.pk]  # done: left alone
