"""The peer-relative step (detection.baseline.peer_relative, Pipeline's peer step) on synthetic series with
known changes: a change every peer shows cancels, one asset's change stays; the reference is not pulled by
one failing member of a small group; groups, too few peers, and the spec checks; the explanation of a
detector fed peer-relative inputs stays additive."""

from __future__ import annotations

import numpy as np
import pytest

from detection.baseline import (
    BaselineError,
    Calibration,
    calibrate,
    peer_mode,
    peer_reference,
    peer_relative,
)
from detection.detectors import fit_detector
from detection.explain import explain
from detection.features import Windows
from detection.pipeline import Pipeline, PipelineError

STEP = 600.0
N = 400
LEVELS = (0.05, 0.08, 0.11, 0.2)  # four assets at different operating points (one type, one site)
NOISE = 0.01  # relative


def _fleet(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Calibration]]:
    """Four assets' [N, 2] features (an amplitude and a zero-level trend), calibrated on the first 100."""
    rng = np.random.default_rng(seed)
    ends = STEP * (1 + np.arange(N))
    X = {}
    for i, level in enumerate(LEVELS):
        amplitude = level * (1 + NOISE * rng.standard_normal(N))
        trend = 1e-4 * rng.standard_normal(N)
        X[f"a{i}"] = np.column_stack([amplitude, trend])
    return ends, X, {}


def _calibrated(X: dict[str, np.ndarray]) -> dict[str, Calibration]:
    return {key: calibrate(x[:100]) for key, x in X.items()}


def _run(ends, X, calibrations, **kwargs):
    return peer_relative({key: (ends, x) for key, x in X.items()}, calibrations, **kwargs)


def _plain(x: np.ndarray, c: Calibration) -> np.ndarray:
    return (x - c.location) / c.scale


def test_a_rise_every_peer_shows_in_proportion_to_its_level_cancels():
    ends, X, _ = _fleet()
    calibrations = _calibrated(X)
    for key in X:  # the whole group 40 % louder from window 200 (a faster shaft), trend +5 σ everywhere
        X[key][200:, 0] *= 1.4
        X[key][200:, 1] += 5 * calibrations[key].scale[1]
    out = _run(ends, X, calibrations)
    for key, (kept, Z) in out.items():
        assert len(kept) == N
        plain = _plain(X[key][200:], calibrations[key])
        assert np.abs(plain[:, 0]).min() > 20  # on its own, every asset is far out
        assert np.abs(np.median(Z[200:], axis=0)).max() < 1.0  # against its peers, none is
        assert np.quantile(np.abs(Z[200:]), 0.99) < 6.0


def test_one_asset_leaving_its_peers_stays_out_and_the_others_stay_in():
    ends, X, _ = _fleet(1)
    calibrations = _calibrated(X)
    X["a2"][250:, 0] *= 1.15  # a 15 % rise of one asset: ~15 σ of its own noise
    out = _run(ends, X, calibrations)
    Z = out["a2"][1]
    assert np.median(Z[250:, 0]) > 10
    for key in ("a0", "a1", "a3"):
        assert abs(np.median(out[key][1][250:, 0])) < 1.0
    # Before the change the step reads like the plain robust step: noise of a few units at most.
    assert np.quantile(np.abs(Z[:250]), 0.99) < 6.0


def test_one_failing_member_of_four_does_not_pull_the_reference():
    rows = np.array([[0.0], [0.1], [-0.1], [5.0]])  # three healthy assets and one failing far above
    assert peer_reference(rows)[0] == pytest.approx(0.0)  # the median of the three healthy ones
    assert np.median(rows) == pytest.approx(0.05)  # the plain median: half way to the second largest
    three = np.array([[0.0, 1.0], [0.2, 2.0], [9.0, 2.2]])
    # Of three: the mean of the two nearer ones (the plain median would be the larger healthy one).
    assert peer_reference(three).tolist() == pytest.approx([0.1, 2.1])


def test_only_assets_of_one_group_are_peers_and_ends_without_enough_peers_are_dropped():
    ends, X, _ = _fleet(2)
    calibrations = _calibrated(X)
    X["a0"][:, 0] *= 1.5  # a0 alone in its group would have no reference; with a1..a3 it stands out
    grouped = _run(
        ends, X, calibrations, groups={"a0": "site-1", "a1": "site-2", "a2": "site-2", "a3": "site-2"}
    )
    assert len(grouped["a0"][0]) == 0  # one asset is no peer group
    assert all(len(grouped[key][0]) == N for key in ("a1", "a2", "a3"))
    together = _run(ends, X, calibrations)
    assert np.median(together["a0"][1][:, 0]) > 20
    # An end only two assets reach is not scored: a3 misses the last 50 windows.
    partial = peer_relative(
        {**{key: (ends, X[key]) for key in ("a0", "a1", "a2")}, "a3": (ends[:-50], X["a3"][:-50])},
        calibrations,
        min_peers=4,
    )
    assert [len(partial[key][0]) for key in ("a0", "a1", "a2", "a3")] == [N - 50] * 4
    with pytest.raises(BaselineError, match="min_peers"):
        peer_relative({}, {}, min_peers=0)


def test_the_peer_step_is_declared_in_the_output_spec_and_needs_a_robust_baseline():
    assert peer_mode({"baseline": "per_asset_robust", "peers": "median"}) == "median"
    assert peer_mode({"baseline": "per_asset_robust"}) is None
    with pytest.raises(BaselineError, match="unknown peer step 'mean'"):
        peer_mode({"baseline": "per_asset_robust", "peers": "mean"})
    assert peer_mode({"baseline": "per_asset_pooled", "peers": "median"}) == "median"
    with pytest.raises(PipelineError, match="needs a robust calibration: baseline per_asset_robust or"):
        Pipeline.from_spec(["x__mean"], {"baseline": "per_asset", "peers": "median"})


def _windows(ends: np.ndarray, X: np.ndarray) -> Windows:
    n = len(ends)
    return Windows(
        ends=ends,
        X=X,
        names=["x__mean", "x__slope"],
        roles=["x"],
        coverage=np.ones((n, 1)),
        flagged=np.zeros((n, 1), dtype=np.int64),
    )


class _Reference:
    """The detector's NumPy reference in place of onnxruntime (Pipeline.run calls ``model().score``)."""

    def __init__(self, detector) -> None:
        self.detector = detector

    def score(self, Z: np.ndarray) -> np.ndarray:
        return self.detector.score(np.asarray(Z, dtype=np.float64))


PEER_SPEC = {"baseline": "per_asset_robust", "peers": "median"}
NAMES = ["x__mean", "x__slope"]


def _fitted(windows, calibrations, kind: str = "pca"):
    pipeline = Pipeline.from_spec(NAMES, PEER_SPEC)
    fit = pipeline.peer_inputs(windows, {k: np.arange(100) for k in windows}, np.arange(2), calibrations)
    Z = np.vstack([fit[k][1] for k in windows]).astype(np.float64)
    return pipeline, fit_detector(kind, Z), Z


def test_pipeline_run_scores_each_asset_against_the_assets_given_with_it():
    ends, X, _ = _fleet(3)
    calibrations = _calibrated(X)
    X["a1"][300:, 0] *= 1.2
    windows = {key: _windows(ends, x) for key, x in X.items()}
    pipeline, detector, _ = _fitted(windows, calibrations)
    scored = pipeline.run(lambda: _Reference(detector), windows, baselines=calibrations)
    expected = peer_relative({k: (ends, x) for k, x in X.items()}, calibrations)
    for key in X:
        np.testing.assert_allclose(scored[key].X, expected[key][1], rtol=1e-6)
    assert np.median(scored["a1"].scores[300:]) > 10 * np.median(scored["a0"].scores[300:])
    # Given alone, an asset has no peers: nothing is scored (yet).
    assert pipeline.run(lambda: _Reference(detector), {"a0": windows["a0"]}, baselines=calibrations) == {}
    # Stacked rows (training's path) give the same inputs as the scorer's.
    keys = np.repeat(list(X), N)
    stacked = np.vstack([X[k] for k in X])
    rows, keep = Pipeline.peer_rows(stacked, keys, np.tile(ends, len(X)), calibrations)
    assert keep.all()
    np.testing.assert_allclose(rows[keys == "a1"], expected["a1"][1], rtol=1e-6)


@pytest.mark.parametrize("kind", ["pca", "univariate"])
def test_an_explanation_of_a_peer_relative_input_is_additive(kind):
    ends, X, _ = _fleet(4)
    calibrations = _calibrated(X)
    X["a3"][300:, 0] *= 1.3
    windows = {key: _windows(ends, x) for key, x in X.items()}
    pipeline, detector, Z_fit = _fitted(windows, calibrations, kind)
    scored = pipeline.run(lambda: _Reference(detector), windows, baselines=calibrations)
    x = scored["a3"].X[350]
    spec = {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
    result = explain(detector.to_onnx(), x, Z_fit[::8], NAMES, spec)
    phi = np.array([f["phi"] for f in result["features"]])
    assert phi.sum() + result["base_value"] == pytest.approx(result["output"], abs=1e-6)
    assert result["output"] == pytest.approx(float(scored["a3"].scores[350]), rel=1e-5)
    assert max(result["features"], key=lambda f: f["phi"])["name"] == "x__mean"  # the feature that left
