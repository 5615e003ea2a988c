"""Which detector a retrained anomaly candidate uses: the champion's, PCA for a champion that recorded none,
and the trainer's default by channel count when there is no champion."""

from __future__ import annotations

from types import SimpleNamespace

from models_registry.retrain import champion_detector


def test_a_retrained_candidate_keeps_the_champions_detector():
    champion = SimpleNamespace(provenance={"params": {"detector": "combined"}})
    assert champion_detector(champion) == "combined"


def test_a_champion_that_recorded_no_detector_was_pca_and_stays_pca():
    assert champion_detector(SimpleNamespace(provenance={"params": {}})) == "pca"
    assert champion_detector(SimpleNamespace(provenance=None)) == "pca"


def test_without_a_champion_the_trainer_chooses_by_channel_count():
    assert champion_detector(None) is None
