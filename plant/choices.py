"""Choices of the plant domain; each carries a label and a colour used by badges, filters and charts."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from django.db import models

from detection import quality


def colours(table: Mapping[str, str]) -> property:
    """The ``colour`` property of a choices class: each member's hex colour, by its value in `table`."""
    return property(lambda member: table[member.value], doc="The member's colour for badges and charts.")


class Criticality(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"

    colour = colours({"low": "#6b7280", "medium": "#d97706", "high": "#dc2626"})


# How an asset's criticality moves the severity of its alerts (detection.rules.severity_level's shift): one
# level down for a low-criticality asset, one up for a high one. The server's alerts and the edge agent's
# local decisions (the bundle ships the asset's shift) use it.
CRITICALITY_SHIFT = {Criticality.LOW: -1, Criticality.MEDIUM: 0, Criticality.HIGH: 1}


class LabelKind(models.TextChoices):
    FAULT = "fault", "Fault"
    NORMAL = "normal", "Normal"
    # Readings a technician judged a faulty sensor's (a sensor-fault verdict): neither the machine's fault
    # nor its normal behaviour, so training leaves these windows out.
    EXCLUDED = "excluded", "Left out (faulty sensor)"

    colour = colours({"fault": "#dc2626", "normal": "#16a34a", "excluded": "#9ca3af"})


class LabelSource(models.TextChoices):
    MANUAL = "manual", "Entered by hand"
    FEEDBACK = "feedback", "Operator feedback"
    DATASET = "dataset", "Dataset"
    SIMULATOR = "simulator", "Simulator ground truth"


class Role(models.TextChoices):
    """The two user groups created by migration plant.0002."""

    TECHNICIAN = "technician", "Technician"
    ENGINEER = "engineer", "Engineer"


class QualityFlag(enum.IntFlag):
    """Per-reading data-quality bits stored in Reading.quality (0 = clean); the bits and the rules that set
    them are the core's (detection.quality), shared with the edge agent."""

    OUT_OF_RANGE = quality.OUT_OF_RANGE
    SPIKE = quality.SPIKE
    STUCK = quality.STUCK
    GAP = quality.GAP  # the reading that ends a gap of missing sample periods
    DRIFT = quality.DRIFT
    # The source's own verdict (OPC UA status code): the value is kept and shown, but flagged. A BAD value is
    # also left out of feature windows, like an out-of-range one (detection.features.EXCLUDED_QUALITY).
    SOURCE_UNCERTAIN = quality.SOURCE_UNCERTAIN
    SOURCE_BAD = quality.SOURCE_BAD

    @property
    def label(self) -> str:
        return _FLAG_META[self][0]

    @property
    def colour(self) -> str:
        return _FLAG_META[self][1]

    @classmethod
    def names_of(cls, bits: int) -> list[str]:
        return [flag.label for flag in cls if bits & flag]


# Data availability vs sensor faults (plant.health): a GAP says readings went missing, which is the link's or
# the gateway's doing and is measured by completeness; every other flag says something about the value the
# sensor (or its source) gave.
AVAILABILITY_FLAGS = quality.AVAILABILITY_FLAGS
SENSOR_FAULT_FLAGS = quality.SENSOR_FAULT_FLAGS


_FLAG_META = {
    QualityFlag.OUT_OF_RANGE: ("out of range", "#dc2626"),
    QualityFlag.SPIKE: ("spike", "#ea580c"),
    QualityFlag.STUCK: ("stuck", "#7c3aed"),
    QualityFlag.GAP: ("after gap", "#2563eb"),
    QualityFlag.DRIFT: ("drift", "#0891b2"),
    QualityFlag.SOURCE_UNCERTAIN: ("source uncertain", "#ca8a04"),
    QualityFlag.SOURCE_BAD: ("source bad", "#991b1b"),
}


class HealthStatus(models.TextChoices):
    OK = "ok", "Healthy"
    WARN = "warn", "Degraded"
    BAD = "bad", "Bad data"
    SILENT = "silent", "No recent data"

    colour = colours({"ok": "#16a34a", "warn": "#d97706", "bad": "#dc2626", "silent": "#6b7280"})


class Protocol(models.TextChoices):
    """The plant protocols a Connection speaks (connectivity.protocols has a client for each)."""

    MQTT = "mqtt", "MQTT"
    OPCUA = "opcua", "OPC UA"
    MODBUS = "modbus", "Modbus TCP"


class PayloadFormat(models.TextChoices):
    """How an MQTT point's value is carried (connectivity.mqtt.FORMATS)."""

    JSON = "json", "JSON"
    SPARKPLUG = "sparkplug", "Sparkplug B"
