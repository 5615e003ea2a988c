"""``manage.py evaluate skab``: SKAB's point-wise metrics, the window-to-point mapping and a regression floor.

The regression tests read the real SKAB files under VIGIL_DATA_DIR and fail (never skip) when they are
missing. Measured: 0.774 on the six-run subset, 0.833 on all 20 valve runs (leave-one-run-out settings,
F1 on the points after calibration); the full-run floor is the issue's target, 0.80.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from models_registry.evaluation.pointwise import Counts, confusion, points_from_windows, pooled
from models_registry.evaluation.skab_protocol import FAULT_ROLES, feature_set

SUBSET = ["valve1/0", "valve1/1", "valve1/2", "valve1/3", "valve2/0", "valve2/1"]
SUBSET_F1_FLOOR = 0.70
FULL_F1_FLOOR = 0.80


def _evaluate(tmp_path: Path, *files: str) -> tuple[str, dict]:
    data = Path(settings.VIGIL_DATA_DIR) / "skab" / "data"
    assert data.is_dir(), f"SKAB data missing at {data}: set VIGIL_DATA_DIR (this test must not skip)"
    out = StringIO()
    args = ["evaluate", "--out", str(tmp_path), "skab"]
    if files:
        args += ["--files", *files]
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue(), json.loads((tmp_path / "skab.json").read_text())


def test_metrics_match_skab_formulas_on_hand_made_arrays():
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    predicted = np.array([0, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    counts = confusion(truth, predicted)
    assert counts == Counts(tp=4, fp=2, fn=1, tn=3)
    assert counts.f1 == pytest.approx(4 / (4 + (2 + 1) / 2))  # 0.727
    assert counts.far == pytest.approx(2 / 5)
    assert counts.mar == pytest.approx(1 / 5)
    assert counts.as_dict()["far_pct"] == pytest.approx(40.0)


def test_counts_are_pooled_over_runs_before_the_ratios():
    first = confusion(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))  # F1 2/3
    second = confusion(np.array([0, 0, 0, 1]), np.array([1, 1, 0, 1]))  # F1 1/2
    total = pooled([first, second])
    assert total == Counts(tp=2, fp=2, fn=1, tn=3)
    assert total.f1 == pytest.approx(2 / (2 + 1.5))  # not the mean of the per-run F1s


def test_a_detector_that_flags_nothing_has_zero_f1_and_full_missed_alarm_rate():
    counts = confusion(np.array([0, 1, 1]), np.zeros(3, dtype=bool))
    assert (counts.f1, counts.far, counts.mar) == (0.0, 0.0, 1.0)


def test_confusion_rejects_arrays_of_different_length():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusion(np.array([0, 1, 1]), np.array([0, 1]))


def test_each_point_takes_the_alert_state_of_the_latest_window_ending_at_or_before_it():
    ends = np.array([10.0, 15.0, 20.0])
    active = np.array([False, True, False])
    points = np.array([5.0, 10.0, 12.0, 15.0, 17.0, 20.0, 25.0])
    assert points_from_windows(points, ends, active).tolist() == [
        False,
        False,
        False,
        True,
        True,
        False,
        False,
    ]


def test_valve_faults_map_to_flow_and_pressure_and_feature_sets_drop_only_thermal_columns():
    assert FAULT_ROLES["valve_closed_inlet"] == ("flow", "pressure")
    assert FAULT_ROLES["valve_closed_outlet"] == ("flow", "pressure")
    assert len(feature_set("all")) == 48
    assert "temperature__std" in feature_set("no_thermal_levels")
    assert "temperature__mean" not in feature_set("no_thermal_levels")
    assert not any(n.startswith(("temperature__", "thermocouple__")) for n in feature_set("no_thermal"))


def test_subset_f1_stays_above_its_floor_and_every_alert_explanation_is_additive(tmp_path):
    table, document = _evaluate(tmp_path, *SUBSET)
    summary = document["summary"]
    assert summary["runs"] == 6
    assert summary["f1"] >= SUBSET_F1_FLOOR, summary
    assert summary["alerts"] > 0
    assert summary["all_additive"] and summary["additivity_max_error"] <= 1e-4
    assert all(e["additivity_ok"] for e in document["details"]["explanations"])
    assert summary["physics_match_share"] is not None


def test_full_valve_evaluation_prints_the_table_beside_published_rows_and_writes_both_files(tmp_path):
    table, document = _evaluate(tmp_path)
    assert document["summary"]["runs"] >= 20
    assert document["summary"]["f1"] >= FULL_F1_FLOOR, document["summary"]
    assert "| detector | source | f1 | far_pct | mar_pct | evaluated |" in table
    assert "| Conv-AE | published | 0.780 | 13.550 | 28.020 | SKAB |" in table
    sources = {row["source"] for row in document["rows"]}
    assert sources == {"this run", "published"}
    markdown = (tmp_path / "skab.md").read_text()
    assert "Isolation forest" in markdown and "leave-one-run-out" in markdown


def test_an_unknown_file_is_a_command_error_naming_it(tmp_path):
    with pytest.raises(CommandError, match="valve9"):
        call_command("evaluate", "--out", str(tmp_path), "skab", "--files", "valve9", stdout=StringIO())


def test_missing_data_under_data_dir_names_that_folder_not_vigil_data_dir(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(CommandError) as error:
        call_command(
            "evaluate", "--out", str(tmp_path), "skab", "--data-dir", str(nowhere), stdout=StringIO()
        )
    assert f"SKAB data not found at {nowhere}/skab/data" in str(error.value)
    assert str(error.value).endswith(f"(--data-dir is {nowhere})")
    assert "set --data-dir to the folder holding skab/data" in str(error.value)
    assert "set VIGIL_DATA_DIR" not in str(error.value)


def test_a_single_run_is_refused_because_leave_one_run_out_needs_two(tmp_path):
    with pytest.raises(CommandError, match="at least two labelled runs"):
        call_command("evaluate", "--out", str(tmp_path), "skab", "--files", "valve1/0", stdout=StringIO())
