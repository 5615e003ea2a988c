"""The data-quality gate: flagged sensors that drive the score make a sensor fault, others do not."""

from __future__ import annotations

from alerts.choices import AlertCategory, ExplanationStatus
from alerts.models import Alert
from alerts.services import categorize
from detection.explain import dominant_roles
from plant.choices import QualityFlag
from tests.alerts.conftest import OPEN, fault_x, score, windows


def explanation_of(shares: dict[str, float]) -> dict:
    return {"features": [{"name": f"{role}__mean", "phi": phi} for role, phi in shares.items()]}


def test_dominant_roles_are_the_fewest_covering_sixty_percent_at_most_three():
    assert dominant_roles(explanation_of({"vibration": 7, "current": 2, "pressure": 1})) == ["vibration"]
    assert dominant_roles(explanation_of({"vibration": 4, "current": -3, "pressure": 2, "x": 1})) == [
        "vibration",
        "current",
    ]
    flat = explanation_of({f"r{i}": 1.0 for i in range(10)})
    assert len(dominant_roles(flat)) == 3
    assert dominant_roles(explanation_of({"a": 0.0})) == []


def test_drift_alone_does_not_make_a_sensor_fault():
    explanation = explanation_of({"vibration": 9, "current": 1})
    assert categorize(explanation, {"vibration": int(QualityFlag.DRIFT)}) == AlertCategory.MACHINE_FAULT
    assert categorize(explanation, {"vibration": int(QualityFlag.GAP)}) == AlertCategory.SENSOR_FAULT


def test_a_stuck_sensor_dominating_the_explanation_makes_a_sensor_fault(asset, champion, trained):
    x = fault_x(trained, "vibration")
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged={"vibration": int(QualityFlag.STUCK)}))
    alert = Alert.objects.get()
    assert alert.explanation_status == ExplanationStatus.READY
    assert dominant_roles(alert.explanation) == ["vibration"]
    assert alert.category == AlertCategory.SENSOR_FAULT
    assert alert.get_category_display() == "Check the sensor"


def test_a_flagged_but_non_dominant_sensor_leaves_a_machine_fault(asset, champion, trained):
    x = fault_x(trained, "vibration")
    flagged = {"temperature": int(QualityFlag.STUCK | QualityFlag.SPIKE), "vibration": 0}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=x, flagged=flagged))
    alert = Alert.objects.get()
    assert "temperature" not in dominant_roles(alert.explanation)
    assert alert.category == AlertCategory.MACHINE_FAULT


def test_without_an_explanation_any_flagged_sensor_decides_provisionally(asset, champion):
    flagged = {"temperature": int(QualityFlag.OUT_OF_RANGE)}
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=None, flagged=flagged))
    alert = Alert.objects.get()
    assert alert.explanation_status == ExplanationStatus.PENDING
    assert alert.category == AlertCategory.SENSOR_FAULT
