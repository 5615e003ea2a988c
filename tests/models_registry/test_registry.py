"""The registry: versions, the one-champion rule, validation checks, promote / shadow / roll back / retire."""

from __future__ import annotations

import os

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from onnx import TensorProto

from models_registry.choices import ModelStatus
from models_registry.models import ModelStatusChange, ModelVersion
from models_registry.services import ModelRejected, RegistryError, promote, retire, rollback, shadow
from models_registry.validation import validate_version
from tests.conftest import make_pump_type
from tests.models_registry.conftest import corrupt, linear_onnx, make_version, nan_onnx


@pytest.fixture
def pump(db):
    return make_pump_type()


def statuses(*versions: ModelVersion) -> list[str]:
    return [ModelVersion.objects.get(pk=version.pk).status for version in versions]


def test_registering_numbers_versions_per_name_and_stores_the_checksum(pump, engineer):
    first = make_version(pump, actor=engineer)
    second = make_version(pump, actor=engineer)
    other = make_version(pump, name="pump-other")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.status == ModelStatus.CANDIDATE and first.created_by == engineer
    import hashlib

    assert hashlib.sha256(first.read_onnx_bytes()).hexdigest() == first.sha256
    assert first.onnx_file.name.startswith("models/pump-anomaly/")
    assert list(first.history.values_list("from_status", "to_status")) == [("", "candidate")]


def test_the_database_refuses_a_second_champion_for_the_same_asset_type_and_kind(pump):
    first, second = make_version(pump), make_version(pump)
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelStatus.CHAMPION)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status=ModelStatus.CHAMPION)


def test_champions_of_different_kinds_or_asset_types_coexist(pump):
    fan = make_pump_type("fan")
    anomaly = make_version(pump)
    classifier = make_version(pump, name="pump-clf", kind="failure_classifier")
    fan_anomaly = make_version(fan, name="fan-anomaly")
    for version in (anomaly, classifier, fan_anomaly):
        promote(version, reason="first")
    assert statuses(anomaly, classifier, fan_anomaly) == ["champion"] * 3


def test_promote_validates_stores_latency_and_records_who_and_why(pump, engineer):
    version = make_version(pump)
    report = promote(version, actor=engineer, reason="better recall")
    version.refresh_from_db()
    assert version.status == ModelStatus.CHAMPION
    assert version.latency_ms is not None and 0 < version.latency_ms < 50
    assert version.validated_at is not None
    assert report.passed == ["checksum", "load", "signature", "reference_batch", "latency"]
    change = version.history.first()
    assert (change.from_status, change.to_status, change.actor, change.reason) == (
        "candidate",
        "champion",
        engineer,
        "better recall",
    )


def test_promote_retires_the_old_champion_in_the_same_step(pump, engineer):
    old, new = make_version(pump), make_version(pump)
    promote(old, actor=engineer, reason="first")
    promote(new, actor=engineer, reason="retrained")
    assert statuses(old, new) == ["retired", "champion"]
    retired = old.history.first()
    assert (retired.from_status, retired.to_status) == ("champion", "retired")
    assert "replaced by pump-anomaly v2" in retired.reason
    assert ModelVersion.objects.filter(asset_type=pump, kind="anomaly", status="champion").count() == 1


def test_a_failure_inside_promote_rolls_the_whole_switch_back(pump, monkeypatch):
    old, new = make_version(pump), make_version(pump)
    promote(old)
    history_before = ModelStatusChange.objects.count()
    real_create = ModelStatusChange.objects.create
    calls = []

    def failing_create(**kwargs):
        calls.append(kwargs["to_status"])
        if kwargs["to_status"] == ModelStatus.CHAMPION:
            raise RuntimeError("database went away")
        return real_create(**kwargs)

    monkeypatch.setattr(ModelStatusChange.objects, "create", failing_create)
    with pytest.raises(RuntimeError):
        promote(new)
    assert calls == ["retired", "champion"]  # the old champion had been demoted inside the transaction...
    assert statuses(old, new) == ["champion", "candidate"]  # ...and that demotion was undone with it
    assert ModelStatusChange.objects.count() == history_before


def test_promoting_the_champion_again_or_shadowing_it_is_refused(pump):
    version = make_version(pump)
    promote(version)
    with pytest.raises(RegistryError, match="already champion"):
        promote(version)
    with pytest.raises(RegistryError, match="is the champion"):
        shadow(version)


def test_shadow_is_validated_and_leaves_the_champion_alone(pump):
    champion, candidate = make_version(pump), make_version(pump)
    promote(champion)
    shadow(candidate, reason="compare for a week")
    assert statuses(champion, candidate) == ["champion", "shadow"]
    assert ModelVersion.objects.get(pk=candidate.pk).latency_ms is not None
    promote(candidate, reason="shadow looked good")
    assert statuses(champion, candidate) == ["retired", "champion"]
    assert list(candidate.history.values_list("to_status", flat=True)) == ["champion", "shadow", "candidate"]


def test_rollback_restores_the_previous_champion_and_retires_the_current_one(pump, engineer):
    first, second = make_version(pump), make_version(pump)
    promote(first, reason="first")
    promote(second, reason="second")
    restored = rollback(pump, "anomaly", actor=engineer, reason="too many false alarms")
    assert restored.pk == first.pk
    assert statuses(first, second) == ["champion", "retired"]
    last_second = second.history.first()
    assert (last_second.from_status, last_second.to_status, last_second.actor) == (
        "champion",
        "retired",
        engineer,
    )
    assert "too many false alarms" in last_second.reason
    assert first.history.first().reason.startswith("rollback from pump-anomaly v2")


def test_rollback_twice_goes_back_two_champions_never_to_the_one_rolled_back_from(pump):
    first, second, third = make_version(pump), make_version(pump), make_version(pump)
    promote(first)
    promote(second)
    promote(third)
    assert rollback(pump, "anomaly") == second
    # The champion second replaced, not third (which the first rollback retired).
    assert rollback(pump, "anomaly") == first
    assert statuses(first, second, third) == ["champion", "retired", "retired"]
    with pytest.raises(RegistryError, match=r"no previous champion .*pump-anomaly v1 was its first champion"):
        rollback(pump, "anomaly")
    assert statuses(first, second, third) == ["champion", "retired", "retired"]


def test_a_version_rolled_back_from_and_promoted_again_is_a_rollback_target_once_replaced(pump):
    first, second, third = make_version(pump), make_version(pump), make_version(pump)
    promote(first)
    promote(second)
    rollback(pump, "anomaly")
    promote(second, reason="fixed the data it was trained on")
    promote(third)
    assert rollback(pump, "anomaly") == second
    assert rollback(pump, "anomaly") == first


def test_rollback_without_a_champion_or_without_a_previous_one_says_so(pump):
    with pytest.raises(RegistryError, match="has no champion"):
        rollback(pump, "anomaly")
    only = make_version(pump)
    promote(only)
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(pump, "anomaly")
    assert statuses(only) == ["champion"]


def test_rollback_does_not_bring_back_a_version_retired_on_purpose_or_quarantined(pump):
    first, second = make_version(pump), make_version(pump)
    promote(first)
    retire(first, reason="bad model, taken out of use")
    promote(second)
    with pytest.raises(RegistryError, match="retired on purpose"):
        rollback(pump, "anomaly")
    assert statuses(first, second) == ["retired", "champion"]
    third = make_version(pump)
    promote(third)  # second is now replaced by third: a rollback target, unless it is quarantined
    ModelVersion.objects.filter(pk=second.pk).update(quarantined_at=timezone.now())
    with pytest.raises(RegistryError, match="quarantined"):
        rollback(pump, "anomaly")
    assert statuses(second, third) == ["retired", "champion"]


def test_rollback_refuses_a_damaged_previous_artifact_and_keeps_the_champion(pump):
    first, second = make_version(pump), make_version(pump)
    promote(first)
    promote(second)
    corrupt(first)
    with pytest.raises(ModelRejected) as refused:
        rollback(pump, "anomaly")
    assert refused.value.check == "checksum"
    assert statuses(first, second) == ["retired", "champion"]


def test_a_corrupted_artifact_is_refused_and_the_champion_keeps_running(pump):
    champion, candidate = make_version(pump), make_version(pump)
    promote(champion)
    corrupt(candidate)
    history_before = ModelStatusChange.objects.count()
    with pytest.raises(ModelRejected) as refused:
        promote(candidate, reason="should not happen")
    assert refused.value.check == "checksum"
    assert "sha256" in refused.value.message
    assert statuses(champion, candidate) == ["champion", "candidate"]
    assert ModelStatusChange.objects.count() == history_before
    assert ModelVersion.objects.get(pk=candidate.pk).validated_at is None


def _missing_file(version: ModelVersion) -> None:
    os.remove(version.onnx_file.path)


@pytest.mark.parametrize(
    ("build", "damage", "check", "message"),
    [
        (dict(), corrupt, "checksum", "sha256"),
        (dict(), _missing_file, "checksum", "missing"),
        (dict(onnx_bytes=b"this is not an onnx graph"), None, "load", "cannot load"),
        (dict(onnx_bytes=linear_onnx(5)), None, "signature", "takes 5 features but the feature spec lists 4"),
        (
            dict(onnx_bytes=linear_onnx(4, input_type=TensorProto.DOUBLE)),
            None,
            "signature",
            "not tensor(float)",
        ),
        (dict(onnx_bytes=linear_onnx(4, extra_input=True)), None, "signature", "exactly one"),
        (dict(onnx_bytes=linear_onnx(4, output_name="y")), None, "signature", "output spec names 'score'"),
        (dict(onnx_bytes=nan_onnx(4)), None, "reference_batch", "non-finite"),
        (dict(background=np.zeros((0, 4))), None, "reference_batch", "no background"),
        (dict(background=np.zeros((3, 2))), None, "reference_batch", "2 columns"),
    ],
    ids=[
        "flipped-bytes",
        "missing-file",
        "not-onnx",
        "wrong-width",
        "double-input",
        "two-inputs",
        "unknown-output",
        "nan-scores",
        "no-background",
        "background-width",
    ],
)
def test_each_failing_validation_check_is_named(pump, build, damage, check, message):
    version = make_version(pump, **build)
    if damage:
        damage(version)
    with pytest.raises(ModelRejected) as refused:
        promote(version)
    assert refused.value.check == check
    assert message in refused.value.message
    assert f"{check} check failed" in str(refused.value)
    assert statuses(version) == ["candidate"]


def test_a_model_with_a_symbolic_width_passes_when_it_runs_on_the_spec_width(pump):
    version = make_version(pump, onnx_bytes=linear_onnx(4, declared_width="n_features"))
    report = validate_version(version)
    assert report.passed[-1] == "latency"


def test_retire_takes_a_version_out_of_use_once(pump, engineer):
    version = make_version(pump)
    promote(version)
    retire(version, actor=engineer, reason="asset type decommissioned")
    assert statuses(version) == ["retired"]
    with pytest.raises(RegistryError, match="already retired"):
        retire(version)


@pytest.mark.django_db(transaction=True)
def test_a_reader_never_sees_two_champions_or_none_while_versions_switch():
    import threading
    import time

    from django.db import OperationalError, connection

    pump = make_pump_type()
    first, second = make_version(pump), make_version(pump)
    promote(first)
    seen: list[int] = []
    stop = threading.Event()

    def scorer() -> None:
        try:
            while not stop.is_set():
                try:
                    seen.append(
                        ModelVersion.objects.filter(
                            asset_type=pump, kind="anomaly", status="champion"
                        ).count()
                    )
                except OperationalError:
                    continue  # SQLite's shared-cache test database blocks readers during a write: a wait, not a view
        finally:
            connection.close()

    def retried(action, *args) -> None:
        # The same shared-cache lock can refuse a whole write; each service call is atomic, so retry it.
        for _ in range(500):
            try:
                action(*args)
                return
            except OperationalError:
                time.sleep(0.002)
        raise AssertionError("the database stayed locked")

    reader = threading.Thread(target=scorer)
    reader.start()
    try:
        for _ in range(8):
            retried(promote, second)
            retried(rollback, pump, "anomaly")
            retried(promote, second)
            retried(promote, first)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert len(seen) > 10
    assert set(seen) == {1}
