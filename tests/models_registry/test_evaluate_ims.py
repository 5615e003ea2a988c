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

from models_registry.evaluation import ims
from plant.datasets import ims as reader

SNAPSHOTS = 720  # 120 h at 10 min
DEGRADE_FROM = 480  # bearing 1 degrades over the last 40 h


def _write_test(
    folder: Path, name: str, channels: int, *, degrade: int | None, seed: int = 3, rig_rise: float = 0.0
) -> None:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2004-02-12T10:00")
    ts = start + np.arange(SNAPSHOTS) * np.timedelta64(10, "m")
    levels = 0.05 + 0.01 * np.arange(channels)
    values = levels * (1.0 + 0.02 * rng.standard_normal((SNAPSHOTS, channels)))
    if degrade is not None:
        # Exponential growth of the failing bearing's vibration, the shape of a run-to-failure test:
        # +10 % after 10 h of degradation, x8 at the end.
        hours = np.clip((np.arange(SNAPSHOTS) - DEGRADE_FROM) / 6.0, 0.0, None)
        values[:, degrade] *= np.exp(hours * np.log(8.0) / ((SNAPSHOTS - DEGRADE_FROM) / 6.0))
    if rig_rise:
        # The whole rig louder by rig_rise (every bearing alike, as with a faster shaft or a warmer
        # lubricant), ramping up over 12 h from a third in.
        ramp = np.clip((np.arange(SNAPSHOTS) - SNAPSHOTS // 3) / 72.0, 0.0, 1.0)
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
    chosen = ims.select_methods(results, ["a", "b"])
    assert chosen["test1"]["method"] == "a" and chosen["test1"]["chosen_on"] == ["test2"]
    assert chosen["test2"]["method"] == "b" and chosen["test2"]["chosen_on"] == ["test1"]
    # A tie on the other tests goes to the earlier candidate.
    tied = {"test1": {"a": result(True, 1, 0.0), "b": result(True, 1, 0.0)}, "test2": results["test2"]}
    assert ims.select_methods(tied, ["a", "b"])["test2"]["method"] == "a"
