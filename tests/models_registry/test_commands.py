"""Registry commands: promote_model, rollback_model and train_model (end to end on readings made here)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from models_registry.services import TrainingError, promote, train_and_register
from models_registry.tasks import train_model_task
from models_registry.validation import validate_version
from plant.models import Label
from tests.conftest import T0, make_asset, make_pump_type
from tests.models_registry.conftest import corrupt, make_readings, make_version


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def pump(db):
    return make_pump_type()


def test_promote_model_makes_the_version_champion_and_reports_the_checks(pump):
    make_version(pump)
    output = run("promote_model", "pump-anomaly", "1", "--reason", "first model")
    assert "pump-anomaly v1 is now champion for Pump / Anomaly detector" in output  # not "pump / anomaly"
    assert "checksum, load, signature, reference_batch, latency" in output
    version = ModelVersion.objects.get(name="pump-anomaly", version=1)
    assert version.status == ModelStatus.CHAMPION
    assert version.history.first().reason == "first model"


def test_promote_model_with_shadow_runs_it_in_shadow(pump):
    make_version(pump)
    assert "is now shadow" in run("promote_model", "pump-anomaly", "v1", "--shadow")
    assert ModelVersion.objects.get().status == ModelStatus.SHADOW


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ghost", "1"), "no model named 'ghost'"),
        (("pump-anomaly", "7"), "'pump-anomaly' has no version 7 (versions: 1, 2)"),
        (("pump-anomaly", "latest"), "version 'latest' is not a number"),
    ],
)
def test_promote_model_names_an_unknown_model_or_version(pump, args, message):
    make_version(pump)
    make_version(pump)
    with pytest.raises(CommandError) as error:
        call_command("promote_model", *args)
    assert message in str(error.value)


def test_promote_model_refuses_a_corrupted_artifact_naming_the_check_and_keeps_the_champion(pump):
    champion, candidate = make_version(pump), make_version(pump)
    promote(champion)
    corrupt(candidate)
    with pytest.raises(
        CommandError, match=r"pump-anomaly v2 refused: checksum check failed: the stored file's sha256"
    ):
        call_command("promote_model", "pump-anomaly", "2")
    assert ModelVersion.objects.get(pk=champion.pk).status == ModelStatus.CHAMPION
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelStatus.CANDIDATE


def test_rollback_model_brings_back_the_previous_champion(pump):
    first, second = make_version(pump), make_version(pump)
    promote(first)
    promote(second)
    output = run("rollback_model", "pump", "anomaly", "--reason", "false alarms")
    assert (
        "rolled back Pump / Anomaly detector: pump-anomaly v2 retired, pump-anomaly v1 is champion" in output
    )
    assert ModelVersion.objects.get(pk=first.pk).status == ModelStatus.CHAMPION
    assert "false alarms" in ModelVersion.objects.get(pk=second.pk).history.first().reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("boiler", "anomaly"), "no asset type 'boiler' (known: pump)"),
        (("pump", "vibes"), "unknown kind 'vibes'"),
        (("pump", "anomaly"), "Pump / Anomaly detector has no previous champion"),
        (("pump", "failure_classifier"), "Pump / Failure classifier has no champion to roll back"),
    ],
)
def test_rollback_model_explains_why_it_cannot(pump, args, message):
    promote(make_version(pump))
    with pytest.raises(CommandError) as error:
        call_command("rollback_model", *args)
    assert message in str(error.value)


# --- training end to end -------------------------------------------------------------------------------


@pytest.fixture
def fleet(site, pump):
    """Three pumps with an hour of correlated 1 Hz readings; the third has a fault in its last 12 minutes."""
    assets = [make_asset(site, tag=f"p-10{i}", asset_type=pump) for i in range(3)]
    for i, asset in enumerate(assets):
        make_readings(asset, T0, 3600, seed=i, fault_from=2880 if i == 2 else None)
    return assets


def label_fault(asset, start_s: int, end_s: int) -> Label:
    return Label.objects.create(
        asset=asset, start=T0 + timedelta(seconds=start_s), end=T0 + timedelta(seconds=end_s), kind="fault"
    )


def test_train_model_anomaly_registers_a_candidate_that_validates_without_any_labels(fleet):
    output = run("train_model", "--asset-type", "pump", "--kind", "anomaly")
    version = ModelVersion.objects.get()
    assert f"registered {version} (candidate) for Pump / Anomaly detector" in output
    assert (version.name, version.kind, version.status) == ("pump-anomaly", "anomaly", ModelStatus.CANDIDATE)
    assert version.feature_spec[:2] == ["current__mean", "current__std"] and len(version.feature_spec) == 24
    assert version.provenance["label_counts"]["windows"] == {"fault": 0, "normal": 0, "unlabelled": 3 * 354}
    assert version.provenance["data_range"] == {
        "start": T0.isoformat(),
        "end": (T0 + timedelta(seconds=3599)).isoformat(),
    }
    assert version.provenance["assets"] == ["p-100", "p-101", "p-102"]
    assert "onnxruntime" in version.provenance["library_versions"]
    assert 0 < len(version.background) <= 100
    assert validate_version(version).passed[-1] == "latency"


def test_train_model_anomaly_learns_from_windows_away_from_fault_labels_and_scores_the_fault(fleet):
    label_fault(fleet[2], 2880, 3600)
    version = train_and_register(fleet[0].asset_type, "anomaly", name="pump-av")
    windows = version.provenance["label_counts"]["windows"]
    assert windows["fault"] == 71 and windows["normal"] == 0
    assert version.provenance["windows"]["validation"] > windows["fault"]
    # the model was told the faulty windows only for validation; they must score far above normal ones
    from detection import runtime
    from models_registry.choices import WindowLabel
    from models_registry.training_data import load_training_windows

    data = load_training_windows(fleet[0].asset_type)
    session = runtime.load_session(version.read_onnx_bytes())
    scores = runtime.run_batch(session, data.X, version.output_spec)
    fault_scores, normal_scores = (
        scores[data.labels == WindowLabel.FAULT],
        scores[data.labels != WindowLabel.FAULT],
    )
    assert np.median(fault_scores) > np.quantile(normal_scores, 0.99)
    assert (
        np.mean(fault_scores[12:] >= version.open_threshold) > 0.9
    )  # after the window fills with fault data


def test_train_model_failure_classifier_trains_on_fault_labels(fleet):
    label_fault(fleet[2], 2880, 3600)
    output = run("train_model", "--asset-type", "pump", "--kind", "failure_classifier", "--name", "pump-clf")
    version = ModelVersion.objects.get(name="pump-clf")
    assert "registered pump-clf v1 (candidate)" in output
    assert version.kind == "failure_classifier"
    assert version.provenance["label_counts"]["label_rows"] == {"fault": 1, "normal": 0}
    promote(version)
    assert ModelVersion.objects.get(pk=version.pk).status == ModelStatus.CHAMPION


PUMP_ANOMALY_FROM_8 = ("--asset-type", "pump", "--kind", "anomaly", "--start", "2026-01-05T08:00:00+00:00")


def test_train_model_restricted_to_a_range_uses_only_that_range(fleet):
    run("train_model", *PUMP_ANOMALY_FROM_8, "--end", "2026-01-05T08:30:00+00:00")
    version = ModelVersion.objects.get()
    assert version.provenance["data_range"]["end"] == "2026-01-05T08:30:00+00:00"
    assert sum(version.provenance["label_counts"]["windows"].values()) < 600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--asset-type", "boiler", "--kind", "anomaly"), "no asset type 'boiler'"),
        (("--asset-type", "pump", "--kind", "vibes"), "unknown kind 'vibes'"),
        (("--asset-type", "pump", "--kind", "rul"), "a remaining-useful-life model needs failures"),
        (
            ("--asset-type", "pump", "--kind", "failure_classifier"),
            "no fault labels on assets of type 'pump'",
        ),
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--start", "2027-01-01"),
            "no readings for assets of type 'pump'",
        ),
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--start", "soon"),
            "--start 'soon' is not an ISO date",
        ),
        ((*PUMP_ANOMALY_FROM_8, "--end", "2026-01-05T08:02:00+00:00"), "complete feature windows"),
    ],
    ids=["unknown-type", "unknown-kind", "rul", "no-fault-labels", "no-data", "bad-date", "too-few-windows"],
)
def test_train_model_explains_why_it_cannot_train(fleet, args, message):
    with pytest.raises(CommandError) as error:
        call_command("train_model", *args)
    assert message in str(error.value)
    assert not ModelVersion.objects.exists()


def test_train_model_on_an_asset_type_without_assets_says_so(pump):
    with pytest.raises(CommandError, match="has no active assets"):
        call_command("train_model", "--asset-type", "pump", "--kind", "anomaly")


def test_the_training_task_trains_by_id_and_returns_none_when_the_type_is_gone(fleet, engineer):
    version_id = train_model_task.apply(
        args=[fleet[0].asset_type_id, "anomaly"], kwargs={"actor_id": engineer.pk}
    ).get()
    version = ModelVersion.objects.get(pk=version_id)
    assert version.created_by == engineer and version.status == ModelStatus.CANDIDATE
    assert train_model_task.apply(args=[999_999, "anomaly"]).get() is None
    assert train_model_task.apply(args=[fleet[0].asset_type_id, "failure_classifier"]).get() is None


def test_train_and_register_refuses_an_empty_range(fleet):
    with pytest.raises(TrainingError, match="start must be before end"):
        train_and_register(fleet[0].asset_type, "anomaly", start=T0, end=T0)


def test_training_is_routed_to_the_default_queue_by_the_settings():
    from config.celery import app

    assert getattr(train_model_task, "queue", None) is None  # the route lives in settings, not the task
    assert app.conf.task_routes[train_model_task.name] == {"queue": "default"}
    route = app.amqp.router.route({}, train_model_task.name, args=(1, "anomaly"), kwargs={})
    assert route["queue"].name == "default"


# --- hostile arguments -----------------------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # With its offset the year 1 (or 9999) has no UTC equivalent: an OverflowError in the database layer.
        (
            ("retrain", "--since", "0001-01-01T00:00+14:00"),
            "--since: 0001-01-01T00:00:00+14:00 is out of range",
        ),
        (("retrain", "--since", "9999-12-31T23:59:59-12:00"), "--since: 9999-12-31T23:59:59-12:00 is out of"),
        (
            ("train_model", "--start", "1969-12-31"),
            "--start: 1969-12-31T00:00:00 is out of range: use a date from",
        ),
        (("train_model", "--end", "9000-01-01"), "--end: 9000-01-01T00:00:00 is out of range"),
    ],
)
def test_registry_commands_refuse_dates_outside_the_years_vigil_holds(pump, args, message):
    with pytest.raises(CommandError) as error:
        call_command(*args[:1], "--asset-type", "pump", "--kind", "anomaly", *args[1:])
    assert message in str(error.value)
    assert not ModelVersion.objects.exists()


def test_calibrate_baseline_refuses_a_date_outside_the_years_vigil_holds(site, pump):
    asset = make_asset(site, tag="p-1", asset_type=pump)
    with pytest.raises(CommandError, match=r"--start: 0001-01-01T00:00:00\+14:00 is out of range"):
        call_command(
            "calibrate_baseline",
            "--asset",
            asset.tag,
            "--start",
            "0001-01-01T00:00+14:00",
            "--end",
            "2026-01-01",
        )


def test_an_asset_or_version_given_in_digits_of_another_script_is_not_an_id(site, pump):
    asset = make_asset(site, tag="p-1", asset_type=pump)
    make_version(pump)
    # int() reads '٣' as 3: the asset or version with that number was taken instead of refusing the value.
    with pytest.raises(CommandError, match="no asset with tag or id"):
        call_command(
            "calibrate_baseline", "--asset", str(asset.pk).translate(ARABIC_INDIC),
            "--start", "2026-01-02", "--end", "2026-01-01",
        )  # fmt: skip
    with pytest.raises(CommandError, match="version '١' is not a number"):
        call_command("promote_model", "pump-anomaly", "١")
    assert ModelVersion.objects.get().status == ModelStatus.CANDIDATE


def test_export_bundle_takes_the_asset_as_site_and_tag_like_calibrate_baseline(
    site, other_site, pump, tmp_path
):
    make_asset(site, tag="p-1", asset_type=pump)
    make_asset(other_site, tag="p-1", asset_type=pump)
    make_version(pump)
    with pytest.raises(CommandError, match="exists on several sites; give SITE/TAG or the asset's id"):
        call_command("export_bundle", "pump-anomaly", "1", "--asset", "p-1")
    path = tmp_path / "bundle.zip"
    run("export_bundle", "pump-anomaly", "1", "--asset", f"{site.slug}/p-1", "--output", str(path))
    assert path.stat().st_size > 0


def test_export_bundle_refuses_an_empty_output_instead_of_writing_the_default_file(
    site, pump, tmp_path, monkeypatch
):
    make_asset(site, tag="p-1", asset_type=pump)
    make_version(pump)
    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(CommandError, match="--output is empty: name the zip file to write"):
            call_command("export_bundle", "pump-anomaly", "1", "--asset", "p-1", "--output", empty)
    assert list(tmp_path.glob("*.zip")) == []


def test_calibrate_baseline_refuses_a_period_with_more_windows_than_it_may_build(site, pump):
    asset = make_asset(site, tag="p-1", asset_type=pump)
    with pytest.raises(CommandError, match=r"holds about [\d,]+ windows of .* more than the 5,000,000"):
        call_command("calibrate_baseline", "--asset", "p-1", "--start", "1971-01-01", "--end", "2026-01-01")
    assert not asset.baselines.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("n" * 81, "Ensure this value has at most 80 characters (it has 81)"),  # was SuspiciousFileOperation
        ("../../escape", "Enter a valid “slug”"),  # the name is the artifact's folder
        ("   ", "Enter a valid “slug”"),
        ("pump\tmodel", "Enter a valid “slug”"),
    ],
)
@pytest.mark.parametrize("enqueue", [False, True])
def test_train_model_refuses_a_name_that_is_not_a_model_name(fleet, name, message, enqueue):
    with pytest.raises(CommandError) as error:
        call_command(
            "train_model", "--asset-type", "pump", "--kind", "anomaly", "--name", name,
            *(["--enqueue"] if enqueue else []),
        )  # fmt: skip
    assert f"model name {name!r}: {message}" in str(error.value)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_evaluate_refuses_an_out_folder_it_cannot_write_before_it_evaluates(tmp_path, monkeypatch, where):
    from models_registry.evaluation import evaluation_module

    def must_not_run(options, progress):
        raise AssertionError("the evaluation ran although its report could not be written")

    # It evaluated for minutes, then died with FileExistsError / NotADirectoryError and lost the result.
    monkeypatch.setattr(evaluation_module("simfleet"), "run", must_not_run)
    blocker = tmp_path / "report"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "inside"
    expected = f"{blocker} is a file, not a folder" if where == "file" else f"cannot create the folder {out}"
    with pytest.raises(CommandError, match=f"--out: {expected}"):
        call_command("evaluate", "--out", str(out), "simfleet", stdout=io.StringIO())


def test_train_model_enqueue_names_the_asset_type_and_kind_in_words(pump):
    # It printed the raw codes, "pump / failure_classifier" (models_registry.services.type_and_kind).
    output = run("train_model", "--asset-type", "pump", "--kind", "failure_classifier", "--enqueue")
    assert "queued training of Pump / Failure classifier" in output
