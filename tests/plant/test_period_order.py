"""A period typed backwards in the console (a label, a maintenance window, a calibration) is a form error on
its end in words, not the name of the database constraint it would break."""

from __future__ import annotations

import pytest

from alerts.models import MaintenanceWindow
from models_registry.models import AssetBaseline
from plant.models import Label

BACKWARDS = {"start_0": "2026-01-05", "start_1": "09:00:00", "end_0": "2026-01-05", "end_1": "08:00:00"}


@pytest.mark.parametrize(
    "url, fields, model",
    [
        ("/admin/plant/label/add/", {"kind": "fault", "source": "manual"}, Label),
        ("/admin/alerts/maintenancewindow/add/", {"reason": "pump swap"}, MaintenanceWindow),
        ("/admin/models_registry/assetbaseline/add/", {}, AssetBaseline),
    ],
)
def test_a_period_that_ends_before_it_starts_is_refused_in_words(client, engineer, asset, url, fields, model):
    client.force_login(engineer)
    response = client.post(url, {"asset": asset.pk, **fields, **BACKWARDS})
    assert response.status_code == 200
    page = response.content.decode()
    assert "The end must not be before the start." in page or "The end must be after the start." in page
    assert "Constraint" not in page and "is violated" not in page
    assert not model.objects.exists()
