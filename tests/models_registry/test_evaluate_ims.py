"""``manage.py evaluate ims``: the report's fields and a degrading bearing's early alert on a synthetic
IMS-like folder, test discovery, and the real tests end to end (fail, never skip, without the data)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from models_registry.evaluation.ims.bearing import select_methods
from models_registry.evaluation.ims.results import UNKNOWN
from plant.datasets import ims as reader

SNAPSHOTS = 720  # 120 h at 10 min
DEGRADE_FROM = 480  # bearing 1 degrades over the last 40 h


def _write_test(
    folder: Path,
    name: str,
    channels: int,
    *,
    degrade: int | None,
    seed: int = 3,
    rig_rise: float = 0.0,
    snapshots: int = SNAPSHOTS,
) -> None:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2004-02-12T10:00")
    ts = start + np.arange(snapshots) * np.timedelta64(10, "m")
    levels = 0.05 + 0.01 * np.arange(channels)
    values = levels * (1.0 + 0.02 * rng.standard_normal((snapshots, channels)))
    if degrade is not None:
        # Exponential growth of the failing bearing's vibration, the shape of a run-to-failure test:
        # +10 % after 10 h of degradation, x8 at the end (the last third of the test degrades).
        degrade_from = snapshots * DEGRADE_FROM // SNAPSHOTS
        hours = np.clip((np.arange(snapshots) - degrade_from) / 6.0, 0.0, None)
        values[:, degrade] *= np.exp(hours * np.log(8.0) / ((snapshots - degrade_from) / 6.0))
    if rig_rise:
        # The whole rig louder by rig_rise (every bearing alike, as with a faster shaft or a warmer
        # lubricant), ramping up over 12 h from a third in.
        ramp = np.clip((np.arange(snapshots) - snapshots // 3) / 72.0, 0.0, 1.0)
        values *= (1.0 + rig_rise * ramp)[:, None]
    values = np.vstack([values, np.full((2, channels), 0.001)])  # the stopped rig, trimmed by the reader
    stamps = list(ts) + [ts[-1] + np.timedelta64(10, "m"), ts[-1] + np.timedelta64(20, "m")]
    lines = [",Datetime," + ",".join(f"Bearing {i + 1}" for i in range(channels))]
    for i, (stamp, row) in enumerate(zip(stamps, values, strict=True)):
        moment = np.datetime_as_string(stamp, unit="s").replace("-", ".").replace("T", ".").replace(":", ".")
        lines.append(f"{i},{moment}," + ",".join(f"{v:.6f}" for v in row))
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def synthetic(tmp_path, settings):
    folder = tmp_path / "data" / reader.FOLDER
    folder.mkdir(parents=True)
    # Test 2's layout: four one-channel bearings, bearing 1 fails at the end (the readme's failure).
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    settings.VIGIL_DATA_DIR = str(tmp_path / "data")
    return tmp_path


def _evaluate(out: Path, *args: str) -> dict:
    call_command("evaluate", "--out", str(out), "ims", *args, stdout=io.StringIO(), stderr=io.StringIO())
    return json.loads((out / "ims.json").read_text())


def test_a_degrading_bearing_alerts_well_before_the_end_and_the_healthy_ones_stay_quiet(synthetic):
    report = _evaluate(synthetic / "out")
    assert report["summary"]["evaluated_tests"] == ["test2"]
    assert (synthetic / "out" / "ims.md").read_text().startswith("### ims")
    rows = [
        r
        for r in report["rows"]
        if r["source"] == "vigil" and r["detector"] == "combined" and r["chosen"] == "yes"
    ]
    assert [r["bearing"] for r in rows] == [f"test2-bearing{b}" for b in range(1, 5)]
    # One test only: nothing to choose on, so the first candidate (the product's robust step) is reported.
    assert {r["method"] for r in rows} == {"per_asset_robust"}
    failing = rows[0]
    assert failing["state"] == "outer_race_failure"
    # Degradation starts 40 h before the end; the product's alert must come at least a day before it.
    assert 24.0 <= failing["first_alert_lead_h"] <= 40.0
    assert failing["in_alert_at_end_since_h"] is not None
    for healthy in rows[1:]:
        assert healthy["state"] == "healthy"
        assert healthy["share_in_alert"] < 0.05
    chosen = report["summary"]["tests"]["test2"]
    assert chosen["method"] == "per_asset_robust" and chosen["chosen_on"] == []
    result = chosen["result"]
    assert result["failing_alerted_24h"] == result["failing"] == 1
    assert result["target_met"] is True
    details = report["details"]["tests"]["test2"]
    assert details["roles"] == ["vibration"]
    assert details["snapshots"] == SNAPSHOTS  # the stopped-rig rows were trimmed
    assert set(details["methods"]) == set(report["details"]["protocol"]["candidates"])
    bearing = details["methods"]["per_asset_robust"]["combined"]["bearings"][1]
    assert set(bearing) >= {
        "first_alert",
        "first_alert_lead_h",
        "alert_at_end",
        "share_in_alert",
        "thresholds",
    }
    # The card's reference row sits beside ours.
    assert any(r["source"].endswith("(card)") for r in report["rows"])


def test_the_machine_framing_names_the_failing_bearing_of_the_rig_asset_and_keeps_ims_md(synthetic):
    out = synthetic / "out"
    call_command(
        "evaluate",
        "--out",
        str(out),
        "ims",
        "--framing",
        "machine",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert not (out / "ims.json").exists() and not (out / "ims.md").exists()
    assert (out / "ims-machine-framing.md").read_text().startswith("### ims-machine-framing")
    report = json.loads((out / "ims-machine-framing.json").read_text())
    assert report["summary"]["framing"] == "machine"
    details = report["details"]["tests"]["test2"]
    assert details["machine_roles"] == {f"bearing{b}_vibration": f"test2-bearing{b}" for b in range(1, 5)}
    assert set(details["detectors"]) == {"combined", "pca", "univariate"}
    rows = [r for r in report["rows"] if r["detector"] == "combined"]
    assert [r["unit"] for r in rows] == ["test2-machine"] + [f"test2-bearing{b}" for b in range(1, 5)]
    machine, failing, *healthy = rows
    assert machine["state"] == "machine" and machine["alerts"] >= 1
    # Degradation starts 40 h before the end: named a day ahead, and only while the machine is in alert.
    assert failing["state"] == "outer_race_failure"
    assert 24.0 <= failing["lead_h"] <= 40.0
    assert failing["titled"] == machine["alerts"]
    assert failing["share_in_alert"] <= machine["share_in_alert"]
    assert all(r["state"] == "healthy" and r["share_in_alert"] < 0.05 for r in healthy)
    assert report["summary"]["tests"]["test2"]["combined"]["target_met"] is True
    assert report["summary"]["target_met"] is True


def test_the_machine_framing_refuses_the_bearing_framings_method_options(synthetic):
    for option in (("--peers",), ("--normalisation", "per_asset_pooled")):
        with pytest.raises(CommandError, match="--framing machine runs the pre-registered per_asset_robust"):
            _evaluate(synthetic / "out", "--framing", "machine", *option)


def test_a_test_file_the_readme_does_not_describe_is_found_split_over_four_bearings(tmp_path):
    folder = tmp_path / reader.FOLDER
    folder.mkdir()
    _write_test(folder, "4th_test_mean_abs_per_snapshot.csv", 8, degrade=None)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=None)
    (folder / "notes.csv").write_text("x\n")
    tests = reader.available(tmp_path)
    assert [t.name for t in tests] == ["test2", "test4"]
    assert tests[1].failures == {}
    units = reader.read_units(["test4"], base=tmp_path)
    assert [u.tag for u in units] == [f"test4-bearing{b}" for b in range(1, 5)]
    assert all(set(u.values) == {"vibration", "vibration_y"} for u in units)
    assert all(not u.labels for u in units)


def test_an_unknown_test_is_refused_naming_the_tests_the_folder_holds(synthetic):
    with pytest.raises(CommandError, match="unknown IMS test 'test7'.*holds: test2"):
        _evaluate(synthetic / "out", "--subset", "test7")


@pytest.fixture(scope="module")
def real_folder() -> Path:
    path = Path(settings.VIGIL_DATA_DIR) / reader.FOLDER
    if not (path / reader.TESTS["test2"].file).is_file():
        pytest.fail(f"IMS files not found under {path}; CI sets VIGIL_DATA_DIR=../shared/data.")
    return path


def test_on_the_real_test_2_the_failing_bearing_alerts_more_than_a_day_before_the_end(real_folder, tmp_path):
    report = _evaluate(tmp_path, "--subset", "test2", "--detectors", "combined")
    assert report["summary"]["evaluated_tests"] == ["test2"]
    rows = {r["bearing"]: r for r in report["rows"] if r["source"] == "vigil"}
    assert len(rows) == 4
    # The card's reference fires ~74 h before the end; the product's first alert is of the same order.
    assert rows["test2-bearing1"]["first_alert_lead_h"] >= 24.0
    assert all(0.0 <= r["share_in_alert"] <= 1.0 for r in rows.values())


def test_the_adaptive_location_is_an_added_normalisation_of_the_same_report(synthetic):
    report = _evaluate(synthetic / "out", "--normalisation", "per_asset_adaptive", "--detectors", "combined")
    assert report["details"]["protocol"]["candidates"] == ["per_asset_adaptive"]
    rows = [r for r in report["rows"] if r["source"] == "vigil"]
    assert [r["detector"] for r in rows] == ["combined"] * 4
    # The synthetic bearing grows exponentially (x8 over 40 h), far faster than the EWMA follows.
    assert rows[0]["first_alert_lead_h"] >= 24.0
    assert all(r["share_in_alert"] < 0.05 for r in rows[1:])


def test_the_pooled_scale_is_an_added_normalisation_of_the_same_report(synthetic):
    report = _evaluate(synthetic / "out", "--normalisation", "per_asset_pooled", "--detectors", "combined")
    assert report["details"]["protocol"]["candidates"] == ["per_asset_pooled"]
    rows = [r for r in report["rows"] if r["source"] == "vigil"]
    assert [r["detector"] for r in rows] == ["combined"] * 4
    assert rows[0]["first_alert_lead_h"] >= 24.0  # the synthetic failing bearing still alerts a day ahead


def test_with_the_peer_step_a_rise_of_the_whole_rig_is_not_an_alert_but_the_failing_bearing_is(
    tmp_path, settings
):
    folder = tmp_path / "data" / reader.FOLDER
    folder.mkdir(parents=True)
    # Every bearing 30 % louder from a third in (far beyond their 2 % noise), bearing 1 also degrading.
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0, rig_rise=0.3)
    settings.VIGIL_DATA_DIR = str(tmp_path / "data")
    alone = _evaluate(
        tmp_path / "alone", "--normalisation", "per_asset_robust", "--no-peers", "--detectors", "combined"
    )
    peers = _evaluate(
        tmp_path / "peers", "--normalisation", "per_asset_robust", "--peers", "--detectors", "combined"
    )
    assert peers["details"]["protocol"]["candidates"] == ["per_asset_robust+peers"]
    alone_rows = [r for r in alone["rows"] if r["source"] == "vigil"]
    peer_rows = [r for r in peers["rows"] if r["source"] == "vigil"]
    # Without peers the rig's rise puts every healthy bearing in alert; with them none, and the failing
    # bearing still alerts more than a day ahead.
    assert all(r["share_in_alert"] > 0.5 for r in alone_rows[1:])
    assert all(r["share_in_alert"] < 0.05 for r in peer_rows[1:])
    assert peer_rows[0]["first_alert_lead_h"] >= 24.0


def test_each_test_reports_the_method_chosen_on_the_other_tests():
    def result(met: bool, alerted: int, share: float) -> dict:
        return {"combined": {"target_met": met, "failing_alerted_24h": alerted, "healthy_max_share": share}}

    results = {
        # "b" is best on test1 itself, "a" on test2: each test must get the other's choice.
        "test1": {"a": result(False, 1, 0.3), "b": result(True, 2, 0.01)},
        "test2": {"a": result(True, 1, 0.02), "b": result(False, 1, 0.4)},
    }
    chosen = select_methods(results, ["a", "b"])
    assert chosen["test1"]["method"] == "a" and chosen["test1"]["chosen_on"] == ["test2"]
    assert chosen["test2"]["method"] == "b" and chosen["test2"]["chosen_on"] == ["test1"]
    # A tie on the other tests goes to the earlier candidate.
    tied = {"test1": {"a": result(True, 1, 0.0), "b": result(True, 1, 0.0)}, "test2": results["test2"]}
    assert select_methods(tied, ["a", "b"])["test2"]["method"] == "a"


# --- held-out data folders: whatever tests the folder holds, known or not, usable or not -----------------


def _held_out(tmp_path: Path, settings) -> Path:
    folder = tmp_path / "data" / reader.FOLDER
    folder.mkdir(parents=True)
    settings.VIGIL_DATA_DIR = str(tmp_path / "data")
    return folder


def _vigil_rows(report: dict, test: str) -> list[dict]:
    return [
        r
        for r in report["rows"]
        if r["source"] == "vigil"
        and r["test"] == test
        and r["chosen"] == "yes"
        and r["detector"] == "combined"
    ]


def test_test_3_gets_the_readmes_failure_and_an_unknown_test_is_reported_but_never_judged(tmp_path, settings):
    folder = _held_out(tmp_path, settings)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    # The IMS readme: test 3 ends with an outer race failure of bearing 3.
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 4, degrade=2, seed=5)
    # A test the readme does not describe, eight channels (test 1's layout), one bearing degrading.
    _write_test(folder, "4th_test_mean_abs_per_snapshot.csv", 8, degrade=4, seed=6)
    report = _evaluate(tmp_path / "out", "--detectors", "combined")
    summary = report["summary"]
    assert summary["evaluated_tests"] == summary["available_tests"] == ["test2", "test3", "test4"]
    assert summary["skipped_tests"] == {}
    assert summary["not_judged_tests"] == ["test4"]
    test3 = {r["bearing"]: r["state"] for r in _vigil_rows(report, "test3")}
    assert test3 == {
        "test3-bearing1": "healthy",
        "test3-bearing2": "healthy",
        "test3-bearing3": "outer_race_failure",
        "test3-bearing4": "healthy",
    }
    # Test 4's bearings are neither failing nor known healthy: no target is judged on them ...
    assert {r["state"] for r in _vigil_rows(report, "test4")} == {UNKNOWN}
    result4 = summary["tests"]["test4"]["result"]
    assert result4["target_met"] is None and result4["healthy"] == 0 and result4["failing"] == 0
    assert summary["target_met"] is all(
        summary["tests"][t]["result"]["target_met"] for t in ("test2", "test3")
    )
    # ... and no method is chosen on them for the other tests.
    assert summary["tests"]["test2"]["chosen_on"] == ["test3"]
    assert summary["tests"]["test3"]["chosen_on"] == ["test2"]
    assert summary["tests"]["test4"]["chosen_on"] == ["test2", "test3"]
    # The report text names what was evaluated: the tests, their failures (or none known), their layout.
    evaluated = report["notes"][0]
    assert evaluated.startswith("Evaluated: every IMS test the data folder holds")
    assert "test3 (failing: bearing 3 outer race failure)" in evaluated
    assert f"test4 ({UNKNOWN}" in evaluated
    assert "test4: 720 snapshots" in evaluated and "roles vibration, vibration_y" in evaluated
    assert "test 1: x and y" not in " ".join(report["notes"])


def test_a_subset_run_says_which_tests_of_the_folder_it_evaluated(tmp_path, settings):
    folder = _held_out(tmp_path, settings)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 4, degrade=2, seed=5)
    report = _evaluate(tmp_path / "out", "--subset", "test3", "--detectors", "combined")
    assert report["summary"]["evaluated_tests"] == ["test3"]
    assert report["notes"][0].startswith("Evaluated: 1 of the IMS tests the data folder holds (test2, test3)")


def test_a_file_that_cannot_be_used_is_set_aside_with_its_reason_and_the_others_are_evaluated(
    tmp_path, settings
):
    folder = _held_out(tmp_path, settings)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 4, degrade=2)
    bad = folder / "3rd_test_mean_abs_per_snapshot.csv"
    lines = bad.read_text().splitlines()
    lines[301] = "300,2004.02.14.xx.00.00,0.1,0.1,0.1,0.1"
    bad.write_text("\n".join(lines) + "\n")
    # Shorter than the 200 calibration snapshots; and a file whose rig never ran (header only).
    _write_test(folder, "4th_test_mean_abs_per_snapshot.csv", 4, degrade=None, snapshots=150)
    (folder / "5th_test_mean_abs_per_snapshot.csv").write_text(",Datetime,Bearing 1,Bearing 2\n")
    report = _evaluate(tmp_path / "out", "--detectors", "combined")
    summary = report["summary"]
    assert summary["evaluated_tests"] == ["test2"]
    assert summary["available_tests"] == ["test2", "test3", "test4", "test5"]
    skipped = summary["skipped_tests"]
    assert set(skipped) == {"test3", "test4", "test5"}
    assert "3rd_test_mean_abs_per_snapshot.csv, line 302" in skipped["test3"]
    assert "150 running snapshots: too few for 200 calibration snapshots" in skipped["test4"]
    assert "no snapshot with the rig running" in skipped["test5"]
    assert any(n.startswith("Not evaluated") and "line 302" in n for n in report["notes"])
    # Asked for by name, the same file stops the command with the reason, never a traceback.
    with pytest.raises(CommandError, match=r"test3: .*3rd_test_mean_abs_per_snapshot\.csv, line 302"):
        _evaluate(tmp_path / "out", "--subset", "test3")
    (folder / "2nd_test_mean_abs_per_snapshot.csv").unlink()
    with pytest.raises(CommandError, match="no IMS test could be evaluated: test3: .*test4: .*test5: "):
        _evaluate(tmp_path / "out")


def test_the_reader_refuses_a_file_without_a_running_snapshot_and_a_known_test_of_another_layout(tmp_path):
    folder = tmp_path / reader.FOLDER
    folder.mkdir()
    stopped = folder / "3rd_test_mean_abs_per_snapshot.csv"
    stopped.write_text(",Datetime,B1,B2,B3,B4\n0,2004.03.04.09.27.46,0.001,0.001,0.001,0.001\n")
    with pytest.raises(reader.DatasetFormatError, match="no snapshot with the rig running"):
        reader.read_units(["test3"], base=tmp_path)
    # Test 3 has one channel per bearing: a file with eight would otherwise read as eight bearings' worth
    # of channels silently dropped to four.
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 8, degrade=None)
    with pytest.raises(reader.DatasetFormatError, match="8 channels, but test3 has 1 per bearing"):
        reader.read_units(["test3"], base=tmp_path)


def test_a_missing_value_is_left_out_and_the_report_holds_no_nan(tmp_path, settings):
    folder = _held_out(tmp_path, settings)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    path = folder / "2nd_test_mean_abs_per_snapshot.csv"
    lines = path.read_text().splitlines()
    # A missing value inside the calibration of a healthy bearing, one in the last running snapshot.
    for at, column in ((51, 3), (SNAPSHOTS, 4)):
        cells = lines[at].split(",")
        cells[column] = "nan"
        lines[at] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    report = _evaluate(tmp_path / "out", "--detectors", "combined", "--normalisation", "per_asset_robust")
    # The last snapshot still ran (three bearings read): the end of the test does not move.
    assert report["details"]["tests"]["test2"]["snapshots"] == SNAPSHOTS
    text = (tmp_path / "out" / "ims.json").read_text()
    assert "NaN" not in text
    assert "nan" not in " ".join(report["notes"])
    drift = report["details"]["tests"]["test2"]["level_drift"]["test2-bearing2:vibration"]
    assert drift["sigma_pct_of_level"] is not None


def test_without_the_combined_detector_the_method_is_chosen_on_the_detector_asked_for(tmp_path, settings):
    folder = _held_out(tmp_path, settings)
    _write_test(folder, "2nd_test_mean_abs_per_snapshot.csv", 4, degrade=0)
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 4, degrade=2, seed=5)
    report = _evaluate(tmp_path / "out", "--detectors", "pca")
    summary = report["summary"]
    assert summary["target_detector"] is None and summary["target_met"] is False
    assert summary["tests"]["test2"]["chosen_on"] == ["test3"]
    assert "pca detector" in summary["tests"]["test2"]["how"]
    assert {r["detector"] for r in report["rows"] if r["source"] == "vigil"} == {"pca"}
    assert any("did not include combined" in n for n in report["notes"])


def test_an_explicit_zero_calibration_is_refused_not_replaced_by_the_default(synthetic):
    with pytest.raises(CommandError, match="--calibration-snapshots must be at least 20"):
        _evaluate(synthetic / "out", "--calibration-snapshots", "0")


def test_rows_out_of_time_order_are_read_in_time_order_so_the_end_of_the_test_is_the_latest(tmp_path):
    folder = tmp_path / reader.FOLDER
    folder.mkdir()
    _write_test(folder, "3rd_test_mean_abs_per_snapshot.csv", 4, degrade=2)
    path = folder / "3rd_test_mean_abs_per_snapshot.csv"
    ordered = reader.read_test(path)
    lines = path.read_text().splitlines()
    # A block of snapshots from the middle moved behind the last running one (before the stopped tail).
    body, tail = lines[1:-2], lines[-2:]
    path.write_text("\n".join([lines[0], *body[:300], *body[400:], *body[300:400], *tail]) + "\n")
    ts, _, matrix = reader.read_test(path)
    assert np.array_equal(ts, ordered[0]) and np.array_equal(matrix, ordered[2])
    units = reader.read_units(["test3"], base=tmp_path)
    assert units[2].labels[0].start == ordered[0][-1]  # bearing 3's failure at the real end of the test
