"""NAB's scoring rules (Numenta Anomaly Benchmark v1.1, ``nab/sweeper.py`` and ``nab/runner.py``) in NumPy.

Pure functions, no ``nab`` package. Everything is counted in ROWS of the data file, in file order, as NAB does:

* probation: the first ``min(floor(0.15 * n_rows), 0.15 * 5000)`` rows (at most 750) are not scored at all —
  neither detections nor the window rows in them;
* a window spans rows ``[L, R]`` (L: first row at its start time, R: first row at its end time; NAB's labels
  always use row timestamps), width ``w = R - L + 1``;
* ``scaled_sigmoid(y) = 2 / (1 + exp(5 y)) - 1`` (and exactly -1 for ``y >= 3``);
* a detection at row i inside a window scores ``A_tp * scaled_sigmoid(-(R - i + 1) / w) / scaled_sigmoid(-1)``
  (1.0·A_tp at the window's first row, just above 0 at its last); only the best — i.e. the FIRST — detection
  of a window counts; a window (with at least one scorable row) without detection scores ``-A_fn``;
* a detection at row i outside every window is a false positive: ``A_fp * scaled_sigmoid((i - R_p) / (w_p - 1))``
  with ``R_p, w_p`` the closest PRECEDING window (so an FP right after a window costs almost nothing and one
  three window-widths later the full ``-A_fp``); with no preceding window it costs ``-A_fp``;
* raw score of a file = Σ FP scores + Σ window scores; a corpus's raw score is the sum over its files;
* normalised score = ``100 (raw - null) / (perfect - null)``, null = the raw score of no detections at all,
  perfect = (number of windows in the corpus's label file) × A_tp.

One divergence, documented: NAB divides by zero for an FP after a one-row window; here that FP costs -A_fp.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000  # NAB: probation is at most PROBATION_PERCENT * 5000 rows
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class Profile:
    """One NAB application profile: the weights of its cost matrix (``config/profiles.json``)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass
class FileScore:
    """How one file scored under one profile.

    ``window_hits[k]`` is the row of the first counted detection in window k (None: missed; windows with no
    scorable row are left out of ``window_hits`` and of the null score); ``fp_rows`` are the detections
    outside every window.
    """

    raw: float
    null: float
    tp_score: float
    fp_score: float
    fn_score: float
    window_hits: list[int | None] = field(default_factory=list)
    fp_rows: list[int] = field(default_factory=list)
    tp_detections: int = 0

    @property
    def windows_hit(self) -> int:
        return sum(hit is not None for hit in self.window_hits)

    @property
    def windows_missed(self) -> int:
        return sum(hit is None for hit in self.window_hits)


def load_profiles(path: Path | str) -> dict[str, Profile]:
    """The profiles of NAB's ``config/profiles.json``, keyed by name, in PROFILE_NAMES order when present."""
    document = json.loads(Path(path).read_text())
    profiles = {}
    for name, body in document.items():
        matrix = body["CostMatrix"]
        profiles[name] = Profile(
            name, float(matrix["tpWeight"]), float(matrix["fpWeight"]), float(matrix["fnWeight"])
        )
    ordered = {name: profiles[name] for name in PROFILE_NAMES if name in profiles}
    ordered.update({k: v for k, v in profiles.items() if k not in ordered})
    return ordered


def scaled_sigmoid(y: float | np.ndarray) -> np.ndarray:
    """NAB's scoring curve: 2·sigmoid(-5y) - 1, i.e. ~0.987 at y = -1, 0 at y = 0, and -1 for y >= 3."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        curve = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0))) - 1.0
    return np.where(y >= 3.0, -1.0, curve)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_rows(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that NAB does not score: min(floor(percent · n), percent · 5000)."""
    return int(math.ceil(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS)))


def window_spans(ts: np.ndarray, windows: Sequence[tuple[float, float]]) -> list[tuple[int, int] | None]:
    """Row span [L, R] of each window (None when no row falls in it), found as NAB finds them.

    NAB enters a window at the row whose time equals its start and leaves it at the first row whose time
    equals its end. Its labels always use row times; for other limits L is the first row at or after the
    start and R the last row, from L on, before time passes the end.
    """
    ts = np.asarray(ts, dtype=np.float64)
    spans: list[tuple[int, int] | None] = []
    for start, end in windows:
        exact = np.flatnonzero(ts == start)
        after = np.flatnonzero(ts >= start)
        if len(exact):
            left = int(exact[0])
        elif len(after):
            left = int(after[0])
        else:
            spans.append(None)
            continue
        exact_end = np.flatnonzero(ts[left:] == end)
        if len(exact_end):
            right = left + int(exact_end[0])
        else:
            beyond = np.flatnonzero(ts[left:] > end)
            right = left + (int(beyond[0]) if len(beyond) else len(ts) - left) - 1
        spans.append((left, right) if right >= left else None)
    return spans


def row_scores(
    n_rows: int, spans: Sequence[tuple[int, int] | None], profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """NAB's ``sweepScore`` of every row (what a detection there would score) and the window index of every
    row (-1 outside windows)."""
    rows = np.arange(n_rows)
    weight = np.empty(n_rows, dtype=np.float64)
    window_of = np.full(n_rows, -1, dtype=np.int64)
    for k, span in enumerate(spans):
        if span is not None:
            window_of[span[0] : span[1] + 1] = k
    inside = window_of >= 0
    if inside.any():
        lefts = np.array([s[0] if s else 0 for s in spans])
        rights = np.array([s[1] if s else 0 for s in spans])
        k = window_of[inside]
        width = (rights[k] - lefts[k] + 1).astype(np.float64)
        weight[inside] = scaled_sigmoid(-(rights[k] - rows[inside] + 1) / width) * profile.tp_weight / MAX_TP
    # Outside: distance to the closest preceding window's last row, in units of that window's width - 1.
    ordered = sorted((s for s in spans if s is not None), key=lambda s: s[1])
    ends = np.array([s[1] for s in ordered], dtype=np.int64)
    widths = np.array([s[1] - s[0] + 1 for s in ordered], dtype=np.float64)
    outside = rows[~inside]
    prev = np.searchsorted(ends, outside, side="left") - 1  # last window with R < i
    position = np.full(len(outside), 3.0)
    has_prev = prev >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        span = widths[prev[has_prev]] - 1.0
        distance = (outside[has_prev] - ends[prev[has_prev]]).astype(np.float64)
        position[has_prev] = np.where(span > 0, distance / np.where(span > 0, span, 1.0), 3.0)
    weight[~inside] = scaled_sigmoid(position) * profile.fp_weight
    return weight, window_of


def score_file(
    ts: np.ndarray,
    detected: np.ndarray,
    windows: Sequence[tuple[float, float]],
    profile: Profile,
    *,
    probation_percent: float = PROBATION_PERCENT,
) -> FileScore:
    """Score boolean per-row detections of one file (see the module docstring for every rule)."""
    ts = np.asarray(ts, dtype=np.float64)
    detected = np.asarray(detected, dtype=bool)
    if detected.shape != ts.shape:
        raise ValueError(f"detected has shape {detected.shape}, the file has {ts.shape} rows")
    n = len(ts)
    spans = window_spans(ts, windows)
    weight, window_of = row_scores(n, spans, profile)
    scorable = np.arange(n) >= probation_rows(n, probation_percent)
    hits = detected & scorable

    fp_rows = np.flatnonzero(hits & (window_of < 0))
    fp_score = float(weight[fp_rows].sum())
    tp_score = fn_score = 0.0
    window_hits: list[int | None] = []
    for k, span in enumerate(spans):
        if span is None or not scorable[span[0] : span[1] + 1].any():
            continue  # wholly in probation (or empty): NAB never scores it
        in_window = np.flatnonzero(hits[span[0] : span[1] + 1])
        if len(in_window):
            first = span[0] + int(in_window[0])
            window_hits.append(first)
            tp_score += max(float(weight[first]), -profile.fn_weight)
        else:
            window_hits.append(None)
            fn_score -= profile.fn_weight
    null = -profile.fn_weight * len(window_hits)
    return FileScore(
        raw=tp_score + fp_score + fn_score,
        null=null,
        tp_score=tp_score,
        fp_score=fp_score,
        fn_score=fn_score,
        window_hits=window_hits,
        fp_rows=fp_rows.tolist(),
        tp_detections=int(np.count_nonzero(hits & (window_of >= 0))),
    )


def perfect_score(n_windows: int, profile: Profile) -> float:
    """The perfect detector's raw score: one detection at the first row of every labelled window."""
    return n_windows * profile.tp_weight


def normalised(raw: float, null: float, perfect: float) -> float:
    """NAB's final score: 100 · (raw - null) / (perfect - null); null scores 0 and perfect 100."""
    if perfect == null:
        raise ValueError("perfect and null scores are equal: the corpus has no scorable window")
    return 100.0 * (raw - null) / (perfect - null)


@dataclass
class CorpusScore:
    """A corpus scored the way NAB's runner pools it: raw and null are sums over every file — a file without
    windows adds its false positives to raw and nothing to null — and perfect counts every window of every
    file (NAB: the number of windows in the label file × A_tp)."""

    files: dict[str, FileScore]
    windows: int  # windows in the label file for these files (scorable or not)
    raw: float
    null: float
    perfect: float

    @property
    def score(self) -> float | None:
        """The normalised score; None when the corpus has no window (nothing to normalise against)."""
        return None if self.perfect == self.null else normalised(self.raw, self.null, self.perfect)

    @property
    def false_positives(self) -> int:
        return sum(len(f.fp_rows) for f in self.files.values())


def score_corpus(
    files: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[tuple[float, float]]]],
    profile: Profile,
    *,
    probation_percent: float = PROBATION_PERCENT,
) -> CorpusScore:
    """Score every file (name -> (row times, boolean detections, windows)) and pool them as NAB does."""
    scored = {
        name: score_file(ts, detected, windows, profile, probation_percent=probation_percent)
        for name, (ts, detected, windows) in files.items()
    }
    n_windows = sum(len(windows) for _, _, windows in files.values())
    return CorpusScore(
        files=scored,
        windows=n_windows,
        raw=sum(f.raw for f in scored.values()),
        null=sum(f.null for f in scored.values()),
        perfect=perfect_score(n_windows, profile),
    )


def category_of(name: str) -> str:
    """``"realKnownCause/x.csv"`` -> ``"realKnownCause"``."""
    return name.split("/", 1)[0]


def by_category(
    corpus: CorpusScore, windows: Mapping[str, int], profile: Profile
) -> dict[str, dict[str, float | int | None]]:
    """Each category's own pooled raw / null / perfect / normalised score (None without windows) and false
    positives; ``windows`` maps file name -> its number of windows in the label file."""
    out: dict[str, dict[str, float | int | None]] = {}
    for category in sorted({category_of(name) for name in corpus.files}):
        mine = {n: f for n, f in corpus.files.items() if category_of(n) == category}
        part = CorpusScore(
            files=mine,
            windows=sum(windows[n] for n in mine),
            raw=sum(f.raw for f in mine.values()),
            null=sum(f.null for f in mine.values()),
            perfect=perfect_score(sum(windows[n] for n in mine), profile),
        )
        out[category] = {
            "files": len(mine),
            "windows": part.windows,
            "raw": part.raw,
            "null": part.null,
            "perfect": part.perfect,
            "score": part.score,
            "false_positives": part.false_positives,
            "windows_hit": sum(f.windows_hit for f in mine.values()),
        }
    return out
