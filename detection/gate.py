"""The data-quality gate: where the technician (or the operator at the HMI) looks first — the machine, the
sensor, or the data link — from the quality flags of the window's readings of the sensor roles that
dominate the alert's explanation, and the words each answer goes by.

One rule for the server (``alerts.services.lifecycle.categorize``: the scorer's alerts, their explanation
and the alerts decided at the edge, on the stored readings' flags) and the edge agent (``edge.decide``: its
local alert, on the flags it gives its own readings with ``detection.quality``), so the HMI hears the same
category from the agent while the server is out of reach as from the server's write-back.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from detection.explain import dominant_roles
from detection.quality import AVAILABILITY_FLAGS, GAP, OUT_OF_RANGE, SENSOR_FAULT_FLAGS, STUCK

MACHINE_FAULT = "machine_fault"
SENSOR_FAULT = "sensor_fault"  # "Check the sensor"
DATA_LINK = "data_link"  # "Check the data link"

# SPIKE is not among them: a spike reading is left out of the features (detection.features), so it is not
# what the score saw; the first reading of a sudden process change can be flagged as one (detection.quality),
# so a real fault (a pump starting to cavitate) read "Check the sensor"; and a sensor whose spikes persist
# gets its own sensor-fault alert on the server (alerts.services.sensor_faults), which holds the model's.
GATE_FLAGS = OUT_OF_RANGE | STUCK | GAP


def categorize(explanation: Mapping[str, Any] | None, flagged: Mapping[str, int]) -> str:
    """The gate on the dominant roles' flags (any flagged role's while there is no explanation): a value
    flag makes sensor_fault, a gap alone data_link (availability, not a sensor fault), else machine_fault.
    ``flagged``: role -> OR of the quality bits of its readings in the window."""
    bad = {role: int(bits) & GATE_FLAGS for role, bits in (flagged or {}).items() if int(bits) & GATE_FLAGS}
    if explanation is not None:
        dominant = set(dominant_roles(explanation))
        bad = {role: bits for role, bits in bad.items() if role in dominant}
    bits = functools.reduce(operator.or_, bad.values(), 0)
    if bits & SENSOR_FAULT_FLAGS:
        return SENSOR_FAULT
    if bits & AVAILABILITY_FLAGS:
        return DATA_LINK
    return MACHINE_FAULT


def category_what(category: str, label: str) -> str:
    """What an alert of ``category`` whose top sensor is ``label`` ("Vibration RMS") is about, in the words
    of its one-line texts: the sensor itself for a sensor fault ("Vibration RMS sensor" — a bare "Vibration
    RMS alert" reads as the machine's vibration), its data link when readings went missing ("vibration rms
    data link"), else the label. "" for a machine fault without a label (the caller says what it is)."""
    if category == DATA_LINK:
        return f"{label.lower()} data link" if label else "data link"
    if category == SENSOR_FAULT:
        return f"{label} sensor" if label else "sensor"
    return label


def check_the_link(many: bool = False) -> str:
    """What to check for a data-link alert: the link, not the sensor(s)."""
    return (
        f"check {'their' if many else 'its'} data link (the gateway, bridge, network or PLC connection), "
        f"not the sensor{'s' if many else ''}"
    )


def went_missing(names: str, many: bool = False) -> str:
    """A data-link alert's sentence (no full stop, like a top sensor's) when the missing stretch is not
    known: the server's card without stored gaps, the edge agent's HMI write-back. ``names``: the sensors'
    labels in lower case ("vibration rms")."""
    return f"Readings of the {names} sensor{'s' if many else ''} went missing in this alert's window: " + (
        check_the_link(many)
    )
