"""plant.datasets.cmapss: the pure C-MAPSS reader, on the real files (fail, never skip, when they are missing)
and on small hand-made trees for the error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from plant.datasets import DatasetFormatError, DatasetMissing, UnknownSubset, cmapss_loader
from plant.datasets.cmapss import COLUMNS, SUBSETS, available_subsets, incomplete_subsets, read_subset


@pytest.fixture(scope="module")
def real_base() -> Path:
    base = Path(settings.VIGIL_DATA_DIR)
    if not (base / "cmapss" / "train_FD001.txt").is_file():
        pytest.fail(
            f"C-MAPSS files not found under {base / 'cmapss'}; CI sets VIGIL_DATA_DIR=../shared/data."
        )
    return base


def _row(unit: int, cycle: int, first: float = 0.5) -> str:
    return " ".join([str(unit), str(cycle), str(first), *(["1.0"] * 23)]) + "  \n"


def _tree(tmp_path: Path, train: str, test: str, rul: str) -> Path:
    folder = tmp_path / "cmapss"
    folder.mkdir()
    (folder / "train_FD001.txt").write_text(train)
    (folder / "test_FD001.txt").write_text(test)
    (folder / "RUL_FD001.txt").write_text(rul)
    return tmp_path


def test_it_reads_fd001_with_the_card_counts_and_the_first_row_values(real_base):
    subset = read_subset("FD001", base=real_base)
    assert subset.name == "FD001"
    assert subset.columns == list(COLUMNS) and len(COLUMNS) == 24
    assert len(subset.train) == 100 and len(subset.test) == 100
    assert sum(len(rows) for rows in subset.train.values()) == 20_631
    assert sum(len(rows) for rows in subset.test.values()) == 13_096
    first = subset.train[1][0]
    assert first.shape == (24,)
    assert first[0] == pytest.approx(-0.0007) and first[3] == pytest.approx(518.67)
    assert first[-1] == pytest.approx(23.4190)
    assert subset.test_rul[1] == 112 and subset.test_rul[2] == 98
    assert min(subset.test_rul.values()) == 7 and max(subset.test_rul.values()) == 145
    assert subset.train_rul(1)[-1] == 0 and subset.train_rul(1)[0] == len(subset.train[1]) - 1


def test_it_reads_fd002_with_259_test_units(real_base):
    subset = read_subset("fd002", base=real_base)
    assert len(subset.train) == 260 and len(subset.test) == 259
    assert set(subset.test_rul) == set(subset.test)
    assert min(len(rows) for rows in subset.train.values()) == 128
    assert SUBSETS == ("FD001", "FD002", "FD003")


def test_the_test_rul_series_counts_down_to_the_true_rul_after_the_last_cycle(tmp_path):
    base = _tree(tmp_path, _row(1, 1) + _row(1, 2), _row(1, 1) + _row(1, 2) + _row(1, 3), "10\n")
    subset = read_subset("FD001", base=base)
    assert subset.test_rul_series(1).tolist() == [12.0, 11.0, 10.0]
    assert subset.train_rul(1).tolist() == [1.0, 0.0]


def test_it_names_the_missing_directory(tmp_path):
    with pytest.raises(DatasetMissing, match=str(tmp_path / "cmapss")):
        read_subset("FD001", base=tmp_path)


def test_it_rejects_an_unknown_subset(tmp_path):
    with pytest.raises(DatasetMissing, match="FD009"):
        read_subset("FD009", base=tmp_path)


def test_it_names_the_file_and_line_of_a_row_with_too_few_columns(tmp_path):
    base = _tree(tmp_path, _row(1, 1) + "1 2 3\n", _row(1, 1), "5\n")
    with pytest.raises(DatasetFormatError, match=r"train_FD001\.txt, line 2: 3 columns"):
        read_subset("FD001", base=base)


def test_it_names_the_file_and_line_of_a_non_numeric_value(tmp_path):
    base = _tree(tmp_path, _row(1, 1), _row(1, 1) + _row(1, 2).replace("0.5", "abc"), "5\n")
    with pytest.raises(DatasetFormatError, match=r"test_FD001\.txt, line 2"):
        read_subset("FD001", base=base)


def test_it_rejects_cycles_out_of_order(tmp_path):
    base = _tree(tmp_path, _row(1, 1) + _row(1, 3), _row(1, 1), "5\n")
    with pytest.raises(DatasetFormatError, match="line 2: unit 1 cycle 3 where cycle 2"):
        read_subset("FD001", base=base)


def test_it_rejects_a_rul_file_that_does_not_match_the_test_units(tmp_path):
    base = _tree(tmp_path, _row(1, 1), _row(1, 1) + _row(2, 1), "5\n")
    with pytest.raises(DatasetFormatError, match="1 RUL values for the 2 units"):
        read_subset("FD001", base=base)


def test_it_rejects_a_non_integer_rul(tmp_path):
    base = _tree(tmp_path, _row(1, 1), _row(1, 1), "5.5\n")
    with pytest.raises(DatasetFormatError, match=r"RUL_FD001\.txt, line 1"):
        read_subset("FD001", base=base)


def test_units_come_back_as_float_arrays_in_cycle_order(tmp_path):
    base = _tree(tmp_path, _row(2, 1, 0.1) + _row(1, 1, 0.2) + _row(2, 2, 0.3), _row(1, 1), "5\n")
    subset = read_subset("FD001", base=base)
    assert list(subset.train) == [1, 2]
    assert subset.train[2][:, 0].tolist() == [0.1, 0.3]
    assert subset.train[2].dtype == np.float64


def test_it_lists_every_subset_the_folder_holds_with_all_three_files(tmp_path):
    base = _tree(tmp_path, _row(1, 1), _row(1, 1), "5\n")
    folder = tmp_path / "cmapss"
    for name in ("train_FD007.txt", "test_FD007.txt"):
        (folder / name).write_text(_row(1, 1) + _row(1, 2))
    (folder / "RUL_FD007.txt").write_text("9\n")
    (folder / "train_FD008.txt").write_text(_row(1, 1))  # no test or RUL file: not a subset
    (folder / "train_FDX.txt").write_text(_row(1, 1))
    assert available_subsets(base) == ("FD001", "FD007")
    subset = read_subset("fd007", base=base)
    assert subset.name == "FD007" and len(subset.train[1]) == 2 and subset.test_rul == {1: 9}
    with pytest.raises(DatasetMissing, match=r"test_FD008\.txt"):
        read_subset("FD008", base=base)
    with pytest.raises(DatasetMissing, match="named FD001"):
        read_subset("FD1", base=base)


def test_a_folder_without_subsets_is_named_in_the_error(tmp_path):
    (tmp_path / "cmapss").mkdir()
    with pytest.raises(DatasetMissing, match=r"holds no C-MAPSS subset"):
        available_subsets(tmp_path)
    with pytest.raises(DatasetMissing, match=str(tmp_path / "elsewhere" / "cmapss")):
        available_subsets(tmp_path / "elsewhere")


def test_the_real_folder_lists_the_subsets_the_card_describes_as_staged(real_base):
    names = available_subsets(real_base)
    assert {"FD001", "FD002", "FD003"} <= set(names)
    assert all((real_base / "cmapss" / f"RUL_{name}.txt").is_file() for name in names)


def test_a_subset_with_some_of_its_files_is_listed_with_the_files_it_lacks(tmp_path):
    folder = tmp_path / "cmapss"
    folder.mkdir()
    (folder / "train_FD004.txt").write_text(_row(1, 1))
    (folder / "test_FD004.txt").write_text(_row(1, 1))
    (folder / "RUL_FD005.txt").write_text("5\n")
    assert incomplete_subsets(tmp_path) == {
        "FD004": ["RUL_FD004.txt"],
        "FD005": ["train_FD005.txt", "test_FD005.txt"],
    }
    # With no complete subset, the error says what each partial one lacks, not only "no subset".
    with pytest.raises(
        DatasetMissing, match=r"no C-MAPSS subset .*: FD004 lacks RUL_FD004\.txt; FD005 lacks"
    ):
        available_subsets(tmp_path)
    (folder / "RUL_FD004.txt").write_text("5\n")
    assert available_subsets(tmp_path) == ("FD004",)
    assert incomplete_subsets(tmp_path) == {"FD005": ["train_FD005.txt", "test_FD005.txt"]}


def test_the_loader_takes_any_subset_the_folder_holds_fd004_with_its_two_fault_modes(tmp_path):
    folder = tmp_path / "cmapss"
    folder.mkdir()
    (folder / "train_FD004.txt").write_text("".join(_row(1, c) for c in range(1, 41)))
    (folder / "test_FD004.txt").write_text(_row(1, 1) + _row(1, 2) + _row(2, 1))
    (folder / "RUL_FD004.txt").write_text("50\n7\n")
    units = cmapss_loader.read_units(["FD004/train/1"], base=tmp_path)
    assert [u.tag for u in units] == ["fd004-train-1"]
    assert units[0].labels[0].fault_type == "hpc_or_fan_degradation"  # the card: FD004 HPC or fan
    # Without a selection: every subset the folder holds (here FD004 only), train and test.
    assert [u.tag for u in cmapss_loader.read_units(base=tmp_path)] == [
        "fd004-train-1",
        "fd004-test-1",
        "fd004-test-2",
    ]
    with pytest.raises(UnknownSubset, match=r"valid subsets: FD004 \(or e\.g\. FD004/train"):
        cmapss_loader.read_units(["FD001"], base=tmp_path)
