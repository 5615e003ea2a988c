"""``models_registry.evaluation.selection.best_of``: the one rule IMS and SKAB choose their settings by."""

from __future__ import annotations

from models_registry.evaluation.selection import best_of


def test_it_picks_the_highest_score():
    assert best_of(["a", "b", "c"], {"a": 0.2, "b": 0.9, "c": 0.5}.get) == "b"


def test_a_tie_goes_to_the_earlier_candidate():
    assert best_of(["a", "b", "c"], {"a": 0.2, "b": 0.9, "c": 0.9}.get) == "b"
    assert best_of(range(4), lambda i: 1.0) == 0


def test_tuples_rank_on_their_first_field_then_the_next():
    scores = {"a": (1, 2, -0.3), "b": (1, 3, -0.9), "c": (0, 9, 0.0)}
    assert best_of(["a", "b", "c"], scores.get) == "b"
