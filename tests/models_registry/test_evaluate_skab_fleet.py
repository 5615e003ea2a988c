"""SKAB's pooled-fleet and leave-one-fault-type-out modes, subset discovery and the calibration-overlap
warning. Discovery and the warning use small CSV files in a temporary data folder; the fleet modes read the
real SKAB files under VIGIL_DATA_DIR and fail (never skip) when they are missing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from models_registry.evaluation import fleet
from models_registry.evaluation.skab import (
    FLEET_SETTINGS,
    LOFTO_GRID,
    FleetSetting,
    extra_settings,
    pooled_fleet,
    run_fleet,
)
from models_registry.evaluation.skab_protocol import FEATURE_SETS
from models_registry.evaluation.skab_protocol import calibration_overlap, fleet_input
from plant.datasets.skab import list_files, read_run, valid_subsets

HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
    "Volume Flow RateRMS"
)


def _write_run(path: Path, n: int, fault_from: int | None, *, labelled: bool = True) -> None:
    rng = np.random.default_rng(len(str(path)))
    lines = [HEADER + (";anomaly;changepoint" if labelled else "")]
    for i in range(n):
        stamp = f"2020-03-09 10:{14 + i // 60:02d}:{i % 60:02d}"
        flow = 32.0 - (1.5 if fault_from is not None and i >= fault_from else 0.0) + rng.normal(0, 0.1)
        values = [0.026, 0.040, 1.33, 0.1, 79.3, 26.0, 233.0, flow]
        row = ";".join([stamp, *(f"{v + rng.normal(0, 1e-3):.6f}" for v in values)])
        if labelled:
            anomalous = fault_from is not None and i >= fault_from
            row += f";{1.0 if anomalous else 0.0};0.0"
        lines.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def data_folder(tmp_path: Path) -> Path:
    root = tmp_path / "skab" / "data"
    _write_run(root / "valve1" / "0.csv", 900, 600)
    _write_run(root / "pump_wear" / "3.csv", 900, 300)  # a folder SKAB v0.9 does not have
    _write_run(root / "anomaly-free" / "anomaly-free.csv", 900, None, labelled=False)
    (root / "notes").mkdir()  # a folder without CSV files is no subset
    return tmp_path


def test_every_subset_folder_the_data_folder_holds_is_discovered(data_folder):
    files = list_files(base=data_folder)
    assert [f.ref for f in files] == ["anomaly-free", "valve1/0", "pump_wear/3"]
    assert files[2].fault_type == "pump_wear"
    assert "pump_wear (pump_wear/3..3)" in valid_subsets(files)
    assert [f.ref for f in list_files(["pump_wear"], base=data_folder)] == ["pump_wear/3"]


def test_a_fault_starting_inside_the_calibration_period_is_warned_about(data_folder):
    late, early = list_files(["valve1/0", "pump_wear/3"], base=data_folder)
    assert calibration_overlap(late, read_run(late.path), 400) is None
    warning = calibration_overlap(early, read_run(early.path), 400)
    assert warning == (
        "pump_wear/3: the labelled fault starts at point 300, inside the 400-point calibration period; "
        "its calibration holds fault windows"
    )
    assert fleet_input(early, 400).warning == warning
    assert fleet_input(late, 400).warning is None


def test_the_pooled_fleet_reports_the_warning_and_a_row_per_fault_type(data_folder):
    messages: list[str] = []
    part = pooled_fleet(list_files(base=data_folder), 400, 30.0, 5.0, messages.append)
    assert part["warnings"] and part["warnings"][0].startswith("pump_wear/3:")
    assert any(m.startswith("WARNING pump_wear/3") for m in messages)
    assert "pump_wear/3: the labelled fault starts at point 300" in part["notes"][-1]
    kinds = [
        r["detector"].rsplit("fault type ", 1)[1] for r in part["rows"] if "— fault type" in r["detector"]
    ]
    assert kinds == ["none", "pump_wear", "valve_closed_inlet"]
    held_out = [r for r in part["rows"] if r["detector"].startswith("Leave-one-fault-type-out:")]
    assert [r["detector"].split(" held out")[0].rsplit(": ", 1)[1] for r in held_out] == [
        "pump_wear",
        "valve_closed_inlet",
    ]


def _real(*refs: str):
    data = Path(settings.VIGIL_DATA_DIR) / "skab" / "data"
    assert data.is_dir(), f"SKAB data missing at {data}: set VIGIL_DATA_DIR (this test must not skip)"
    return [fleet_input(f) for f in list_files(list(refs))]


def test_the_pooled_fleet_scores_every_run_as_an_asset_with_its_own_calibration():
    inputs = _real("valve1/1", "valve2/1", "anomaly-free")
    setting = FleetSetting("pca", "per_asset_robust", True)
    outcomes, counts = run_fleet(inputs, setting, 30.0, 5.0)
    assert [o.key for o in outcomes] == ["valve1/1", "valve2/1", "anomaly-free"]
    for item, outcome, c in zip(inputs, outcomes, counts, strict=True):
        # Point-wise counts cover exactly the points after the 400-point calibration.
        assert c.tp + c.fp + c.fn + c.tn == len(item.ts) - 400
        assert len(outcome.scores) == len(outcome.ends) > 0
        assert outcome.ends.min() - 30.0 >= item.ts[400] - 1e-6
    assert counts[0].tp > 0 and counts[1].tp > 0  # each valve fault is alerted in the pooled fleet


def test_leave_one_fault_type_out_chooses_each_types_settings_on_the_other_types_only(monkeypatch):
    inputs = _real("valve1/1", "valve2/1")
    seen: list[tuple[str, ...]] = []
    real_pooled = fleet.evaluate

    def spy(prepared, protocol, variant):
        seen.append(tuple(run.key for run in prepared.runs))
        return real_pooled(prepared, protocol, variant)

    monkeypatch.setattr(fleet, "evaluate", spy)
    monkeypatch.setattr(
        "models_registry.evaluation.skab.fleet_input", lambda f, c: inputs[[i.file for i in inputs].index(f)]
    )
    part = pooled_fleet([i.file for i in inputs], 400, 30.0, 5.0, lambda _: None)
    assert len(seen) == len(LOFTO_GRID)  # one unlabelled model fit per setting, labels read only to choose
    lofto = part["summary"]["leave_one_fault_type_out"]
    assert set(lofto) == {"valve_closed_inlet", "valve_closed_outlet"}
    details = part["details"]["settings"]
    for kind, other in (("valve_closed_inlet", "valve2/1"), ("valve_closed_outlet", "valve1/1")):
        # The chosen setting is the best on the other type's run (ties to the earlier grid entry).
        f1 = {label: next(r["f1"] for r in d["per_run"] if r["run"] == other) for label, d in details.items()}
        best = max(f1.values())
        first_best = next(s.label for s in LOFTO_GRID if f1[s.label] == best)
        assert lofto[kind]["chosen"] == first_best


def test_an_added_normalisation_adds_its_rows_and_leave_one_fault_type_out_choices(data_folder):
    extra = extra_settings(["per_asset_adaptive"])
    assert [(s.detector, s.normalisation, s.asset_thresholds) for s in extra] == [
        ("combined", "per_asset_adaptive", True),
        ("pca", "per_asset_adaptive", True),
    ]
    part = pooled_fleet(list_files(base=data_folder), 400, 30.0, 5.0, lambda _: None, extra)
    added = [
        r for r in part["rows"] if r["detector"].startswith("Pooled fleet, combined, per_asset_adaptive")
    ]
    assert len(added) == 2  # the labelled runs' metric and every run's points
    assert len(part["details"]["settings"]) == len(LOFTO_GRID) + 2 * len(FEATURE_SETS)
    assert part["summary"]["setting"] == FLEET_SETTINGS[0].label  # the candidate default is unchanged


def test_an_added_open_rule_adds_the_four_settings_with_that_rule_and_a_note(data_folder):
    extra = extra_settings(None, ["episodes"])
    assert [(s.detector, s.normalisation, s.open_rule) for s in extra] == [
        (s.detector, s.normalisation, "episodes") for s in FLEET_SETTINGS
    ]
    part = pooled_fleet(list_files(base=data_folder), 400, 30.0, 5.0, lambda _: None, extra)
    added = [r for r in part["rows"] if "episodes rule" in r["detector"]]
    assert len(added) == 2 * len(FLEET_SETTINGS)
    assert part["summary"]["setting"] == FLEET_SETTINGS[0].label  # the candidate default is unchanged
    chosen = part["details"]["settings"][extra[0].label]["per_run"]
    assert all(r["thresholds"]["open_threshold"] >= r["thresholds"]["clear_threshold"] for r in chosen)
    assert any("Episodes rule rows" in note for note in part["notes"])


# Held-out copies: numbering of "other", several normal runs, runs that cannot be evaluated.


def _touch(root: Path, *refs: str) -> None:
    for ref in refs:
        path = root / "skab" / "data" / f"{ref}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + ";anomaly;changepoint\n")


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        # v0.9 / the card: 1..14
        (
            range(1, 15),
            {1: "fluid_leak_or_addition", 5: "rotor_imbalance", 13: "cavitation", 14: "hot_water_supply"},
        ),
        # older upstream / Kaggle copies: 9..23, the same experiments 8 numbers up where described
        (
            range(9, 24),
            {
                9: "other",
                13: "rotor_imbalance",
                18: "water_level_increase",
                22: "hot_water_supply",
                23: "other",
            },
        ),
        # only numbers both numberings use: no experiment's fault is guessed
        ((10, 11, 12), {10: "other", 12: "other"}),
    ],
)
def test_the_other_folders_numbering_is_read_from_the_numbers_it_holds(tmp_path, numbers, expected):
    _touch(tmp_path, *(f"other/{n}" for n in numbers))
    faults = {f.number: f.fault_type for f in list_files(base=tmp_path)}
    assert {n: faults[n] for n in expected} == expected
    # Selecting one file keeps the folder's numbering.
    (one,) = list_files([f"other/{max(expected)}"], base=tmp_path)
    assert one.fault_type == expected[max(expected)]


def test_every_normal_run_file_is_its_own_asset(tmp_path):
    root = tmp_path / "skab" / "data"
    _write_run(root / "anomaly-free" / "anomaly-free.csv", 10, None, labelled=False)
    _write_run(root / "anomaly-free" / "second.csv", 10, None, labelled=False)
    files = list_files(base=tmp_path)
    assert [(f.ref, f.tag) for f in files] == [
        ("anomaly-free", "anomaly-free"),
        ("anomaly-free/second", "anomaly-free-second"),
    ]
    assert valid_subsets(files) == "anomaly-free, anomaly-free/second"


def _evaluate_folder(root: Path, out: Path, *args: str) -> tuple[str, dict]:
    stdout, stderr = StringIO(), StringIO()
    call_command(
        "evaluate", "--out", str(out), "skab", "--data-dir", str(root), *args, stdout=stdout, stderr=stderr
    )
    return stdout.getvalue(), json.loads((out / "skab.json").read_text())


def test_runs_that_cannot_be_evaluated_are_left_out_by_name_and_the_rest_is_evaluated(
    data_folder, tmp_path, capsys
):
    root = data_folder / "skab" / "data"
    _write_run(root / "other" / "1.csv", 900, 600)
    _write_run(root / "other" / "2.csv", 300, 200)  # shorter than the calibration
    _write_run(root / "other" / "4.csv", 900, 600)
    # other/4: the motor temperature never reads (NaN), so no calibration window is complete
    lines = (root / "other" / "4.csv").read_text().splitlines()
    cells = [line.split(";") for line in lines]
    for row in cells[1:]:
        row[5] = "nan"
    (root / "other" / "4.csv").write_text("\n".join(";".join(row) for row in cells) + "\n")
    _write_run(root / "other" / "5.csv", 900, 600)
    (root / "other" / "5.csv").write_text(
        (root / "other" / "5.csv").read_text().replace(";0.0;0.0\n", ";;0.0\n", 1)  # an empty label cell
    )

    table, report = _evaluate_folder(data_folder, tmp_path / "out", "--no-explanations")
    progress = capsys.readouterr().err  # the command's progress goes to sys.stderr

    left = report["summary"]["left_out"]
    assert sorted(left["leave_one_run_out"]) == ["other/2", "other/4", "other/5"]
    assert sorted(left["pooled_fleet"]) == ["other/2", "other/4", "other/5"]
    assert "300 rows, not more than the 400-point calibration period" in left["pooled_fleet"]["other/2"]
    assert (
        "no reading inside the sensor's valid range there for temperature" in left["pooled_fleet"]["other/4"]
    )
    assert "line 2" in left["pooled_fleet"]["other/5"]
    assert "WARNING the pooled fleet leaves out other/4" in progress
    assert "Runs left out, the rest evaluated:" in table
    # Everything else is evaluated: valve1/0, pump_wear/3 and other/1 in leave-one-run-out, plus the
    # anomaly-free run in the pooled fleet.
    assert report["summary"]["runs"] == 3
    fleet_runs = next(iter(report["details"]["fleet"]["settings"].values()))["per_run"]
    assert [r["run"] for r in fleet_runs] == ["anomaly-free", "valve1/0", "other/1", "pump_wear/3"]
    assert "other + pump_wear + valve1" not in table  # subsets named in the data's order
    assert "valve1 + other + pump_wear, 3 runs" in table
    assert "anomaly-free enters only the pooled fleet below" in table


def test_too_few_usable_runs_is_a_command_error_naming_each_left_out_run(data_folder, tmp_path):
    root = data_folder / "skab" / "data"
    _write_run(root / "other" / "2.csv", 300, 200)
    with pytest.raises(CommandError, match=r"got 1; other/2 left out: .*300 rows"):
        _evaluate_folder(data_folder, tmp_path / "out", "--files", "valve1/0", "other/2")


def test_a_byte_order_mark_before_the_header_is_read_as_no_part_of_it(tmp_path):
    path = tmp_path / "skab" / "data" / "other" / "1.csv"
    _write_run(path, 10, 5)
    path.write_text("\ufeff" + path.read_text(), encoding="utf-8")
    run = read_run(path)
    assert len(run) == 10 and run.anomaly is not None and run.anomaly.sum() == 5


def test_a_data_folder_without_subset_folders_is_a_command_error_naming_it(tmp_path):
    root = tmp_path / "skab" / "data"
    root.mkdir(parents=True)
    with pytest.raises(CommandError) as error:
        _evaluate_folder(tmp_path, tmp_path / "out")
    assert f"{root} holds no labelled SKAB run (no subset folder with CSV files)" in str(error.value)
    assert "needs at least two labelled runs" in str(error.value)


def test_a_folder_or_selection_holding_only_the_normal_run_is_refused_naming_what_it_holds(
    data_folder, tmp_path
):
    with pytest.raises(
        CommandError, match=r"--files anomaly-free names no labelled SKAB run \(only anomaly-free\)"
    ):
        _evaluate_folder(data_folder, tmp_path / "out", "--files", "anomaly-free")
    for folder in ("valve1", "pump_wear"):
        for path in (data_folder / "skab" / "data" / folder).glob("*.csv"):
            path.unlink()
    with pytest.raises(CommandError, match=r"holds no labelled SKAB run \(only anomaly-free\)"):
        _evaluate_folder(data_folder, tmp_path / "out")


def test_without_explanations_the_report_says_they_were_not_computed_not_zero_of_zero(data_folder, tmp_path):
    table, report = _evaluate_folder(data_folder, tmp_path / "out", "--no-explanations")
    assert "Explanations: not computed (--no-explanations)" in table
    assert "alerts' opening-window explanations pass the additivity check" not in table
    summary = report["summary"]
    assert summary["alerts"] is None and summary["all_additive"] is None
    assert report["details"]["explanations"] == []
