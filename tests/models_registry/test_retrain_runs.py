"""Retrain runs: the command, the task's progress records, error paths and who may start them."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from models_registry import retrain
from models_registry.models import ModelVersion, RetrainRun
from models_registry.retrain import STAGES, execute_run, feedback_events, start_retrain
from models_registry.tasks import retrain_model_task
from plant.models import Label
from tests.conftest import make_pump_type
from tests.models_registry.retrain_history import at, build_history


@pytest.fixture
def history(site, technician):
    return build_history(site, technician)


def test_the_command_retrains_and_prints_every_stage(history):
    out = StringIO()
    call_command("retrain", "--asset-type", history.asset_type.slug, "--kind", "anomaly", stdout=out)
    text = out.getvalue()
    for _key, label, _percent in STAGES:
        assert label in text
    run = RetrainRun.objects.get()
    assert run.status == "succeeded" and run.percent == 100 and run.result is not None
    assert f"registered {run.result} (candidate)" in text and "confirmed_fault" in text


def test_the_command_names_an_unknown_asset_type(db):
    with pytest.raises(CommandError, match="no asset type 'turbine'"):
        call_command("retrain", "--asset-type", "turbine", "--kind", "anomaly")


def test_the_command_refuses_a_kind_that_cannot_be_retrained(db):
    make_pump_type()
    with pytest.raises(CommandError, match="cannot retrain kind 'forecast'"):
        call_command("retrain", "--asset-type", "pump", "--kind", "forecast")
    assert not RetrainRun.objects.exists()


def test_the_command_fails_the_run_when_there_is_no_feedback(asset):
    with pytest.raises(CommandError, match="no operator feedback"):
        call_command("retrain", "--asset-type", "pump", "--kind", "anomaly")
    run = RetrainRun.objects.get()
    assert run.status == "failed" and "no operator feedback" in run.error and run.finished_at is not None


def test_the_command_rejects_a_since_that_is_not_a_date(db):
    make_pump_type()
    with pytest.raises(CommandError, match="--since 'yesterday'"):
        call_command("retrain", "--asset-type", "pump", "--kind", "anomaly", "--since", "yesterday")


def retrain_since(history, since, *args: str) -> None:
    call_command(
        "retrain", "--asset-type", history.asset_type.slug, "--kind", "anomaly", "--since", since, *args
    )


def test_the_command_refuses_a_future_since_before_recording_a_run(history):
    # It used to record the run and leave it failed.
    future = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    for enqueue in ((), ("--enqueue",)):
        with pytest.raises(CommandError, match=r"--since \d{4}-\d\d-\d\d \d\d:\d\d is in the future"):
            retrain_since(history, future.isoformat(), *enqueue)
    assert not RetrainRun.objects.exists()


def test_the_command_refuses_a_since_after_all_feedback_naming_the_last(history):
    last = max(label.end for label in Label.objects.filter(source__in=["feedback", "manual"]))
    with pytest.raises(CommandError) as error:
        retrain_since(history, at(200 * 60).isoformat())
    message = str(error.value)
    assert message.startswith("no operator feedback on ") and " since " in message
    assert f"the last ends {timezone.localtime(last):%Y-%m-%d %H:%M}; choose an earlier --since" in message
    assert not RetrainRun.objects.exists()


def test_the_form_refuses_a_since_after_all_feedback_without_recording_a_run(client, engineer, history):
    client.force_login(engineer)
    since = timezone.localtime(at(200 * 60)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/models/retrain/", {"asset_type": history.asset_type.slug, "kind": "anomaly", "since": since}
    )
    assert response.status_code == 400
    assert "choose an earlier “since”, or leave it out" in response.content.decode()
    assert not RetrainRun.objects.exists()


def test_the_command_names_the_asset_type_and_kind_in_words(history):
    out = StringIO()
    call_command(
        "retrain", "--asset-type", history.asset_type.slug, "--kind", "anomaly", "--enqueue", stdout=out
    )
    run = RetrainRun.objects.get()
    assert (
        f"queued retraining run #{run.pk} of {history.asset_type.name} / Anomaly detector" in out.getvalue()
    )


def test_a_since_after_all_feedback_fails_the_run_with_the_reason(history):
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly", since=at(200 * 60))
    finished = execute_run(run.pk)
    assert finished.status == "failed" and "no operator feedback" in finished.error


def test_the_task_records_each_stage_in_order_and_ends_at_100_percent(history, monkeypatch):
    seen: list[tuple[str, str, int]] = []
    original = retrain.retrain_from_feedback

    def spy(*args, progress, **kwargs):
        def recording(stage: str) -> None:
            progress(stage)
            row = RetrainRun.objects.values_list("status", "stage", "percent").get()
            seen.append(row)

        return original(*args, progress=recording, **kwargs)

    monkeypatch.setattr(retrain, "retrain_from_feedback", spy)
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    result_id = retrain_model_task.apply(args=[run.pk]).get()
    assert [stage for _status, stage, _ in seen] == [label for _key, label, _ in STAGES]
    assert all(status == "running" for status, _, _ in seen)
    percents = [percent for *_, percent in seen]
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] < 100
    run.refresh_from_db()
    assert run.status == "succeeded" and run.percent == 100 and run.result_id == result_id
    assert run.started_at <= run.finished_at


def test_a_redelivered_task_does_nothing_the_second_time(history):
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    assert retrain_model_task.apply(args=[run.pk]).get() is not None
    assert retrain_model_task.apply(args=[run.pk]).get() is None
    assert ModelVersion.objects.filter(status="candidate").count() == 1


def test_an_unexpected_error_fails_the_run_instead_of_leaving_it_running(history, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(retrain, "retrain_from_feedback", broken)
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    finished = execute_run(run.pk)
    assert (
        finished.status == "failed"
        and finished.error == "internal error: ZeroDivisionError: division by zero"
    )


def test_an_unreachable_task_queue_fails_the_run_with_a_clear_reason(
    asset, monkeypatch, django_capture_on_commit_callbacks
):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("redis down")

    monkeypatch.setattr(retrain_model_task, "delay", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_retrain(asset.asset_type, "anomaly")
    run.refresh_from_db()
    assert run.status == "failed" and "task queue is unreachable" in run.error


def test_verdicts_are_classed_and_missed_failures_are_positives(history, technician):
    from alerts.services import record_missed_failure

    asset = history.assets["p-102"]
    record_missed_failure(asset, technician, start=at(150 * 60), end=at(155 * 60), fault_type="seal leak")
    events = feedback_events([a.pk for a in history.assets.values()])
    sources = {event.source for event in events}
    assert {"confirmed_fault", "false_alarm", "missed_failure"} <= sources
    assert all(event.positive for event in events if event.source in ("confirmed_fault", "missed_failure"))
    assert all(
        not event.positive and event.reason == "normal_operating_change"
        for event in events
        if event.source == "false_alarm"
    )
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    finished = execute_run(run.pk)
    assert finished.report["labels"]["by_source"]["missed_failure"] == 1


def test_the_verdict_of_a_label_is_read_from_the_label_alone(history, technician):
    """Retraining reads plant.Label only (models_registry does not import alerts): the Feedback rows are
    not needed to tell a missed failure or a not-actionable verdict from a confirmed fault."""
    from alerts.models import Feedback
    from alerts.services import record_missed_failure

    asset = history.assets["p-102"]
    record_missed_failure(asset, technician, start=at(150 * 60), end=at(155 * 60), fault_type="seal leak")
    label = history.assets["p-101"].labels.filter(kind="fault").first()
    label.verdict = "not_actionable"
    label.save()
    ids = [a.pk for a in history.assets.values()]
    before = [(event.label_id, event.source) for event in feedback_events(ids)]
    Feedback.objects.all().delete()
    after = [(event.label_id, event.source) for event in feedback_events(ids)]
    assert after == before
    assert {source for _, source in after} >= {"missed_failure", "not_actionable", "confirmed_fault"}


# --- the pages --------------------------------------------------------------------------------------------


def test_engineers_see_the_models_page_with_the_retrain_form(client, engineer, asset):
    client.force_login(engineer)
    response = client.get("/models/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="retrain-form"' in html and 'href="/models/"' in html  # and the nav link


def test_the_registry_pages_say_their_times_are_the_servers_utc(client, engineer, asset, settings):
    # QA (demo): "Requested by engineer at 2026-12-06 13:40:43" and the runs' and versions' times read in UTC
    # with no zone, beside pages of an America/Chicago plant and the compare page's "… 13:41 UTC".
    settings.TIME_ZONE = "UTC"
    run = RetrainRun.objects.create(asset_type=asset.asset_type, kind="anomaly", requested_by=engineer)
    client.force_login(engineer)
    when = f"{run.created_at:%Y-%m-%d %H:%M}"
    assert f'#{run.pk}</a> <small class="muted">{when} UTC</small>' in client.get("/models/").content.decode()
    page = client.get(f"/models/retrain/{run.pk}/").content.decode()
    assert f"Requested by {engineer.username} at {run.created_at:%Y-%m-%d %H:%M:%S} UTC" in page


@pytest.mark.parametrize("who", ["technician", "outsider"])
def test_technicians_get_403_on_every_registry_page(client, who, request, asset):
    client.force_login(request.getfixturevalue(who))
    run = RetrainRun.objects.create(asset_type=asset.asset_type, kind="anomaly")
    assert client.get("/models/").status_code == 403
    assert client.post("/models/retrain/", {"asset_type": "pump", "kind": "anomaly"}).status_code == 403
    assert client.get(f"/models/retrain/{run.pk}/").status_code == 403
    assert not RetrainRun.objects.exclude(pk=run.pk).exists()
    assert 'href="/models/"' not in client.get("/alerts/").content.decode()


def test_anonymous_users_are_sent_to_the_login_page(client, db):
    response = client.get("/models/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"asset_type": "turbine", "kind": "anomaly"}, "Unknown asset type"),
        ({"asset_type": "pump", "kind": "forecast"}, "Select a valid choice"),
        ({"asset_type": "pump", "kind": "anomaly", "since": "2030-01-01T00:00"}, "in the future"),
        # years the form refuses before the run's time conversions overflow (a 500 found by
        # tests/test_hostile_sweep_extremes.py)
        ({"asset_type": "pump", "kind": "anomaly", "since": "2999-01-01T00:00"}, "out of range"),
        ({"asset_type": "pump", "kind": "anomaly", "since": "0001-01-01T00:00:00+14:00"}, "out of range"),
        ({"asset_type": "pump", "kind": "anomaly", "since": "9999-12-31T23:59:59-14:00"}, "out of range"),
    ],
)
def test_a_bad_retrain_request_comes_back_with_the_problem(client, engineer, asset, data, message):
    client.force_login(engineer)
    response = client.post("/models/retrain/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RetrainRun.objects.exists()


def test_an_unknown_run_is_404(client, engineer):
    client.force_login(engineer)
    assert client.get("/models/retrain/999/").status_code == 404


def test_a_failed_run_shows_its_reason_on_the_page(client, engineer, asset):
    asset.asset_type.name = "Centrifugal pump"
    asset.asset_type.save()
    run = RetrainRun.objects.create(asset_type=asset.asset_type, kind="anomaly")
    execute_run(run.pk)
    client.force_login(engineer)
    html = client.get(f"/models/retrain/{run.pk}/").content.decode()
    assert 'id="retrain-error"' in html and "no operator feedback on Centrifugal pump assets" in html
    # What to do in the product, in its words: no slug, no command.
    assert "on the Alerts board" in html and "Plant › Labels" in html
    assert "&#x27;pump&#x27;" not in html and "train_model" not in html


def test_feedback_labels_carry_their_verdict_and_old_rows_get_it_from_their_note(history, technician):
    """Feedback writes the verdict on the label; labels written before the field existed get it once, by the
    migration, from the note feedback wrote then."""
    from importlib import import_module

    from django.apps import apps as django_apps

    from alerts.services import record_missed_failure

    asset = history.assets["p-102"]
    missed = record_missed_failure(
        asset, technician, start=at(150 * 60), end=at(155 * 60), fault_type="seal leak"
    ).label
    assert missed.verdict == "missed_failure"
    old = {
        "missed failure: seal": ("fault", "missed_failure"),
        "alert #3: not actionable: known": ("fault", "not_actionable"),
        "alert #4: repaired: not actionable was wrong": ("fault", "confirmed_fault"),
        "alert #5: ": ("normal", "false_alarm"),
    }
    labels = [
        Label.objects.create(
            asset=asset, start=at(10), end=at(20), kind=kind, source="feedback", note=note, verdict=""
        )
        for note, (kind, _) in old.items()
    ]
    import_module("plant.migrations.0006_label_verdict").verdicts_from_notes(django_apps, None)
    assert [Label.objects.get(pk=label.pk).verdict for label in labels] == [v for _, v in old.values()]


def test_a_failed_run_page_names_the_stage_it_stopped_in_once(client, engineer, asset):
    with pytest.raises(CommandError):
        call_command("retrain", "--asset-type", "pump", "--kind", "anomaly")
    run = RetrainRun.objects.get()
    client.force_login(engineer)
    html = client.get(f"/models/retrain/{run.pk}/").content.decode()
    first = STAGES[0][1]
    assert '<span id="retrain-stage">while collecting feedback labels</span>' in html
    assert f'<li data-state="failed">\n        ✗ {first}</li>' in html  # not ticked as done
    assert html.count("✓") == 0 and 'Failed</span>\n    <span id="retrain-stage">Failed' not in html
    assert "Failed: no operator feedback" in html
