"""``manage.py evaluate simfleet`` on a small fleet (one pump per class, short periods): its report."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from models_registry.evaluation.simfleet import CLASSES, VARIANTS, fleet, schedule


def test_the_small_fleet_report_has_every_variant_class_and_pump(tmp_path):
    out = StringIO()
    call_command(
        "evaluate", "--out", str(tmp_path), "simfleet", "--seeds", "1", "--pumps-per-class", "1",
        "--calibration-hours", "1.5", "--test-hours", "3", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    document = json.loads((tmp_path / "simfleet.json").read_text())
    assert (tmp_path / "simfleet.md").read_text().startswith("### simfleet")
    rows = document["rows"]
    assert len(rows) == len(VARIANTS) * (len(CLASSES) + 1)
    assert {r["normalisation"] for r in rows} == {"none", "per_asset", "per_asset_robust"}
    for row in rows:
        alerted, scheduled = map(int, row["faults_alerted"].split("/"))
        assert scheduled == (6 if row["class"] == "all" else 2) and 0 <= alerted <= scheduled
        assert row["pump_days"] > 0 and row["false_alarms_per_pump_day"] >= 0
    summary = document["summary"]
    assert set(summary) >= {"target", "target_met", "quiet_faults_all_alerted", "seconds", "seeds"}
    assert summary["target_variant"] == "per_asset_robust, per-asset thresholds"
    per_run = document["details"]["per_run"]["seed 1, per_asset_robust, per-asset thresholds"]
    assert [r["run"] for r in per_run] == ["p-01", "p-02", "p-03"]
    # 90 min of calibration give each pump 135 hold-out windows, fewer than the 600 independent-window
    # minimum of the tail rule at 6x overlap: every pump keeps the version's thresholds, and says so.
    assert {r["thresholds"]["source"] for r in per_run} == {"version"}
    assert "| seed | normalisation |" in out.getvalue()


def test_every_pump_gets_both_faults_inside_the_test_period_and_the_classes_alternate():
    pumps = fleet(3)
    assert [group for _, group in pumps][:3] == [name for name, _, _ in CLASSES]
    faults = schedule([a.tag for a, _ in pumps], 8 * 3600.0, 16 * 3600.0)
    assert len(faults) == 18
    for fault in faults:
        assert (
            8 * 3600.0 < fault.start_s and fault.start_s + fault.duration_s < 8 * 3600.0 + 0.8 * 16 * 3600.0
        )


def test_a_test_period_under_an_hour_is_refused_with_a_message(tmp_path):
    with pytest.raises(CommandError, match="--test-hours >= 1"):
        call_command("evaluate", "--out", str(tmp_path), "simfleet", "--test-hours", "0.5", stdout=StringIO())


@pytest.mark.parametrize(
    "option",
    [
        ("--pumps-per-class", "0"),
        ("--calibration-hours", "0"),
        ("--test-hours", "0"),
        ("--calibration-hours", "nan"),
        ("--seeds", "-1"),
    ],
)
def test_an_explicit_zero_or_impossible_value_is_refused_not_replaced_by_the_default(tmp_path, option):
    with pytest.raises(CommandError, match=option[0]):
        call_command("evaluate", "--out", str(tmp_path), "simfleet", *option, stdout=StringIO())


@pytest.mark.parametrize(
    "options",
    [
        ("--test-hours", "1e9"),
        ("--pumps-per-class", "1000"),
        ("--calibration-hours", "200", "--test-hours", "1"),
    ],
)
def test_a_fleet_too_large_to_simulate_is_refused_naming_the_options_not_a_memory_error(tmp_path, options):
    with pytest.raises(CommandError, match=r"must be at most 1,512 pump-hours .* got [\d,]+"):
        call_command("evaluate", "--out", str(tmp_path), "simfleet", *options, stdout=StringIO())
    assert not list(tmp_path.iterdir())
