"""How an evaluation chooses among its candidate settings: the best score, ties to the earlier candidate.

IMS (leave one test out), SKAB (leave one run out, leave one fault type out, best in-sample) list their
candidates with the product's setting first, so a tie keeps the setting closest to the product's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def best_of(candidates: Sequence[T], score: Callable[[T], Any]) -> T:
    """The candidate with the highest ``score`` (any comparable value, e.g. a tuple ranked in order); a tie
    goes to the earlier candidate."""
    return candidates[max(range(len(candidates)), key=lambda i: (score(candidates[i]), -i))]
