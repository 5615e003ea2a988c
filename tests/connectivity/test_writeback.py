"""The alert state every write-back writer sends to the plant's HMI."""

from __future__ import annotations

import json

import pytest

from connectivity.writeback import SEVERITY_CODES, AlertState


@pytest.mark.parametrize(
    ("state", "alarm"),
    [("open", True), ("acknowledged", True), ("snoozed", True), ("suppressed", False), ("resolved", False)],
)
def test_the_alarm_bit_is_on_while_an_alert_is_in_force(state, alarm):
    alert = AlertState("P-101", state, "critical", "machine_fault")
    assert alert.alarm is alarm
    assert alert.severity_code == (SEVERITY_CODES["critical"] if alarm else 0)


def test_the_hmi_line_reads_as_words():
    assert (
        AlertState("P-101", "open", "high", "machine_fault", "vibration").text
        == "P-101 vibration alert, high"
    )
    assert AlertState("P-101", "open", "low", "sensor_fault").text == "P-101 sensor fault alert, low"
    assert AlertState("P-101", "acknowledged", "medium", category_label="Check the sensor").text == (
        "P-101 Check the sensor alert, medium (acknowledged)"
    )
    assert AlertState("P-101").text == "P-101 normal"
    assert AlertState("P-101", "resolved", "high", "machine_fault").text == "P-101 normal"


def test_the_payload_carries_the_whole_state_as_json():
    alert = AlertState(
        "P-101",
        "open",
        "high",
        "machine_fault",
        "vibration",
        top_sensor="vibration at 3.1× its normal range",
        link="https://vigil.example/alerts/7/",
    )
    payload = json.loads(json.dumps(alert.as_payload()))
    assert payload == {
        "asset_tag": "P-101",
        "state": "open",
        "severity": "high",
        "category": "machine_fault",
        "category_label": "vibration",
        "top_sensor": "vibration at 3.1× its normal range",
        "link": "https://vigil.example/alerts/7/",
        "alarm": True,
        "severity_code": 3,
        "text": "P-101 vibration alert, high",
    }
    assert alert == AlertState(
        **{k: v for k, v in payload.items() if k not in ("alarm", "severity_code", "text")}
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"asset_tag": ""}, "asset_tag is required"),
        ({"asset_tag": "P-101", "severity": "urgent"}, "unknown severity 'urgent'; known: low, medium"),
    ],
)
def test_an_invalid_state_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlertState(**kwargs)
