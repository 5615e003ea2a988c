"""Fixtures of the edge tests: the bundle and simulated pump of bench/edgekit.py."""

from __future__ import annotations

import pytest

from bench.edgekit import (  # noqa: F401  (re-exported for the edge tests)
    ROLES,
    STEP_S,
    TAG,
    TRAIN_S,
    WINDOW_S,
    MadeBundle,
    make_bundle,
    samples_of,
    sensors,
    series_of,
    simulator,
)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> MadeBundle:
    return make_bundle(tmp_path_factory.mktemp("edge-bundle"))
