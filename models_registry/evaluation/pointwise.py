"""Point-wise detection metrics as SKAB computes them, and the window-to-point mapping of alert states.

SKAB (``core/metrics.py`` of waico/SKAB, from the TSAD library, ``metric="binary"``) pools the confusion
counts of every run and then reports

* F1 = TP / (TP + (FP + FN) / 2),
* false-alarm rate FAR = FP / (FP + TN),
* missed-alarm rate MAR = FN / (FN + TP),

FAR and MAR in percent, each rounded to 2 decimals for its leaderboard (we keep full precision and round
only for display). Every point of the evaluated part counts; nothing is ignored around the changepoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Counts:
    """Pooled point-wise confusion counts; add them up over runs with ``+``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def f1(self) -> float:
        denominator = self.tp + (self.fp + self.fn) / 2
        return self.tp / denominator if denominator else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate as a fraction (×100 for SKAB's percent)."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate as a fraction (×100 for SKAB's percent)."""
        return self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "f1": self.f1,
            "far_pct": 100 * self.far,
            "mar_pct": 100 * self.mar,
        }


def confusion(truth: np.ndarray, predicted: np.ndarray) -> Counts:
    """Confusion counts of 0/1 (or boolean) point labels against point predictions of the same length."""
    truth = np.asarray(truth).astype(bool).ravel()
    predicted = np.asarray(predicted).astype(bool).ravel()
    if truth.shape != predicted.shape:
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    return Counts(
        tp=int(np.sum(truth & predicted)),
        fp=int(np.sum(~truth & predicted)),
        fn=int(np.sum(truth & ~predicted)),
        tn=int(np.sum(~truth & ~predicted)),
    )


def pooled(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for item in counts:
        total = total + item
    return total


def points_from_windows(point_ts: np.ndarray, window_ends: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per point, the alert state the product showed at that moment: the state decided at the latest window
    ending at or before the point (causal; a point before the first window end is not flagged)."""
    window_ends = np.asarray(window_ends, dtype=np.float64)
    active = np.asarray(active, dtype=bool)
    if len(window_ends) != len(active):
        raise ValueError(f"{len(window_ends)} window ends but {len(active)} window states")
    latest = np.searchsorted(window_ends, np.asarray(point_ts, dtype=np.float64), side="right") - 1
    if len(active) == 0:
        return np.zeros(len(latest), dtype=bool)
    return np.where(latest >= 0, active[np.maximum(latest, 0)], False)
