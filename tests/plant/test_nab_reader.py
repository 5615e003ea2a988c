"""plant.datasets.nab: the pure NAB reader, on the real files (fail, never skip, when they are missing) and on
small hand-made trees for the error paths."""

from __future__ import annotations

import json
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from plant.datasets import DatasetFormatError, DatasetMissing
from plant.datasets.nab import UnknownSeries, list_categories, list_series, read_series

MACHINE = "realKnownCause/machine_temperature_system_failure.csv"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=dt_timezone.utc).timestamp()


@pytest.fixture(scope="module")
def real_base() -> Path:
    base = Path(settings.VIGIL_DATA_DIR)
    if not (base / "nab" / "data").is_dir():
        pytest.fail(f"NAB files not found under {base / 'nab'}; CI sets VIGIL_DATA_DIR=../shared/data.")
    return base


def _tree(tmp_path: Path, rows: str, windows: object | None = None) -> Path:
    folder = tmp_path / "nab" / "data" / "cat"
    folder.mkdir(parents=True)
    (folder / "s.csv").write_text(rows)
    labels = tmp_path / "nab" / "labels"
    labels.mkdir()
    if windows is None:
        windows = {"cat/s.csv": [["2020-01-01 00:10:00.000000", "2020-01-01 00:20:00.000000"]]}
    (labels / "combined_windows.json").write_text(json.dumps(windows))
    (labels / "combined_labels.json").write_text(json.dumps({"cat/s.csv": ["2020-01-01 00:15:00"]}))
    return tmp_path


GOOD = "timestamp,value\n2020-01-01 00:00:00,1.5\n2020-01-01 00:05:00,2\n2020-01-01 00:10:00,3\n"


def test_it_lists_the_seven_real_known_cause_series(real_base):
    names = list_series(base=real_base)
    assert len(names) == 7
    assert MACHINE in names
    assert all(name.startswith("realKnownCause/") and name.endswith(".csv") for name in names)


def test_it_reads_the_machine_temperature_series_with_its_four_windows_as_utc_epochs(real_base):
    series = read_series(MACHINE, base=real_base)
    assert len(series) == 22_695 == len(series.values)
    assert series.ts[0] == _epoch("2013-12-02 21:15:00")
    assert series.values[0] == pytest.approx(73.96732207)
    # NAB scores by row, so the file's one backward step (line 10151, 55 minutes) is kept in file order.
    assert np.count_nonzero(np.diff(series.ts) <= 0) == 1
    assert len(series.windows) == 4
    assert series.windows[0] == (_epoch("2013-12-10 06:25:00"), _epoch("2013-12-12 05:35:00"))
    assert len(series.anomalies) == 4
    assert all(start <= a <= end for a, (start, end) in zip(series.anomalies, series.windows, strict=True))


def test_increasing_drops_only_the_rows_that_do_not_move_time_forward(tmp_path):
    rows = "timestamp,value\n" + "".join(
        f"2020-01-01 00:{m:02d}:00,{i}\n" for i, m in enumerate([0, 5, 10, 5, 10, 15, 15, 20])
    )
    series = read_series("cat/s.csv", base=_tree(tmp_path, rows))
    assert len(series) == 8
    assert series.increasing().tolist() == [True, True, True, False, False, True, False, True]


def test_the_real_files_lose_only_their_repeated_rows_to_increasing(real_base):
    assert np.count_nonzero(~read_series(MACHINE, base=real_base).increasing()) == 12
    ec2 = read_series("realKnownCause/ec2_request_latency_system_failure.csv", base=real_base)
    assert np.count_nonzero(~ec2.increasing()) == 11


def test_it_reads_from_settings_when_no_base_is_given(real_base, settings):
    settings.VIGIL_DATA_DIR = real_base
    assert read_series(MACHINE).name == MACHINE


def test_it_reads_a_small_hand_made_series(tmp_path):
    series = read_series("cat/s.csv", base=_tree(tmp_path, GOOD))
    assert series.ts.tolist() == [_epoch("2020-01-01 00:00:00") + 300 * i for i in range(3)]
    assert series.values.tolist() == [1.5, 2.0, 3.0]
    assert series.windows == [(_epoch("2020-01-01 00:10:00"), _epoch("2020-01-01 00:20:00"))]
    assert series.anomalies == [_epoch("2020-01-01 00:15:00")]


def test_a_missing_data_dir_names_the_path(tmp_path):
    with pytest.raises(DatasetMissing, match=str(tmp_path / "nab")):
        list_series(base=tmp_path)


def test_an_unknown_series_lists_the_known_ones(tmp_path):
    base = _tree(tmp_path, GOOD)
    with pytest.raises(UnknownSeries, match=r"unknown NAB series 'cat/nope.csv'.*known series: cat/s.csv"):
        read_series("cat/nope.csv", base=base)
    with pytest.raises(UnknownSeries, match="known series"):
        read_series("../../etc/passwd", base=base)


def test_an_unknown_category_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownSeries, match=r"unknown NAB category 'nope'.*: cat"):
        list_series("nope", base=_tree(tmp_path, GOOD))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("time,value\n2020-01-01 00:00:00,1\n", "line 1: expected the header"),
        ("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,abc\n", "line 3: value 'abc' is not a"),
        ("timestamp,value\n2020-13-01 00:00:00,1\n", "line 2: timestamp '2020-13-01 00:00:00' is not"),
        ("timestamp,value\n2020-01-01 00:00:00,1,2\n", "line 2: expected 2 columns"),
        ("timestamp,value\n2020-01-01 00:00:00,nan\n", "line 2: value 'nan' is not finite"),
        ("timestamp,value\n", "no rows after the header"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path, rows, message):
    with pytest.raises(DatasetFormatError, match=message) as caught:
        read_series("cat/s.csv", base=_tree(tmp_path, rows))
    assert "s.csv" in str(caught.value)


def test_a_series_without_windows_is_a_format_error(tmp_path):
    with pytest.raises(DatasetFormatError, match="has no windows for 'cat/s.csv'"):
        read_series("cat/s.csv", base=_tree(tmp_path, GOOD, windows={}))


def test_missing_label_files_name_the_path(tmp_path):
    base = _tree(tmp_path, GOOD)
    (base / "nab" / "labels" / "combined_windows.json").unlink()
    with pytest.raises(DatasetMissing, match="combined_windows.json"):
        read_series("cat/s.csv", base=base)


def test_hidden_folders_under_data_are_no_category(tmp_path):
    base = _tree(tmp_path, GOOD)
    (base / "nab" / "data" / ".ipynb_checkpoints").mkdir()
    assert list_categories(base=base) == ["cat"]
    assert [s for c in list_categories(base=base) for s in list_series(c, base=base)] == ["cat/s.csv"]


def test_a_byte_order_mark_before_the_header_is_read_as_no_part_of_it(tmp_path):
    base = _tree(tmp_path, "\ufeff" + GOOD)
    assert len(read_series("cat/s.csv", base=base)) == 3
