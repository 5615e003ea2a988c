"""``evaluate nab --category all``: the pooled corpus scored as NAB's runner pools it, on a synthetic
mini-corpus with a category whose file has no anomalies (no windows): its false positives count."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from models_registry.evaluation import nab_scoring
from models_registry.evaluation.nab_scoring import Profile, score_corpus

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
START = datetime(2015, 1, 1)


def _ts(n: int) -> np.ndarray:
    return np.arange(n, dtype=float) * 300.0 + 1_420_070_400.0


def test_a_file_without_windows_adds_its_false_positives_to_raw_and_nothing_to_null_or_perfect():
    ts = _ts(100)
    with_window = np.zeros(100, dtype=bool)
    with_window[50] = True  # the first row of its window
    quiet = np.zeros(100, dtype=bool)
    quiet[[60, 80]] = True  # two false positives in a file with no anomalies
    files = {
        "catA/a.csv": (ts, with_window, [(ts[50], ts[59])]),
        "catB/b.csv": (ts, quiet, []),
    }
    pooled = score_corpus(files, STANDARD, probation_percent=0.0)
    alone = score_corpus({"catA/a.csv": files["catA/a.csv"]}, STANDARD, probation_percent=0.0)
    assert pooled.windows == 1
    assert pooled.perfect == alone.perfect == 1.0
    assert pooled.null == alone.null == -1.0
    assert pooled.raw == pytest.approx(alone.raw - 2 * 0.11)  # each FP with no preceding window: -A_fp
    assert pooled.score == pytest.approx(100 * (alone.raw - 0.22 + 1.0) / 2.0)
    assert pooled.score < alone.score == pytest.approx(100.0)
    categories = nab_scoring.by_category(pooled, {"catA/a.csv": 1, "catB/b.csv": 0}, STANDARD)
    assert categories["catB"]["score"] is None and categories["catB"]["false_positives"] == 2
    assert categories["catA"]["score"] == pytest.approx(100.0)


def test_a_corpus_without_any_window_has_no_score():
    ts = _ts(10)
    assert score_corpus({"x/a.csv": (ts, np.zeros(10, dtype=bool), [])}, STANDARD).score is None


def _series(path: Path, n: int, *, spike_at: int | None) -> tuple[str, str] | None:
    rng = np.random.default_rng(n + (spike_at or 0))
    values = 50 + 5 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.5, n)
    if spike_at is not None:
        values[spike_at : spike_at + 30] += 25.0
    stamps = [(START + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(f"{s},{v:.4f}\n" for s, v in zip(stamps, values)))
    if spike_at is None:
        return None
    return stamps[spike_at - 50] + ".000000", stamps[spike_at + 50] + ".000000"


@pytest.fixture()
def mini_nab(tmp_path: Path, settings) -> Path:
    root = tmp_path / "nab"
    window = _series(root / "data" / "catA" / "a.csv", 2000, spike_at=1500)
    _series(root / "data" / "catB" / "quiet.csv", 2000, spike_at=None)
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({"catA/a.csv": [list(window)], "catB/quiet.csv": []})
    )
    (root / "labels" / "combined_labels.json").write_text(
        json.dumps({"catA/a.csv": [window[0]], "catB/quiet.csv": []})
    )
    (root / "config").mkdir()
    weights = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
    (root / "config" / "profiles.json").write_text(json.dumps({"standard": {"CostMatrix": weights}}))
    (root / "config" / "thresholds.json").write_text("{}")
    (root / "results").mkdir()
    (root / "results" / "final_results.json").write_text(json.dumps({"null": {"standard": 0.0}}))
    settings.VIGIL_DATA_DIR = str(tmp_path)
    return root


def test_category_all_scores_every_category_pooled_and_says_what_the_folder_holds(mini_nab, tmp_path):
    call_command("evaluate", "--out", str(tmp_path / "out"), "nab", "--category", "all", stdout=StringIO())
    report = json.loads((tmp_path / "out" / "nab.json").read_text())
    summary = report["summary"]
    assert summary["category"] == "all" and summary["files"] == 2 and summary["windows"] == 1
    assert summary["folder_holds"] == "catA (1 file), catB (1 file)"
    by_category = summary["by_category_standard"]["default_rule"]
    assert set(by_category) == {"catA", "catB"}
    assert by_category["catB"]["windows"] == 0 and by_category["catB"]["score"] is None
    corpus = report["details"]["corpus"]["standard"]
    # The pooled raw score is the sum of the categories' (catB's false positives included).
    assert corpus["raw"] == pytest.approx(sum(c["raw"] for c in corpus["by_category"].values()))
    assert corpus["perfect"] == 1.0
    text = " ".join(report["notes"])
    assert (
        "2 categories, 2 files / 1 windows: catA, 1 file / 1 window; catB, 1 file / 0 windows (no anomalies)"
        in text
    )
    assert "only realKnownCause" not in text


def test_category_all_needs_category_qualified_series_names(mini_nab, tmp_path):
    with pytest.raises(CommandError, match="<category>/<file>"):
        call_command("evaluate", "--out", str(tmp_path), "nab", "--category", "all", "--series", "a.csv")


def _add_labels(root: Path, windows: dict[str, list]) -> None:
    """Add series to both label files (no anomaly points: the windows' files are added without windows)."""
    for name in ("combined_windows.json", "combined_labels.json"):
        path = root / "labels" / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **windows}))


def test_files_that_cannot_be_evaluated_are_left_out_by_name_and_the_rest_is_scored(
    mini_nab, tmp_path, capsys
):
    # 20 rows: a 3-row probation holds no 12-sample window to train on
    _series(mini_nab / "data" / "catC" / "short.csv", 20, spike_at=None)
    _series(mini_nab / "data" / "catD" / "gap.csv", 2000, spike_at=None)
    gap = mini_nab / "data" / "catD" / "gap.csv"
    lines = gap.read_text().splitlines()
    lines[1000] = lines[1000].split(",")[0] + ","  # a missing value
    gap.write_text("\n".join(lines) + "\n")
    _add_labels(mini_nab, {"catC/short.csv": [], "catD/gap.csv": []})

    call_command("evaluate", "--out", str(tmp_path / "out"), "nab", "--category", "all", stdout=StringIO())

    report = json.loads((tmp_path / "out" / "nab.json").read_text())
    left = report["summary"]["left_out"]
    assert sorted(left) == ["catC/short.csv", "catD/gap.csv"]
    assert "cannot train on its probationary period (3 of 20 rows" in left["catC/short.csv"]
    assert "gap.csv line 1001: value '' is not a number" in left["catD/gap.csv"]
    assert report["summary"]["files"] == 2  # catA and catB are scored
    assert "WARNING catD/gap.csv left out" in capsys.readouterr().err
    assert any(n.startswith("Files left out, the other 2 scored: catC/short.csv (") for n in report["notes"])


def test_a_category_without_windows_reports_its_false_positives_and_no_normalised_score(mini_nab, tmp_path):
    call_command("evaluate", "--out", str(tmp_path / "out"), "nab", "--category", "catB", stdout=StringIO())

    report = json.loads((tmp_path / "out" / "nab.json").read_text())
    vigil = [r for r in report["rows"] if r["source"] == "vigil"]
    assert vigil and all(r["standard"] is None for r in vigil)
    assert all(r["corpus"] == "catB, 1 file / 0 windows (no anomalies)" for r in vigil)
    corpus = report["details"]["corpus"]["standard"]
    assert corpus["null"] == corpus["perfect"] == 0.0
    # NAB's cost of a false positive with no window before it: -A_fp each.
    assert corpus["raw"] == pytest.approx(-0.11 * corpus["false_positives"])
    assert report["notes"][0].startswith("No labelled window in the files evaluated")


def test_a_category_folder_without_series_is_a_command_error_naming_it(mini_nab, tmp_path):
    (mini_nab / "data" / "catE").mkdir()
    with pytest.raises(CommandError, match=r"no NAB series \(\*\.csv\) in .* for category 'catE'"):
        call_command("evaluate", "--out", str(tmp_path), "nab", "--category", "catE", stdout=StringIO())
