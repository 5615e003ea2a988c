"""The engineers' Edge page: agents with their queue, drops and a silent warning; rollouts assigned, approved
and cancelled from it; another site's agents and assets stay out of view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from models_registry.edge_rollout import assign
from models_registry.models import EdgeAssignment, EdgeStage, ModelVersion
from plant.models import EdgeAgent, EdgeDrop, Gateway
from tests.conftest import make_asset, make_user

PAGE = "/models/edge/"


@pytest.fixture(autouse=True)
def signing_key(settings, tmp_path):
    settings.VIGIL_EDGE_SIGNING_KEY = str(tmp_path / "edge-key.pem")
    settings.VIGIL_EDGE_SILENT_AFTER_S = 300


def agent_of(site, name, seconds_ago, **fields):
    gateway, _ = Gateway.issue(site, name)
    return EdgeAgent.objects.create(
        gateway=gateway, last_contact_at=timezone.now() - timedelta(seconds=seconds_ago), **fields
    )


def test_agents_show_queue_drops_and_a_silent_warning(client, engineer, site, other_site):
    quiet = agent_of(site, "gw-quiet", 10, queue_readings=42, dropped_total=1500)
    EdgeDrop.objects.create(
        gateway=quiet.gateway,
        at=timezone.now(),
        count=1500,
        first_ts=timezone.now() - timedelta(hours=2),
        last_ts=timezone.now() - timedelta(hours=1),
    )
    agent_of(site, "gw-silent", 3600)
    agent_of(other_site, "gw-elsewhere", 10)
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    assert "gw-quiet" in html and "42 readings" in html and "1500 readings" in html
    assert html.count("silent for longer than 300 s") == 1
    assert "gw-elsewhere" not in html


def test_assign_approve_and_cancel_from_the_page(client, engineer, champion, asset):
    client.force_login(engineer)
    response = client.post(
        "/models/edge/assign/",
        {"version": champion.pk, "assets": [asset.pk], "shadow_hours": "2", "auto_approve": ""},
    )
    assert response.status_code == 302
    made = EdgeAssignment.objects.get()
    assert made.stage == EdgeStage.SHADOW and made.created_by == engineer
    html = client.get(PAGE).content.decode()
    # Each decision asks why first, as the version moves do (one click does nothing).
    assert html.count("Approve switch") == 1
    assert f'<label for="approve-{made.pk}-reason">Why switch the agent to it</label>' in html
    assert f'<label for="cancel-{made.pk}-reason">Why cancel the trial</label>' in html
    assert html.count('name="reason" maxlength="300" required') == 2
    response = client.post(
        f"/models/edge/{made.pk}/decide/", {"action": "approve", "reason": " "}, follow=True
    )
    made.refresh_from_db()
    assert made.stage == EdgeStage.SHADOW and made.decided_by is None
    assert "Not done: Say why (required)." in response.content.decode()
    response = client.post(
        f"/models/edge/{made.pk}/decide/", {"action": "approve", "reason": "shadow looked right"}, follow=True
    )
    made.refresh_from_db()
    assert made.stage == EdgeStage.APPROVED and made.decided_by == engineer
    assert made.decision_reason == "shadow looked right"
    assert "shadow looked right" in response.content.decode()
    # A second decision on a decided assignment is refused with a message, not a 500.
    response = client.post(
        f"/models/edge/{made.pk}/decide/", {"action": "cancel", "reason": "x"}, follow=True
    )
    assert "no longer in shadow" in response.content.decode()


def test_cancelling_a_trial_records_who_and_why(client, engineer, champion, asset):
    [made] = assign(champion, [asset])
    client.force_login(engineer)
    client.post(f"/models/edge/{made.pk}/decide/", {"action": "cancel"})
    made.refresh_from_db()
    assert made.stage == EdgeStage.SHADOW
    client.post(f"/models/edge/{made.pk}/decide/", {"action": "cancel", "reason": "wrong asset"})
    made.refresh_from_db()
    assert (made.stage, made.decided_by, made.decision_reason) == (
        EdgeStage.CANCELLED,
        engineer,
        "wrong asset",
    )


def test_a_bad_assignment_is_a_form_error(client, engineer, champion, asset):
    client.force_login(engineer)
    response = client.post("/models/edge/assign/", {"version": champion.pk, "shadow_hours": "0"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Pick at least one asset." in html and "greater than or equal to 0.1" in html


@pytest.mark.parametrize("asset_id", ["1" + "0" * 30, str(2**63)])
def test_an_asset_id_no_database_holds_is_a_form_error(client, engineer, champion, asset, asset_id):
    # A 30-digit id reached SQLite, which refused it with an OverflowError (a 500).
    client.force_login(engineer)
    data = {"version": champion.pk, "assets": [asset.pk, asset_id], "shadow_hours": "24"}
    response = client.post("/models/edge/assign/", data)
    assert response.status_code == 400 and "Unknown asset." in response.content.decode()
    assert not EdgeAssignment.objects.exists()


def test_another_sites_assignment_cannot_be_decided(client, champion, asset, other_site):
    [made] = assign(champion, [asset])
    outsider = make_user("eng-b", "engineer", other_site)
    client.force_login(outsider)
    response = client.post(f"/models/edge/{made.pk}/decide/", {"action": "approve", "reason": "mine now"})
    assert response.status_code == 404
    made.refresh_from_db()
    assert made.stage == EdgeStage.SHADOW


def test_an_agents_local_alert_rate_is_shown_beside_its_shadow_estimate(
    client, engineer, champion, asset, site
):
    [made] = assign(champion, [asset])
    EdgeAssignment.objects.filter(pk=made.pk).update(
        stage=EdgeStage.ACTIVE, shadow_report={"hours": 12.0, "alerts_candidate": 1, "windows": 4000}
    )
    agent_of(site, "gw-rates", 5, local_alerts_24h=9, models_in_use={asset.tag: "ab" * 32})
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    assert "9 <small" in html and "shadow trial: 2.0 expected" in html


def test_an_agents_models_are_named_by_version(client, engineer, champion, asset, site):
    """The agent reports the sha256 of each asset's ONNX file; the page names the version it is (linked),
    and a hash no version on this server has stays a hash, said to be foreign."""
    agent_of(site, "gw-models", 5, models_in_use={asset.tag: champion.sha256, "p-999": "cd" * 32})
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    assert f'href="/models/{champion.pk}/compare/">{champion}</a>' in html
    assert f'<code>{"cd" * 6}</code> <small class="muted">(not a version on this server)</small>' in html


def test_assigning_an_asset_no_agent_runs_warns_that_it_will_wait(client, engineer, champion, asset, site):
    other = make_asset(site, tag="p-777", asset_type=asset.asset_type)
    agent_of(site, "gw-edge", 10, models_in_use={asset.tag: champion.sha256})
    client.force_login(engineer)
    data = {"version": champion.pk, "shadow_hours": "2", "auto_approve": ""}
    page = client.post("/models/edge/assign/", {**data, "assets": [asset.pk]}, follow=True).content.decode()
    assert "1 assignment(s) made" in page and "No edge agent runs" not in page
    page = client.post(
        "/models/edge/assign/", {**data, "assets": [asset.pk, other.pk]}, follow=True
    ).content.decode()
    assert "2 assignment(s) made" in page
    assert "No edge agent runs p-777: its assignment waits until an agent of the site runs the asset" in page


def test_a_version_tried_on_the_agent_that_runs_it_shows_one_model_hash_and_a_labelled_bundle_hash(
    client, engineer, champion, asset, site
):
    """The agent runs v1 and v1 is in shadow on it again: the agents' row showed v1 with its model hash
    (of the ONNX file, what agents report) and the rollouts' row v1 with the bundle's (another file's), both
    unlabelled, so one version read as two hashes."""
    agent_of(site, "gw-same", 5, models_in_use={asset.tag: champion.sha256})
    [made] = assign(champion, [asset])
    assert made.bundle_sha256 != champion.sha256
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    model_hash = f"model <code>{champion.sha256[:12]}</code>"
    assert html.count(model_hash) == 2  # the agents' row and the rollouts' row
    assert html.count(f'href="/models/{champion.pk}/compare/">{champion}</a>') == 2
    # The bundle hash is there once, and says it is the bundle's.
    assert html.count(made.bundle_sha256[:12]) == 1
    assert f"bundle <code>{made.bundle_sha256[:12]}</code>" in html


def test_an_artifact_several_versions_share_is_named_by_the_version_the_agent_switched_to(
    client, engineer, champion, asset, site
):
    [made] = assign(champion, [asset])
    EdgeAssignment.objects.filter(pk=made.pk).update(stage=EdgeStage.ACTIVE)
    # A newer version of the same ONNX file (thresholds of its own): the agent reports only the file's hash.
    twin = ModelVersion.objects.get(pk=champion.pk)
    twin.pk, twin.version, twin.status = None, champion.version + 1, "candidate"
    twin.save()
    agent_of(site, "gw-twin", 5, models_in_use={asset.tag: champion.sha256})
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    agents = html.split('id="edge-agents"')[1].split("</table>")[0]
    assert f'href="/models/{champion.pk}/compare/">{champion}</a>' in agents and str(twin) not in agents


def test_a_shadow_estimate_is_set_beside_the_agent_of_its_own_site_only(
    client, champion, asset, site, other_site
):
    # Tags are unique per site only: p-101 of the south site is another pump than the north's.
    south = make_asset(other_site, tag=asset.tag, asset_type=asset.asset_type)
    [made] = assign(champion, [south])
    EdgeAssignment.objects.filter(pk=made.pk).update(
        stage=EdgeStage.ACTIVE, shadow_report={"hours": 12.0, "alerts_candidate": 1, "windows": 4000}
    )
    agent_of(site, "gw-north", 5, local_alerts_24h=9, models_in_use={asset.tag: champion.sha256})
    agent_of(other_site, "gw-south", 5, local_alerts_24h=3, models_in_use={asset.tag: champion.sha256})
    client.force_login(make_user("eng-both", "engineer", site, other_site))
    html = client.get(PAGE).content.decode()
    assert html.count("shadow trial: 2.0 expected") == 1 and "3 <small" in html and "9 <small" not in html


def test_an_agents_drops_and_a_trials_times_are_on_its_sites_clock(client, engineer, site, champion, asset):
    # QA (demo): the drops of an America/Chicago agent read in the server's UTC, unlabelled, while every page
    # of the site is on its clock.
    site.timezone = "America/Chicago"
    site.save(update_fields=["timezone"])
    gateway = agent_of(site, "gw-chicago", 10, dropped_total=7).gateway
    first = datetime(2026, 12, 6, 13, 30, tzinfo=UTC)
    EdgeDrop.objects.create(
        gateway=gateway, at=first, count=7, first_ts=first, last_ts=first + timedelta(minutes=20)
    )
    client.force_login(engineer)
    html = client.get(PAGE).content.decode()
    assert "7 from 2026-12-06 07:30 to 07:50 CST" in html
