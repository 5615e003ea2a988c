"""Done-when for retraining from feedback: on a simulated plant's labelled history, the retrained candidate
raises fewer false alarms than the champion at equal or better recall, and the comparison page shows it."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion, RetrainRun
from models_registry.retrain import execute_run
from tests.models_registry.retrain_history import build_history


@pytest.fixture
def history(site, technician):
    return build_history(site, technician)


def cell(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">\s*([^<]*?)\s*<', html)
    assert match, f"no #{element_id} on the page"
    return match.group(1)


def test_the_history_has_confirmed_faults_and_dismissed_benign_alerts(history):
    assert history.verdicts.get("confirm:repaired", 0) >= 3
    assert history.verdicts.get("false_alarm:normal_operating_change", 0) >= 4


def test_a_retrain_from_feedback_has_fewer_false_alarms_than_the_champion_at_equal_or_better_recall(
    client, engineer, history, django_capture_on_commit_callbacks
):
    client.force_login(engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/models/retrain/", {"asset_type": history.asset_type.slug, "kind": "anomaly", "since": ""}
        )
    run = RetrainRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/retrain/{run.pk}/"
    assert len(callbacks) == 1  # the task is enqueued after commit
    assert execute_run(run.pk).status == "succeeded"  # what the worker does

    run.refresh_from_db()
    candidate = run.result
    assert candidate.status == ModelStatus.CANDIDATE and candidate.name == history.champion.name
    report = candidate.provenance["retrain_report"]
    assert report["labels"]["by_source"]["confirmed_fault"] >= 3
    assert report["labels"]["false_alarm_reasons"]["normal_operating_change"] >= 4
    assert report["holdout"]["champion"]["version"] == str(history.champion)

    start, end = history.period
    page = client.get(
        f"/models/{candidate.pk}/compare/",
        {
            "start": start.strftime("%Y-%m-%dT%H:%M"),
            "end": end.strftime("%Y-%m-%dT%H:%M"),
            "mode": "backtest",
        },
    )
    assert page.status_code == 200
    html = page.content.decode()
    champion_fa, challenger_fa = (
        int(cell(html, "champion-false-alarms")),
        int(cell(html, "challenger-false-alarms")),
    )
    champion_recall = float(cell(html, "champion-recall").split()[0])
    challenger_recall = float(cell(html, "challenger-recall").split()[0])
    assert champion_fa >= 4
    assert challenger_fa < champion_fa
    assert challenger_recall >= champion_recall
    assert challenger_recall == 1.0
    assert float(cell(html, "challenger-precision")) > float(cell(html, "champion-precision"))
    assert "Backtest, like for like" in html and "Follow-through assumption" in html
    assert "False alarm — normal operating change" in html  # a removed alert, with its verdict
    # Each side's peak against its own alert level: the two versions score on different scales.
    removed = html[html.index('id="removed-alerts"') :].split("</ul>")[0]
    assert re.search(r", peak [\d.]+× the alert level: False alarm", removed), removed
    assert not re.search(r", peak [\d.]+:", removed)


def test_the_run_page_shows_the_finished_run_with_a_link_to_the_candidate(client, engineer, history):
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly", requested_by=engineer)
    execute_run(run.pk)
    run.refresh_from_db()
    client.force_login(engineer)
    html = client.get(f"/models/retrain/{run.pk}/").content.decode()
    assert 'value="100"' in html and "every 1s" not in html  # finished: the poll stops
    assert f"/models/{run.result_id}/compare/" in html
    partial = client.get(f"/models/retrain/{run.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="retrain-progress"') and "<html" not in partial
    # The poll that sees the run end brings its training report too: the engineer watching needs no reload.
    assert 'id="training-report"' in partial and "Labels used" in partial


def test_a_failure_classifier_retrains_on_the_feedback_labels_directly(history):
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="failure_classifier")
    finished = execute_run(run.pk)
    assert finished.status == "succeeded", finished.error
    assert finished.result.kind == "failure_classifier"
    assert finished.report["labels"]["positives"] >= 3
    assert ModelVersion.objects.filter(kind="failure_classifier").count() == 1


@pytest.mark.parametrize("mode", ["per_asset", "per_asset_robust"])
def test_a_champion_on_per_asset_baselines_is_retrained_on_the_same_baselines(site, technician, mode):
    history = build_history(site, technician, slug="base-pump", baseline=mode)
    assert history.verdicts, "the baselined champion raised alerts that technicians judged"
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    finished = execute_run(run.pk)
    assert finished.status == "succeeded", finished.error
    candidate = finished.result
    assert candidate.output_spec["baseline"] == mode
    assert candidate.provenance["baseline"]["mode"] == mode
    assert len(candidate.provenance["baseline"]["assets"]) == len(history.assets)


def test_a_combined_champion_is_retrained_as_a_combined_detector_not_the_default_pca(site, technician):
    history = build_history(site, technician, slug="combined-pump", detector="combined")
    assert history.champion.provenance["params"]["detector"] == "combined"
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly")
    finished = execute_run(run.pk)
    assert finished.status == "succeeded", finished.error
    candidate = finished.result
    assert candidate.provenance["params"]["detector"] == "combined"
    assert candidate.output_spec.get("detector") == "combined"


def test_the_training_report_says_its_labels_and_period_in_words_not_keys(client, engineer, history):
    run = RetrainRun.objects.create(asset_type=history.asset_type, kind="anomaly", requested_by=engineer)
    execute_run(run.pk)
    run.refresh_from_db()
    client.force_login(engineer)
    for url in (f"/models/retrain/{run.pk}/", f"/models/{run.result_id}/compare/"):
        html = client.get(url).content.decode()
        report = html[html.index('id="training-report"') :].split("</dl>")[0]
        assert "<li>Confirmed fault: " in report and "<li>False alarm: " in report
        assert "<li>Normal operating change: " in report
        assert "confirmed_fault" not in report and "normal_operating_change" not in report
        start, end = (datetime.fromisoformat(run.report["data_range"][edge]) for edge in ("start", "end"))
        assert f"<dd>{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {end:%Z}</dd>" in report  # zone named
        assert "+00:00" not in report
