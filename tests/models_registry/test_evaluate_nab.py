"""``manage.py evaluate nab``: NAB's scoring rules on hand-made cases with hand-computed values, the scorer against
NAB's own files, and the production path end to end on one real series (fail, never skip, without the data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from models_registry.evaluation import nab_scoring
from models_registry.evaluation.nab import normalisation_check, score_series
from models_registry.evaluation.nab_scoring import (
    Profile,
    normalised,
    probation_rows,
    score_file,
    window_spans,
)
from plant.datasets.nab import read_series

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FN = Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
EC2 = "ec2_request_latency_system_failure.csv"


def _tanh_curve(y: float) -> float:
    # NAB's 2·sigmoid(-5y) - 1 written independently of the implementation: it equals tanh(-5y/2).
    return math.tanh(-2.5 * y)


def _file(
    n: int = 40, window_rows: tuple[int, int] = (10, 14)
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    ts = np.arange(n, dtype=float) * 60.0 + 1_400_000_000.0
    return ts, [(ts[window_rows[0]], ts[window_rows[1]])]


def _score(rows: list[int], profile: Profile = STANDARD, **kwargs) -> nab_scoring.FileScore:
    ts, windows = _file(**kwargs)
    detected = np.zeros(len(ts), dtype=bool)
    detected[rows] = True
    return score_file(ts, detected, windows, profile, probation_percent=0.0)


@pytest.fixture(scope="module")
def nab_dir() -> Path:
    path = Path(settings.VIGIL_DATA_DIR) / "nab"
    if not (path / "data").is_dir():
        pytest.fail(f"NAB files not found under {path}; CI sets VIGIL_DATA_DIR=../shared/data.")
    return path


def test_a_detection_at_the_window_start_earns_the_full_true_positive_weight():
    score = _score([10])
    assert score.raw == pytest.approx(1.0, abs=1e-12)
    assert score.window_hits == [10]


def test_a_detection_at_the_window_end_earns_little():
    # Window of 5 rows: the last row sits at -(14 - 14 + 1) / 5 = -0.2, scaled so the first row earns 1.
    assert _score([14]).raw == pytest.approx(math.tanh(0.5) / math.tanh(2.5), abs=1e-12)  # 0.4684


def test_only_the_first_detection_in_a_window_counts():
    assert _score([12, 13, 14]).raw == pytest.approx(_tanh_curve(-3 / 5) / _tanh_curve(-1.0), abs=1e-12)
    assert _score([12, 13, 14]).tp_detections == 3


def test_a_false_positive_before_any_window_costs_the_full_fp_weight_and_the_missed_window_costs_fn():
    score = _score([5])
    assert score.fp_score == pytest.approx(-0.11, abs=1e-12)
    assert score.fn_score == -1.0
    assert score.raw == pytest.approx(-1.11, abs=1e-12)
    assert score.windows_missed == 1


def test_a_false_positive_after_a_window_is_weighted_by_its_distance_to_that_window():
    # Two rows after a 5-row window: (16 - 14) / (5 - 1) = 0.5 window-widths -> 0.11 · tanh(-1.25).
    assert _score([16]).fp_score == pytest.approx(0.11 * math.tanh(-1.25), abs=1e-12)  # -0.0934
    # Right after the window it costs almost nothing; three widths later (row 26) the full weight.
    assert _score([15]).fp_score == pytest.approx(0.11 * math.tanh(-2.5 * 0.25), abs=1e-12)
    assert _score([26]).fp_score == -0.11
    assert _score([10, 16]).raw == pytest.approx(1.0 + 0.11 * math.tanh(-1.25), abs=1e-12)


def test_the_fn_weight_of_the_profile_prices_a_missed_window():
    assert _score([], profile=LOW_FN).raw == -2.0
    assert _score([], profile=LOW_FN).null == -2.0


def test_probation_rows_follow_nabs_rule_of_fifteen_percent_capped_at_750():
    assert probation_rows(100) == 15
    assert probation_rows(1882) == 282
    assert probation_rows(4032) == 604
    assert probation_rows(22_695) == 750


def test_detections_and_windows_inside_the_probation_are_not_scored():
    ts = np.arange(100, dtype=float) * 300.0
    windows = [(ts[2], ts[6]), (ts[12], ts[20]), (ts[60], ts[64])]  # probation = rows 0..14
    detected = np.zeros(100, dtype=bool)
    detected[[3, 13, 16]] = True  # 3 and 13 fall in the probation; 16 is the first counted detection
    score = score_file(ts, detected, windows, STANDARD)
    assert score.window_hits == [16, None]  # the first window is wholly in probation: left out
    expected_tp = _tanh_curve(-(20 - 16 + 1) / 9) / _tanh_curve(-1.0)
    assert score.raw == pytest.approx(expected_tp - 1.0, abs=1e-12)
    assert score.null == -2.0
    assert score.fp_rows == []


def test_window_spans_use_the_rows_at_the_window_limits():
    ts = np.array([0.0, 60, 120, 180, 240, 300])
    assert window_spans(ts, [(60.0, 180.0)]) == [(1, 3)]
    assert window_spans(ts, [(50.0, 200.0)]) == [(1, 3)]  # limits between rows snap inward
    assert window_spans(ts, [(400.0, 500.0)]) == [None]


def test_normalisation_puts_null_at_zero_and_perfect_at_a_hundred():
    assert normalised(-1.0, -1.0, 1.0) == 0.0
    assert normalised(1.0, -1.0, 1.0) == 100.0
    assert normalised(-1.11, -1.0, 1.0) == pytest.approx(-5.5, abs=1e-12)
    assert nab_scoring.perfect_score(19, STANDARD) == 19.0
    with pytest.raises(ValueError, match="no scorable window"):
        normalised(0.0, 0.0, 0.0)


def test_nabs_published_raw_scores_normalise_to_its_published_final_scores(nab_dir):
    profiles = nab_scoring.load_profiles(nab_dir / "config" / "profiles.json")
    assert [p.fp_weight for p in profiles.values()] == [0.11, 0.22, 0.11]
    final = json.loads((nab_dir / "results" / "final_results.json").read_text())
    thresholds = json.loads((nab_dir / "config" / "thresholds.json").read_text())
    check = normalisation_check(final, thresholds, profiles)
    # ARTime, CAD OSE, Numenta, Random Cut Forest, ... agree exactly; five detectors' thresholds.json
    # entries are not the runs behind final_results.json (e.g. htmjava's repeat numentaTM's).
    assert check["agree"] == 27 and check["compared"] == 42
    assert (
        "ARTime" not in check["disagree_detectors"] and "randomCutForest" not in check["disagree_detectors"]
    )


def test_the_null_detector_scores_minus_one_per_window_on_the_real_machine_temperature_file(nab_dir):
    series = read_series("realKnownCause/machine_temperature_system_failure.csv", base=nab_dir.parent)
    nothing = np.zeros(len(series), dtype=bool)
    assert score_file(series.ts, nothing, series.windows, STANDARD).raw == -4.0  # the card's null raw score
    assert score_file(series.ts, nothing, series.windows, LOW_FN).raw == -8.0
    first = np.zeros(len(series), dtype=bool)
    for left, _ in window_spans(series.ts, series.windows):
        first[left] = True
    assert score_file(series.ts, first, series.windows, STANDARD).raw == pytest.approx(4.0, abs=1e-12)


def test_evaluate_nab_on_one_series_scores_well_above_the_null_detector(nab_dir, tmp_path, capsys):
    call_command("evaluate", "--out", str(tmp_path), "nab", "--series", EC2)
    document = json.loads((tmp_path / "nab.json").read_text())
    summary = document["summary"]
    assert summary["files"] == 1 and summary["windows"] == 3
    assert summary["vigil_standard"] > 30.0  # null = 0, perfect = 100
    assert summary["windows_hit"] >= 2
    vigil = [row for row in document["rows"] if row["source"] == "vigil"]
    published = {row["detector"]: row for row in document["rows"] if row["source"] == "published"}
    assert len(vigil) == 4
    assert "episodes rule" in vigil[0]["detector"] and "tail rule" in vigil[1]["detector"]
    assert "default rule" in vigil[2]["detector"]
    assert summary["vigil_tail_standard"] > 30.0
    assert summary["vigil_episodes_standard"] > 30.0
    assert published["ARTime"]["standard"] == pytest.approx(74.85377223215792)
    details = document["details"]["files"][f"realKnownCause/{EC2}"]
    assert details["probation_rows"] == 604
    assert details["detections"] == len(details["detection_times"]) > 0
    assert len(details["windows"]) == 3
    # The tail rule only raises the open threshold, so it cannot raise more alarms than the default rule.
    assert details["tail_open_threshold"] >= details["open_threshold"]
    assert details["tail_false_positives"] <= details["false_positives"]
    # The episodes rule's threshold is never below the hold-out maximum, hence never below the quantile's.
    assert details["episodes_open_threshold"] >= details["open_threshold"]
    assert details["episodes_false_positives"] <= details["false_positives"]
    assert "Vigil PCA" in capsys.readouterr().out
    assert (tmp_path / "nab.md").read_text().startswith("### nab")


def test_evaluate_nab_names_an_unknown_series_or_category(nab_dir, tmp_path):
    with pytest.raises(CommandError, match=r"unknown NAB series 'nope.csv'.*machine_temperature"):
        call_command("evaluate", "--out", str(tmp_path), "nab", "--series", "nope.csv")
    with pytest.raises(CommandError, match=r"unknown NAB category 'nope'.*realKnownCause"):
        call_command("evaluate", "--out", str(tmp_path), "nab", "--category", "nope")


def test_evaluate_nab_with_the_adaptive_location_gates_each_rule_on_its_own_thresholds(nab_dir, tmp_path):
    call_command(
        "evaluate", "--out", str(tmp_path), "nab", "--series", EC2, "--normalisation", "per_asset_adaptive"
    )
    document = json.loads((tmp_path / "nab.json").read_text())
    assert document["summary"]["normalisation"] == "per_asset_adaptive"
    vigil = [row for row in document["rows"] if row["source"] == "vigil"]
    assert all("per_asset_adaptive" in row["detector"] for row in vigil)
    assert document["summary"]["vigil_tail_standard"] > 0.0  # above the null detector
    run = score_series(read_series(f"realKnownCause/{EC2}"), normalisation="per_asset_adaptive")
    # The location each rule's alerts freeze differs, so the two rules score different series.
    assert run.tail_scores is not None and len(run.tail_scores) == len(run.scores)
    assert run.rule_scores("tail") is run.tail_scores and run.rule_scores("quantile") is run.scores
    assert run.rule_scores("episodes") is run.episodes_scores and len(run.episodes_scores) == len(run.scores)
