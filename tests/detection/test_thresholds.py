"""One threshold rule for a version and each asset (detection.thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

from detection.thresholds import ThresholdError, ThresholdRule, asset_thresholds, tail_threshold, thresholds
from models_registry import training

RNG = np.random.default_rng(5)


def test_the_trainer_uses_the_one_rule():
    X = RNG.normal(size=(400, 4))
    for rule in ("quantile", "tail"):
        model = training.train_anomaly(X, list("abcd"), params={"open_rule": rule})
        assert model.clear_threshold <= model.open_threshold
        assert ThresholdRule.from_params(model.params).open_rule == rule


def test_the_rule_gives_the_quantile_or_the_tail_and_a_clear_threshold_never_above_open():
    scores = RNG.exponential(1.0, 5000)
    open_q, clear_q = thresholds(scores, ThresholdRule())
    assert open_q == pytest.approx(np.quantile(scores, 0.995))
    assert clear_q == pytest.approx(np.quantile(scores, 0.97))
    open_t, _ = thresholds(scores, ThresholdRule(open_rule="tail"))
    assert open_t == tail_threshold(scores, 0.9, 1e-4)
    with pytest.raises(ThresholdError, match="open_rule must be one of"):
        ThresholdRule(open_rule="max")


def test_an_asset_with_too_few_independent_windows_keeps_the_version_thresholds():
    rule = ThresholdRule(open_rule="tail")
    assert rule.min_windows() == 100
    assert rule.min_windows(overlap=6.0) == 600
    scores = RNG.exponential(0.2, 599)
    kept = asset_thresholds(scores, rule, (3.0, 1.5), overlap=6.0)
    assert (kept.open_threshold, kept.clear_threshold, kept.source) == (3.0, 1.5, "version")
    own = asset_thresholds(RNG.exponential(0.2, 600), rule, (3.0, 1.5), overlap=6.0)
    assert own.source == "asset" and own.open_threshold < 3.0
    assert own.to_json()["count"] == 600


def test_a_noisy_assets_scores_raise_only_its_own_thresholds():
    rule = ThresholdRule(open_rule="tail")
    quiet = asset_thresholds(RNG.exponential(0.5, 1000), rule, (9.0, 4.0))
    noisy = asset_thresholds(RNG.exponential(3.0, 1000), rule, (9.0, 4.0))
    assert quiet.open_threshold < 9.0 < noisy.open_threshold
