"""The detail page of a sensor-fault alert measures it by the sensor rule, not by the machine model it was
filed under: how unusual as a multiple of the sensor-fault opening level (the flagged share; 1.0 opens), no
"explanation is still being computed" (the flagged readings are its explanation, there is no model window to
explain) and no model-feature section. It said "0.4× the alert level" for an open stuck-sensor alert."""

from __future__ import annotations

import pytest
from django.urls import reverse

from detection.wording import unusual_text
from models_registry.models import ModelVersion
from tests.alerts.builders import make_alert
from tests.alerts.test_sensor_faults import sensor_alert  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def test_a_sensor_fault_detail_page_speaks_of_the_sensor_rule_only(client, technician, sensor_alert):  # noqa: F811
    # The model it is filed under alerts at 5.0: nothing to do with the sensor rule's level.
    ModelVersion.objects.filter(pk=sensor_alert.model_version_id).update(
        open_threshold=5.0, clear_threshold=4.0
    )
    client.force_login(technician)
    response = client.get(reverse("alerts:detail", args=[sensor_alert.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert sensor_alert.peak_score >= 1.0  # open: at or past its level
    assert unusual_text(sensor_alert.peak_score, 1.0) in page
    assert "still being computed" not in page and "Explanation pending" not in page
    assert 'id="shap-chart"' not in page and 'id="feature-table"' not in page
    assert 'id="sensor-chart"' in page


def test_an_alert_held_behind_a_faulty_sensor_is_not_called_maintenance(
    client, site, asset, champion, technician
):
    """Found in the demo: a model alert held because the pressure sensor was stuck read "Suppressed
    (maintenance)" on its page, with no maintenance planned; its history says why it is held."""
    from alerts.choices import AlertEventKind
    from alerts.models import AlertEvent, MaintenanceWindow

    alert = make_alert(asset, champion, state="suppressed", category="sensor_fault")
    AlertEvent.objects.filter(alert=alert).update(
        kind=AlertEventKind.HELD, reason="held: the readings of a faulty sensor explain it (pressure): test"
    )
    assert not MaintenanceWindow.objects.exists()

    client.force_login(technician)
    body = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    assert "maintenance" not in body.split('<p class="summary">', 1)[1].split("</p>", 1)[0].lower()
    assert "held: the readings of a faulty sensor explain it" in body
