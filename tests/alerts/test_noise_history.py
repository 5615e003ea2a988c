"""A noise group's history (alerts.services.noise.history): what was done about its alerts stays with them
when their dominant role changes after the action — as migration 0017 changed stored alerts' roles — while
each NoiseAction keeps the role it was taken for."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.models import Alert, NoiseAction
from alerts.services.noise import NoiseKey, apply_threshold, build_suggestion, mark_calibration, noise_keys
from tests.alerts.builders import bare_champion, migrate_to
from tests.alerts.test_noise import base, scenario  # noqa: F401  (base is a fixture)

BEFORE = ("alerts", "0016_feedback_reason_sensor_reads_true")
AFTER = ("alerts", "0017_dominant_role_by_net_push")

# Current's features cancel out (summed |φ| 9.6, net +0.4) and vibration pushes +2: the old rule (summed |φ|)
# said current, the words, and since 0017 the stored role, say vibration.
CANCELLING = [("current__std", 5.0), ("current__mean", -4.6), ("vibration__std", 2.0)]


def acted_on_as_current(asset, version, technician, engineer, base):  # noqa: F811
    """Three false alarms filed under current by the old rule, acted on from their noise suggestion (the
    threshold raised, the current sensor marked for calibration). Returns the dismissed alerts."""
    dismissed = scenario(asset, version, technician, base, roles=("current",) * 3)[:3]
    explanation = {"features": [{"name": n, "value": 1.0, "phi": phi} for n, phi in CANCELLING]}
    Alert.objects.filter(pk__in=[a.pk for a in dismissed]).update(
        explanation=explanation, explanation_status="ready"
    )
    suggestion = build_suggestion(NoiseKey(asset.pk, version.pk, "current"), None)
    apply_threshold(suggestion, engineer)
    mark_calibration(suggestion, engineer)
    return dismissed


@pytest.mark.django_db(transaction=True)
def test_after_migration_0017_the_group_of_the_new_role_shows_what_was_done_about_its_alerts(
    asset,
    technician,
    engineer,
    base,  # noqa: F811
):
    version = bare_champion(asset.asset_type)
    acted_on_as_current(asset, version, technician, engineer, base)
    try:
        migrate_to(BEFORE)
        migrate_to(AFTER)
    finally:
        migrate_to()
    (key,) = noise_keys(None)
    assert key == NoiseKey(asset.pk, version.pk, "vibration")  # the alerts' role by the new rule
    suggestion = build_suggestion(key, None)
    shown = [(a.kind, a.dominant_role, a.filed_under) for a in suggestion.history]
    assert shown == [
        ("mark_calibration", "current", "Current"),
        ("raise_threshold", "current", "Current"),
    ]
    # What was done is not rewritten: the current sensor is the one that was marked.
    assert set(NoiseAction.objects.values_list("dominant_role", flat=True)) == {"current"}
    assert asset.sensors.get(role__key="current").needs_calibration


@pytest.mark.django_db
def test_the_noise_page_shows_the_earlier_actions_in_the_card_of_the_role_the_alerts_have_now(
    client,
    asset,
    technician,
    engineer,
    base,  # noqa: F811
):
    version = bare_champion(asset.asset_type)
    dismissed = acted_on_as_current(asset, version, technician, engineer, base)
    Alert.objects.filter(pk__in=[a.pk for a in dismissed]).update(dominant_role="vibration")
    client.force_login(engineer)
    page = client.get(reverse("alerts:noise")).content.decode()
    card = page.split(f'id="noise-{asset.pk}-{version.pk}-vibration"', 1)[1].split("</section>", 1)[0]
    assert "What was done before" in card
    assert "Marked the sensor for calibration by" in card and "Raised the asset&#x27;s threshold" in card
    assert card.count("(for alerts then driven by Current)") == 2


@pytest.mark.django_db
def test_a_groups_history_leaves_out_other_versions_thresholds_and_other_sensors(
    asset,
    technician,
    engineer,
    base,  # noqa: F811
):
    version = bare_champion(asset.asset_type)
    other = bare_champion(asset.asset_type, name="rul", kind="rul")
    scenario(asset, version, technician, base)
    key = NoiseKey(asset.pk, version.pk, "vibration")
    apply_threshold(build_suggestion(key, None), engineer)
    # Another version's threshold and another sensor's calibration, on the same asset.
    NoiseAction.objects.create(
        kind="raise_threshold", asset=asset, model_version=other, dominant_role="current"
    )
    NoiseAction.objects.create(kind="undo_threshold", asset=asset, model_version=other)
    NoiseAction.objects.create(kind="calibrated", asset=asset, dominant_role="current")
    mine = NoiseAction.objects.create(kind="undo_threshold", asset=asset, model_version=version)
    history = build_suggestion(key, None).history
    assert [a.kind for a in history] == ["undo_threshold", "raise_threshold"]
    assert history[0].pk == mine.pk and [a.filed_under for a in history] == ["", ""]
