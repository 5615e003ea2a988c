"""Migration 0017: stored explained alerts get the dominant role their words name first (the net push in the
bad direction), and their stored explanations the model's direction."""

from __future__ import annotations

import pytest

from alerts.models import Alert
from detection.explain import top_role
from tests.alerts.builders import bare_champion, make_alert, migrate_to

BEFORE = ("alerts", "0016_feedback_reason_sensor_reads_true")
AFTER = ("alerts", "0017_dominant_role_by_net_push")

# Pressure's features cancel out (summed |φ| 9.6, net +0.4); vibration pushes +2: the words name vibration.
CANCELLING = [("pressure__std", 5.0), ("pressure__mean", -4.6), ("vibration__std", 2.0)]
# A remaining-life model: vibration lowered the score (towards the alert), temperature raised it more.
LOW_IS_BAD = [("vibration__mean", -3.0), ("temperature__mean", 5.0)]


def stored(pairs) -> dict:
    """An explanation as stored before it carried its direction."""
    return {"features": [{"name": name, "value": 1.0, "phi": phi} for name, phi in pairs]}


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_stored_alerts_the_role_their_words_name_first(asset):
    anomaly = bare_champion(asset.asset_type)
    rul = bare_champion(asset.asset_type, direction="lower_is_worse", name="rul", kind="rul")
    # As the old rule stored them: the largest summed |φ|.
    cancelling = make_alert(
        asset, anomaly, explanation=stored(CANCELLING), dominant_role="pressure", state="resolved"
    )
    low = make_alert(
        asset, rul, explanation=stored(LOW_IS_BAD), dominant_role="temperature", state="resolved"
    )
    low.peak_explanation = stored(LOW_IS_BAD)
    low.save(update_fields=["peak_explanation"])
    pending = make_alert(asset, anomaly, age_min=5)  # no explanation yet: the explainer decides later
    try:
        migrate_to(BEFORE)
        migrate_to(AFTER)
    finally:
        migrate_to()
    roles = dict(Alert.objects.values_list("pk", "dominant_role"))
    assert roles == {cancelling.pk: "vibration", low.pk: "vibration", pending.pk: ""}
    low.refresh_from_db()
    assert low.explanation["higher_is_worse"] is False and low.peak_explanation["higher_is_worse"] is False
    # The migration's frozen rule is the product's rule.
    for alert in Alert.objects.exclude(explanation=None):
        assert alert.dominant_role == top_role(alert.explanation)
