"""A version that fails at run time is quarantined with an incident; the other versions keep scoring."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from alerts.models import Score
from models_registry.models import ModelIncident, ModelVersion
from alerts.scoring import score_assets
from models_registry.quarantine import clear_quarantine
from models_registry.services import ModelRejected, register_artifact
from tests.models_registry.conftest import corrupt, linear_onnx, nan_onnx
from tests.scoring.conftest import NAMES, START_S, ingest, vibration_model

pytestmark = pytest.mark.django_db


def as_shadow(version: ModelVersion) -> ModelVersion:
    """Put an artifact that validation would refuse in shadow, as if it broke after its promotion."""
    ModelVersion.objects.filter(pk=version.pk).update(status="shadow")
    version.refresh_from_db()
    return version


def broken(asset_type, onnx_bytes: bytes, spec: list[str], name: str) -> ModelVersion:
    return as_shadow(
        register_artifact(
            name=name,
            kind="anomaly",
            asset_type=asset_type,
            onnx_bytes=onnx_bytes,
            feature_spec=spec,
            output_spec={"name": "score"},
            open_threshold=10.0,
            clear_threshold=5.0,
            background=[[0.0] * len(spec)],
        )
    )


def test_a_corrupted_artifact_is_quarantined_and_the_champion_keeps_scoring(asset):
    champion = vibration_model(asset.asset_type)
    shadow = vibration_model(asset.asset_type, shadow=True, name="pump-vib-2")
    corrupt(shadow)
    ingest(asset, START_S, 300)

    report = score_assets([asset.pk])

    shadow.refresh_from_db()
    assert shadow.quarantined_at is not None
    incident = ModelIncident.objects.get(version=shadow)
    assert incident.kind == "load" and "sha256" in incident.message
    assert report.quarantined == [shadow.pk]
    assert Score.objects.filter(model_version=champion).count() == 27
    assert not Score.objects.filter(model_version=shadow).exists()


def test_a_model_expecting_another_input_width_is_quarantined(asset):
    vibration_model(asset.asset_type)
    narrow = broken(asset.asset_type, linear_onnx(3), NAMES[:5], "pump-narrow")
    ingest(asset, START_S, 120)

    score_assets([asset.pk])

    assert ModelIncident.objects.get(version=narrow).kind == "inputs"


def test_a_feature_spec_naming_features_the_asset_does_not_produce_is_quarantined(asset):
    vibration_model(asset.asset_type)
    alien = broken(asset.asset_type, linear_onnx(2), ["flow__mean", "flow__std"], "pump-flow")
    ingest(asset, START_S, 120)

    score_assets([asset.pk])

    incident = ModelIncident.objects.get(version=alien)
    assert incident.kind == "inputs" and "flow__mean" in incident.message


def test_non_finite_scores_quarantine_the_version_without_storing_them(asset):
    vibration_model(asset.asset_type)
    nan = broken(asset.asset_type, nan_onnx(len(NAMES)), NAMES, "pump-nan")
    ingest(asset, START_S, 120)

    score_assets([asset.pk])

    assert ModelIncident.objects.get(version=nan).kind == "outputs"
    assert not Score.objects.filter(model_version=nan).exists()


def test_a_quarantined_version_is_skipped_until_an_engineer_clears_it(asset):
    champion = vibration_model(asset.asset_type)
    ModelVersion.objects.filter(pk=champion.pk).update(quarantined_at="2026-01-01T00:00:00Z")
    ingest(asset, START_S, 120)
    score_assets([asset.pk])
    assert not Score.objects.exists()

    clear_quarantine(champion)
    score_assets([asset.pk])

    assert Score.objects.filter(model_version=champion).count() == 9


def test_clearing_the_quarantine_of_a_still_broken_artifact_is_refused(asset):
    champion = vibration_model(asset.asset_type)
    corrupt(champion)
    ingest(asset, START_S, 120)
    score_assets([asset.pk])

    with pytest.raises(ModelRejected):
        clear_quarantine(champion)

    champion.refresh_from_db()
    assert champion.quarantined_at is not None


def test_engineers_see_incidents_and_clear_a_quarantine_from_the_admin(client, asset):
    champion = vibration_model(asset.asset_type)
    ModelVersion.objects.filter(pk=champion.pk).update(quarantined_at="2026-01-01T00:00:00Z")
    ModelIncident.objects.create(version=champion, kind="runtime", message="disk hiccup")
    admin = User.objects.create_superuser("root", password="pw-123456789")
    client.force_login(admin)

    listing = client.get(reverse("admin:models_registry_modelincident_changelist"))
    assert listing.status_code == 200 and "disk hiccup" in listing.text
    response = client.post(
        reverse("admin:models_registry_modelversion_changelist"),
        {"action": "clear_quarantine_selected", "_selected_action": [champion.pk]},
        follow=True,
    )

    assert "scores again" in response.text
    champion.refresh_from_db()
    assert champion.quarantined_at is None
    assert ModelIncident.objects.get().resolved_by == admin


def test_technicians_cannot_see_model_incidents(client, technician):
    client.force_login(technician)
    response = client.get(reverse("admin:models_registry_modelincident_changelist"))
    assert response.status_code in (302, 403)
