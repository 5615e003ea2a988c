"""Staged rollouts to edge agents on the server: the assigned bundle is signed for its asset and verifies
on the agent, only the asset's site gets it, the shadow policy approves within bounds and not a flood, and
the agent's outcomes (active, rolled back) move the assignments."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from edge.updates import load_public_key, verify_bundle
from models_registry.edge_rollout import RolloutError, assign, decide
from models_registry.models import EdgeAssignment, EdgeStage
from models_registry.signing import public_key_pem
from plant.models import Gateway

ASSIGNMENTS = "/api/v1/edge/assignments"


@pytest.fixture(autouse=True)
def signing_key(settings, tmp_path):
    settings.VIGIL_EDGE_SIGNING_KEY = str(tmp_path / "edge-key.pem")


def get(client, token, url):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")


def post(client, token, url, payload):
    return client.post(
        url, data=json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_the_agent_gets_a_bundle_signed_for_its_asset_that_verifies(client, champion, asset, gateway_token):
    [made] = assign(champion, [asset], shadow_hours=2)
    body = get(client, gateway_token, ASSIGNMENTS).json()
    [listed] = body["assignments"]
    assert listed["asset"] == asset.tag and listed["stage"] == "shadow" and listed["id"] == made.pk
    data = get(client, gateway_token, listed["bundle_url"]).content
    model = verify_bundle(
        data,
        asset.tag,
        listed["sha256"],
        bytes.fromhex(listed["signature"]),
        load_public_key(public_key_pem()),
    )
    assert model.spec["asset"]["tag"] == asset.tag
    # The same key signs the next assignment (created once, kept).
    [again] = assign(champion, [asset])
    assert EdgeAssignment.objects.get(pk=made.pk).stage == EdgeStage.CANCELLED  # replaced
    assert again.stage == EdgeStage.SHADOW


def test_another_sites_gateway_sees_nothing_and_cannot_download(client, champion, asset, other_site):
    [made] = assign(champion, [asset])
    _, token = Gateway.issue(other_site, "other")
    assert get(client, token, ASSIGNMENTS).json() == {"assignments": []}
    response = get(client, token, f"/api/v1/edge/bundles/{made.pk}")
    assert response.status_code == 404 and "no assignment" in response.json()["error"]


@override_settings(VIGIL_EDGE_SHADOW_MIN_WINDOWS=100, VIGIL_EDGE_SHADOW_MAX_ALERT_FACTOR=3.0)
def test_the_policy_approves_within_bounds_and_never_a_flood(client, champion, asset, gateway_token):
    [made] = assign(champion, [asset], auto_approve=True)
    report = {
        "id": made.pk,
        "windows": 400,
        "alerts_current": 1,
        "alerts_candidate": 10,
        "score_correlation": 0.9,
    }
    result = post(client, gateway_token, "/api/v1/edge/shadow-reports", {"reports": [report]}).json()
    assert result["results"] == [{"id": made.pk, "stage": "shadow"}]
    report["alerts_candidate"] = 2
    result = post(client, gateway_token, "/api/v1/edge/shadow-reports", {"reports": [report]}).json()
    assert result["results"] == [{"id": made.pk, "stage": "approved"}]
    made.refresh_from_db()
    assert made.shadow_report["alerts_candidate"] == 2 and "approved by policy" in made.decision_reason


def test_without_auto_approval_the_engineer_decides(client, champion, asset, gateway_token, engineer):
    [made] = assign(champion, [asset])
    report = {
        "id": made.pk,
        "windows": 4000,
        "alerts_current": 1,
        "alerts_candidate": 1,
        "score_correlation": 1.0,
    }
    post(client, gateway_token, "/api/v1/edge/shadow-reports", {"reports": [report]})
    made.refresh_from_db()
    assert made.stage == EdgeStage.SHADOW
    decide(made, EdgeStage.APPROVED, actor=engineer, reason="a day of shadow matches the server")
    made.refresh_from_db()
    assert made.stage == EdgeStage.APPROVED and made.decided_by == engineer
    decided_at = made.decided_at
    assert decided_at is not None and made.outcome_at is None
    with pytest.raises(RolloutError, match="no longer in shadow"):
        decide(made, EdgeStage.CANCELLED, actor=engineer)
    # The agent's report of the switch brings its own outcome; the engineer's why is kept beside it.
    outcome = {"id": made.pk, "outcome": "active", "reason": "switched"}
    post(client, gateway_token, "/api/v1/edge/outcomes", {"outcomes": [outcome]})
    made.refresh_from_db()
    assert (made.stage, made.outcome_reason) == (EdgeStage.ACTIVE, "switched")
    assert (made.decided_by, made.decision_reason) == (engineer, "a day of shadow matches the server")
    # ... and so is the time the engineer decided (the agent's report was taken for it)
    assert made.decided_at == decided_at and made.outcome_at > decided_at


def test_outcomes_switch_and_roll_back(client, champion, asset, gateway_token):
    [first] = assign(champion, [asset])
    post(
        client, gateway_token, "/api/v1/edge/outcomes", {"outcomes": [{"id": first.pk, "outcome": "active"}]}
    )
    [second] = assign(champion, [asset])
    post(
        client, gateway_token, "/api/v1/edge/outcomes", {"outcomes": [{"id": second.pk, "outcome": "active"}]}
    )
    first.refresh_from_db()
    assert first.stage == EdgeStage.CANCELLED
    why = "12 alerts in 1.00 h after the switch, more than 3× the 0.50/h measured in shadow"
    post(
        client,
        gateway_token,
        "/api/v1/edge/outcomes",
        {"outcomes": [{"id": second.pk, "outcome": "rolled_back", "reason": why}]},
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stage, second.stage) == (EdgeStage.ACTIVE, EdgeStage.ROLLED_BACK)
    assert second.outcome_reason == why


@pytest.mark.parametrize(
    "url, payload, error",
    [
        (
            "/api/v1/edge/shadow-reports",
            {"reports": [{"id": "x"}]},
            "reports[0].id must be the assignment id",
        ),
        ("/api/v1/edge/shadow-reports", {"reports": [{"id": 99999}]}, "is not one of this site's"),
        (
            "/api/v1/edge/outcomes",
            {"outcomes": [{"id": 0, "outcome": "exploded"}]},
            "is not one of this site's",
        ),
        ("/api/v1/edge/outcomes", {"outcomes": 3}, "expected a JSON object with a 'outcomes' list"),
    ],
)
def test_wrong_reports_are_400_naming_the_field(client, gateway_token, url, payload, error):
    response = post(client, gateway_token, url, payload)
    assert response.status_code == 400 and error in response.json()["error"]


@pytest.mark.parametrize(
    "url, item, error",
    [
        ("/api/v1/edge/shadow-reports", {"started_at": "\x00"}, "reports[0].started_at contains a NUL"),
        (
            "/api/v1/edge/outcomes",
            {"outcome": "refused", "reason": "a\x00b"},
            "outcomes[0].reason contains a NUL",
        ),
        ("/api/v1/edge/outcomes", {"outcome": ["active"]}, "outcomes[0].outcome must be one of"),
        ("/api/v1/edge/outcomes", {"outcome": {"active": 1}}, "outcomes[0].outcome must be one of"),
    ],
)
def test_a_report_postgresql_cannot_store_or_an_outcome_that_is_no_text_is_a_400(
    client, champion, asset, gateway_token, url, item, error
):
    [row] = assign(champion, [asset])
    key = url.rsplit("/", 1)[1].replace("shadow-", "")
    response = post(client, gateway_token, url, {key: [{"id": row.pk, **item}]})
    assert response.status_code == 400 and error in response.json()["error"]
    row.refresh_from_db()
    assert row.stage == EdgeStage.SHADOW and row.shadow_report is None and not row.outcome_reason
