"""Alert state as the plant's HMI sees it, whatever the protocol that carries it back.

The server turns an alert state change into one `AlertState` per asset (the alerts app knows alerts; this
module knows none) and hands it to each write-back writer: a retained MQTT message, configured OPC UA
nodes, a Modbus coil and register. Every writer writes the whole state, never a delta, so writing the same
state twice is harmless and a retry after a failure needs no bookkeeping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# The severity as a number an HMI or PLC can compare: 0 means no alert in force.
SEVERITY_CODES: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}

# Alert states that keep the asset's alarm bit on: the condition is there and nobody has closed it.
# Suppressed (maintenance), resolved and auto-closed alerts, and "normal" (no alert), turn it off.
ALARM_STATES = frozenset({"open", "acknowledged", "snoozed"})

NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class AlertState:
    """What an operator's HMI shows for one asset: the state of its alert in force, or "normal"."""

    asset_tag: str
    state: str = NORMAL  # an alerts.choices.AlertState value, or "normal" when the asset has no alert
    severity: str | None = None  # an alerts.choices.Severity value ("low" … "critical")
    category: str | None = None  # e.g. "machine_fault", "sensor_fault", "data_link"
    # The words the board uses, e.g. "vibration", or "vibration data link" when readings went missing.
    category_label: str | None = None
    top_sensor: str = ""  # plain words, e.g. "vibration at 3.1× its normal range"
    link: str = ""  # absolute URL of the alert (or the asset) on the board

    def __post_init__(self) -> None:
        if not self.asset_tag:
            raise ValueError("alert state: asset_tag is required")
        if self.severity is not None and self.severity not in SEVERITY_CODES:
            known = ", ".join(SEVERITY_CODES)
            raise ValueError(
                f"alert state of {self.asset_tag}: unknown severity {self.severity!r}; known: {known}"
            )

    @property
    def alarm(self) -> bool:
        return self.state in ALARM_STATES

    @property
    def severity_code(self) -> int:
        """0 when no alarm is on, else 1 (low) … 4 (critical)."""
        if not self.alarm or self.severity is None:
            return 0
        return SEVERITY_CODES[self.severity]

    @property
    def text(self) -> str:
        """One line for an HMI text field, e.g. "P-101 vibration alert, high" or "P-101 normal"."""
        if not self.alarm:
            return f"{self.asset_tag} normal"
        what = self.category_label or (self.category or "").replace("_", " ") or "condition"
        line = f"{self.asset_tag} {what} alert"
        if self.severity:
            line += f", {self.severity}"
        if self.state != "open":
            line += f" ({self.state})"
        return line

    def as_payload(self) -> dict[str, object]:
        """The full state as a JSON-ready dict (the MQTT write-back message body)."""
        payload = asdict(self)
        payload.update(alarm=self.alarm, severity_code=self.severity_code, text=self.text)
        return payload
