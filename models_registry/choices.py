"""Choices of the model registry; each carries a label and a colour used by badges, filters and charts."""

from __future__ import annotations

from django.db import models

from plant.choices import colours


class ModelKind(models.TextChoices):
    ANOMALY = "anomaly", "Anomaly detector"
    FAILURE_CLASSIFIER = "failure_classifier", "Failure classifier"
    RUL = "rul", "Remaining useful life"

    colour = colours({"anomaly": "#7c3aed", "failure_classifier": "#dc2626", "rul": "#0891b2"})


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    SHADOW = "shadow", "Shadow"
    CHAMPION = "champion", "Champion"
    RETIRED = "retired", "Retired"

    colour = colours(
        {"candidate": "#6b7280", "shadow": "#2563eb", "champion": "#16a34a", "retired": "#9ca3af"}
    )


class RetrainStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"

    colour = colours({"queued": "#6b7280", "running": "#2563eb", "succeeded": "#16a34a", "failed": "#dc2626"})

    @property
    def is_finished(self) -> bool:
        return self.value in ("succeeded", "failed")


class WindowLabel(models.IntegerChoices):
    """What the labels say of one feature window, the class training and retraining fit and score against.

    Only ever held in NumPy arrays (no model field stores it), so the values are free; -1 keeps "unknown"
    apart from every real class."""

    UNLABELLED = -1, "Unlabelled"
    NORMAL = 0, "Normal"
    FAULT = 1, "Fault"
    GUARD = 2, "Near a fault (left out)"

    colour = colours({-1: "#9ca3af", 0: "#16a34a", 1: "#dc2626", 2: "#f59e0b"})
