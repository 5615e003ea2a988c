"""The engineers' model console: list, upload, promote / shadow / roll back, download, history."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from models_registry.services import promote
from tests.conftest import PASSWORD, make_pump_type
from tests.models_registry.conftest import linear_onnx, make_version

CHANGELIST = "admin:models_registry_modelversion_changelist"


@pytest.fixture
def pump(db):
    return make_pump_type()


@pytest.fixture
def console(client, engineer):
    client.force_login(engineer)
    return client


def status_of(version: ModelVersion) -> str:
    return ModelVersion.objects.get(pk=version.pk).status


@pytest.mark.parametrize("extra_versions", [1, 5])
def test_the_list_shows_versions_with_status_metrics_and_latency_in_a_fixed_number_of_queries(
    console, pump, django_assert_num_queries, extra_versions
):
    promote(make_version(pump))
    for _ in range(extra_versions):
        make_version(pump)
    with django_assert_num_queries(10):  # session, user, permissions, counts, one page of rows, filters
        response = console.get(reverse(CHANGELIST))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Champion" in page and "#16a34a" in page  # the status badge and its colour
    assert "pr_auc 0.91" in page
    assert " ms" in page and "not validated" in page
    assert page.count("/download/") == extra_versions + 1


def test_the_list_filters_by_status(console, pump):
    promote(make_version(pump, name="alpha"))
    make_version(pump, name="beta")
    page = console.get(reverse(CHANGELIST), {"status__exact": "champion"}).content.decode()
    assert "alpha" in page and "beta" not in page


@pytest.mark.parametrize("who", ["technician", "outsider"])
def test_technicians_cannot_open_the_console_or_download(client, pump, request, who):
    user = request.getfixturevalue(who)
    version = make_version(pump)
    client.force_login(user)
    for url in (
        reverse(CHANGELIST),
        reverse("admin:models_registry_modelversion_change", args=[version.pk]),
        reverse("admin:models_registry_modelversion_download", args=[version.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_model_permissions_cannot_download(client, pump):
    User.objects.create_user("stan", password=PASSWORD, is_staff=True)
    version = make_version(pump)
    client.login(username="stan", password=PASSWORD)
    response = client.get(reverse("admin:models_registry_modelversion_download", args=[version.pk]))
    assert response.status_code == 403


def test_engineers_download_the_exact_artifact(console, pump):
    version = make_version(pump)
    response = console.get(reverse("admin:models_registry_modelversion_download", args=[version.pk]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == version.sha256
    assert 'filename="pump-anomaly-v1.onnx"' in response["Content-Disposition"]
    assert console.get(reverse("admin:models_registry_modelversion_download", args=[999])).status_code == 404


def test_the_change_page_shows_the_spec_and_read_only_history(console, pump, engineer):
    version = make_version(pump)
    promote(version, actor=engineer, reason="looks good")
    page = console.get(
        reverse("admin:models_registry_modelversion_change", args=[version.pk])
    ).content.decode()
    assert "looks good" in page and "registered" in page
    assert "f0" in page and version.sha256 in page
    assert 'name="history-0-reason"' not in page  # history rows are not editable


def upload_data(pump, **overrides):
    data = {
        "name": "pump-uploaded",
        "kind": "anomaly",
        "asset_type": pump.pk,
        "onnx_file": SimpleUploadedFile("m.onnx", linear_onnx(3)),
        "feature_spec": json.dumps(["a", "b", "c"]),
        "output_spec": json.dumps({"name": "score"}),
        "open_threshold": "2.0",
        "clear_threshold": "1.5",
        "background": json.dumps(np.ones((4, 3)).tolist()),
        "metrics": json.dumps({"precision": 0.5}),
        "provenance": json.dumps({"trained_by": "notebook"}),
    }
    data.update(overrides)
    return data


def test_uploading_an_onnx_file_registers_a_candidate_with_its_checksum(console, pump, engineer):
    make_version(pump, name="pump-uploaded")
    response = console.post(reverse("admin:models_registry_modelversion_add"), upload_data(pump))
    assert response.status_code == 302, response.content.decode()[:2000]
    version = ModelVersion.objects.get(name="pump-uploaded", version=2)
    assert version.sha256 == hashlib.sha256(linear_onnx(3)).hexdigest()
    assert (version.status, version.created_by) == (ModelStatus.CANDIDATE, engineer)
    assert list(version.history.values_list("to_status", "reason")) == [("candidate", "uploaded")]
    promote(version)  # the uploaded artifact is a working model
    assert status_of(version) == ModelStatus.CHAMPION


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"feature_spec": json.dumps("a,b,c")}, "JSON list of strings"),
        ({"feature_spec": json.dumps(["a", "a", "c"])}, "must be unique"),
        ({"background": json.dumps([[1, 2]])}, "lists of 3 numbers"),
        ({"background": ""}, "This field is required"),
        ({"clear_threshold": "3.0"}, "normal side of the open one"),
        ({"onnx_file": SimpleUploadedFile("m.onnx", b"")}, "empty"),
        ({"output_spec": json.dumps([1])}, "JSON object"),
    ],
    ids=[
        "spec-not-list",
        "spec-duplicates",
        "background-width",
        "no-background",
        "thresholds",
        "empty-file",
        "spec-list",
    ],
)
def test_the_upload_form_explains_what_is_wrong(console, pump, overrides, message):
    response = console.post(reverse("admin:models_registry_modelversion_add"), upload_data(pump, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_the_upload_form_reads_the_direction_as_the_scorer_does(console, pump):
    # "Lower_is_anomalous" is a lower-is-worse model for the scorer (detection.runtime.higher_is_worse): its
    # clear threshold lies above the open one. The form read the direction case-sensitively and refused it.
    spec = json.dumps({"name": "score", "direction": "Lower_is_anomalous"})
    data = upload_data(pump, output_spec=spec, open_threshold="1.0", clear_threshold="1.5")
    response = console.post(reverse("admin:models_registry_modelversion_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    refused = upload_data(pump, output_spec=spec, open_threshold="2.0", clear_threshold="1.5")
    page = console.post(reverse("admin:models_registry_modelversion_add"), refused).content.decode()
    assert "normal side of the open one" in page


def act(console, action: str, *versions: ModelVersion) -> str:
    """Run an admin action; returns the page lower-cased (the admin capitalises message text)."""
    response = console.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [version.pk for version in versions]},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode().lower()


def act_response(console, action: str, *versions: ModelVersion):
    return console.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [version.pk for version in versions]}
    )


@pytest.mark.parametrize("action", ["promote_selected", "shadow_selected"])
def test_promote_and_shadow_in_the_console_ask_for_confirmation_on_the_compare_page_first(
    console, pump, action
):
    old, new = make_version(pump), make_version(pump)
    promote(old)
    response = act_response(console, action, new)
    assert response.status_code == 302
    assert response["Location"] == reverse("models_registry:compare", args=[new.pk]) + "#version-actions"
    assert (status_of(old), status_of(new)) == ("champion", "candidate")  # nothing moved at "Go"
    page = console.get(response["Location"]).content.decode()
    assert "give a reason under Status to confirm. Nothing has changed yet." in page
    assert 'id="promote-form"' in page and 'name="reason"' in page and "required" in page
    # The page's form moves it, with the engineer's reason recorded.
    console.post(reverse("models_registry:promote", args=[new.pk]), {"reason": "fewer false alarms"})
    assert (status_of(old), status_of(new)) == ("retired", "champion")
    assert new.history.filter(to_status="champion").get().reason == "fewer false alarms"


def test_the_promote_action_wants_exactly_one_version(console, pump):
    first, second = make_version(pump), make_version(pump)
    page = act(console, "promote_selected", first, second)
    assert "select exactly one version to promote." in page
    assert (status_of(first), status_of(second)) == ("candidate", "candidate")


def test_the_rollback_action_asks_for_confirmation_on_the_champions_compare_page(console, pump):
    first, second = make_version(pump), make_version(pump)
    page = act(console, "rollback_selected", first)
    assert "pump / anomaly detector: no champion to roll back." in page
    promote(first)
    promote(second)
    response = act_response(console, "rollback_selected", first)
    assert response["Location"] == reverse("models_registry:compare", args=[second.pk]) + "#version-actions"
    assert [status_of(v) for v in (first, second)] == ["retired", "champion"]
    page = console.get(response["Location"]).content.decode()
    assert "To roll back pump-anomaly v2, check the comparison" in page
    assert "Roll back to pump-anomaly v1" in page


# --- moves need membership of every site with assets of the type --------------------------------------


@pytest.fixture
def two_site_pump(pump, site, other_site):
    """Pumps run on both sites, so a version move changes what both run."""
    from tests.conftest import make_asset

    make_asset(site, tag="p-101", asset_type=pump)
    make_asset(other_site, tag="p-201", asset_type=pump)
    return pump


@pytest.fixture
def engineer_of_both(site, other_site):
    from tests.conftest import make_user

    return make_user("bea", "engineer", site, other_site)


def test_the_service_refuses_a_move_by_an_engineer_of_one_site_only(
    two_site_pump, engineer, engineer_of_both
):
    from django.core.exceptions import PermissionDenied

    from models_registry.services import may_move_versions, retire, rollback

    first, second = make_version(two_site_pump), make_version(two_site_pump)
    assert not may_move_versions(engineer, two_site_pump) and may_move_versions(
        engineer_of_both, two_site_pump
    )
    with pytest.raises(PermissionDenied):
        promote(first, actor=engineer)
    with pytest.raises(PermissionDenied):
        promote(first, actor=engineer, shadow=True)
    assert status_of(first) == "candidate"
    promote(first, actor=engineer_of_both)
    promote(second)  # an operator (management command): no actor, no membership check
    with pytest.raises(PermissionDenied):
        rollback(two_site_pump, "anomaly", actor=engineer)
    with pytest.raises(PermissionDenied):
        retire(second, actor=engineer)
    assert (status_of(first), status_of(second)) == ("retired", "champion")


def test_an_engineer_of_one_site_is_told_on_the_compare_page_that_they_cannot_move_versions(
    console, two_site_pump
):
    old, new = make_version(two_site_pump), make_version(two_site_pump)
    promote(old)
    page = act(console, "promote_selected", new)
    assert 'id="moves-not-allowed"' in page and "member of every site" in page
    assert 'id="promote-form"' not in page
    assert (status_of(old), status_of(new)) == ("champion", "candidate")


def test_the_baseline_form_offers_only_the_users_assets(console, two_site_pump):
    form = console.get(reverse("admin:models_registry_assetbaseline_add")).context["adminform"].form
    assert [asset.tag for asset in form.fields["asset"].queryset] == ["p-101"]
