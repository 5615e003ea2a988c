"""A non-default detector end to end: trained from stored readings, registered, promoted, scored by the live
scorer through detection.pipeline, and its alert explained from the very artifact (issue 13, item 3)."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

import numpy as np
import pytest

from alerts.models import Alert, Score
from detection import runtime
from detection.explain import ADDITIVITY_TOLERANCE
from alerts.scoring import score_assets
from models_registry.services import promote, train_and_register
from tests.scoring.conftest import START_S, fault, ingest, scoring_isolation  # noqa: F401 - autouse

pytestmark = pytest.mark.django_db

NORMAL_S = 3600
FAULT_AT, FAULT_END = START_S + NORMAL_S + 600, START_S + NORMAL_S + 1200


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


@pytest.mark.parametrize("detector", ["univariate", "combined"])
def test_a_portfolio_detector_is_trained_scored_live_and_its_alert_explained_additively(asset, detector):
    ingest(asset, START_S, NORMAL_S)
    version = train_and_register(
        asset.asset_type, "anomaly", end=_utc(START_S + NORMAL_S), params={"detector": detector}
    )
    assert version.output_spec["detector"] == detector
    assert version.provenance["params"]["detector"] == detector
    promote(version, reason="portfolio test")
    version.refresh_from_db()

    # Then a vibration fault (a sensor-level change) on the same pump.
    ingest(asset, START_S + NORMAL_S, 1800, vibration=fault(FAULT_AT, FAULT_END, level=4.0))
    report = score_assets([asset.pk])

    assert report.quarantined == [] and report.stored[version.pk] > 400
    stored = Score.objects.filter(model_version=version).order_by("window_end")
    assert all(np.isfinite(s) for s in stored.values_list("score", flat=True))
    alerts = list(
        Alert.objects.filter(model_version=version, opened_at__gt=_utc(FAULT_AT)).order_by("opened_at")
    )
    assert alerts, "the fault raised no alert"
    alert = alerts[0]
    assert alert.opened_at.timestamp() <= FAULT_END, "the first alert after the fault began is not about it"
    explanation = alert.explanation
    assert explanation["method"] == "exact_shapley_quadratic_max"
    assert explanation["additivity_error"] <= ADDITIVITY_TOLERANCE
    # Either detector may open it (a ramp also bends PCA's relations); the univariate one names the sensor.
    assert explanation["detector"] in {"univariate": {"univariate:vibration"}}.get(
        detector, {"pca", "univariate:vibration"}
    )
    assert alert.dominant_role == "vibration"
    # The explanation's output is the stored score of its window, re-run on the stored feature values.
    x = np.array([[f["value"] for f in explanation["features"]]], dtype=np.float32)
    rerun = runtime.run_batch(runtime.load_session(version.read_onnx_bytes()), x, version.output_spec)[0]
    assert explanation["output"] == pytest.approx(rerun, rel=1e-12)
    assert Score.objects.get(model_version=version, window_end=alert.opened_at).score == pytest.approx(
        explanation["score"], rel=1e-9
    )
