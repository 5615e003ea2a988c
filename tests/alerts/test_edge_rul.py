"""A remaining-useful-life model's alerts at the edge: the agent explains the one it opens on a gateway (with
the same shap TreeSHAP as the server: edge/requirements.txt installs shap, which
tests/test_django_free_packages.py checks) in the board's words, the server explains it from the forwarded
readings by the same artifact, and an RUL alert reads as a remaining life that fell below its alert level
wherever it was decided."""

from __future__ import annotations

import sys

import numpy as np

from alerts.choices import AlertCategory, ExplanationStatus
from alerts.models import Alert, AlertEvent
from alerts.scoring import score_assets
from alerts.services import lifecycle
from alerts.services.board import board_alerts
from connectivity.points import Sample
from detection import explain as explain_module
from detection.bundle import Bundle, load_bundle
from detection.runtime import higher_is_worse
from detection.wording import duration_text
from edge.decide import AlertEvent as EdgeAlertEvent
from edge.decide import AssetDecider
from edge.model import EdgeModel
from models_registry.bundle import build_bundle
from models_registry.models import ModelVersion
from models_registry.services import promote, register_trained
from models_registry.training import train_rul
from plant.ingest import ParsedBatch, ingest_readings
from tests.alerts.test_edge_quality_gate import at, readings, send_event, send_opened, store, vibration
from tests.conftest import make_asset
from tests.scoring.conftest import NAMES

__all__ = ["at"]  # the fixture: the end of the window the agent decided on


def rul_champion(asset_type) -> ModelVersion:
    """A LightGBM RUL champion (trees, lower is worse: open below 30, clear above 40) over the pump's
    features: the remaining life falls from 200 to 0 as the mean vibration rises from 2 to 25 mm/s."""
    rng = np.random.default_rng(1)
    n = 1500
    levels = {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 2.0}
    X = np.column_stack(
        [
            levels[name.split("__")[0]] + rng.normal(0, 0.05, n)
            if name.split("__")[1] in ("mean", "min", "max")
            else rng.normal(0, 0.05, n)
            for name in NAMES
        ]
    )
    wear = rng.uniform(2.0, 25.0, n)
    X[:, NAMES.index("vibration__mean")] = wear
    X[:, NAMES.index("vibration__max")] = wear + 0.2
    trained = train_rul(X, 200.0 * (25.0 - wear) / 23.0, NAMES, params={"n_estimators": 40, "num_leaves": 7})
    version = register_trained(trained, name="pump-rul", asset_type=asset_type, provenance={"source": "test"})
    promote(version, reason="test")
    version.refresh_from_db()
    return version


def shipped(version: ModelVersion, asset, tmp_path) -> Bundle:
    """The bundle of ``version`` for ``asset`` as a gateway loads it."""
    path = tmp_path / "bundle.zip"
    path.write_bytes(build_bundle(version, asset))
    return load_bundle(str(path))


def opened_on_gateway(decider: AssetDecider, asset, at: float) -> EdgeAlertEvent:
    """The alert ``decider`` opens on the bearing wear that ends at ``at``, fed second by second."""
    keys, ts, values = readings(asset, at - 400, at + 30, vibration(at))
    events = []
    for second in np.unique(ts):
        decider.add([Sample(key, t, v) for key, t, v in zip(keys, ts, values, strict=True) if t == second])
        events += decider.decide()
    return next(event for event in events if event.kind == "opened")


def test_an_rul_alert_decided_on_a_gateway_is_explained_there_as_the_board_explains_it(
    client, gateway_token, asset, at, technician, tmp_path
):
    version = rul_champion(asset.asset_type)
    assert version.kind == "rul" and not higher_is_worse(version.output_spec)
    bundle = shipped(version, asset, tmp_path)
    # The agent explains with what edge/requirements.txt installs (shap among it: the restricted interpreter
    # of tests/test_django_free_packages.py explains a tree ensemble with only that).
    decider = AssetDecider(asset.tag, EdgeModel(bundle), bundle.spec["sensors"])
    opened = opened_on_gateway(decider, asset, at)
    assert opened.peak_score < version.open_threshold  # the remaining life fell below 30
    told = decider.explained(opened)
    # The wear drove the remaining life down: the HMI is told so in the board's words.
    assert told.sensor == "Vibration" and "mm/s" in told.reason

    # The server opens the alert from the event, explains it from the forwarded readings by the version the
    # agent ran (the same TreeSHAP of the same artifact) and its card says what the gateway said.
    result = send_event(client, gateway_token, version, asset, "opened", opened.at, opened.at)
    assert result["outcome"] == "opened"
    keys, ts, values = readings(asset, at - 400, at + 30, vibration(at))  # what the gateway decided on
    ingest_readings(None, ParsedBatch.from_arrays(keys, ts, values))
    alert = Alert.objects.get(pk=result["alert"])
    assert lifecycle.complete_explanation(alert.pk) == ExplanationStatus.READY
    alert.refresh_from_db()
    assert alert.explanation["method"] == "tree_shap_onnx" and alert.explanation["additivity_ok"]
    assert alert.dominant_role == "vibration" and alert.category == AlertCategory.MACHINE_FAULT
    [card] = board_alerts(technician)
    assert card.pk == alert.pk and card.why[0].sentence == told.reason


def test_an_rul_alert_says_its_score_fell_below_the_open_threshold_wherever_it_was_decided(
    client, gateway_token, asset, site, at, settings, technician
):
    # Its opening event said "score above the open threshold" of a remaining life that had fallen below it,
    # and its card "past the alert level": now the time left, in the version's unit (hours by default).
    n = settings.VIGIL_ALERT_OPEN_WINDOWS
    version = rul_champion(asset.asset_type)
    edge_alert = send_opened(client, gateway_token, version, asset, at)  # the agent's peak: 25, below 30
    other = make_asset(site, "p-102", asset.asset_type)
    store(other, at - 400, at + 30, vibration(at))
    score_assets([other.pk])
    [server_alert] = Alert.objects.filter(asset=other, kind="rul")

    opening = {
        alert.asset.tag: AlertEvent.objects.get(alert=alert, from_state="").reason
        for alert in (edge_alert, server_alert)
    }
    assert opening == {
        "p-101": f"decided at the edge by edge-1: score below the open threshold for {n} consecutive windows",
        "p-102": f"score below the open threshold for {n} consecutive windows",
    }
    cards = {card.asset.tag: card for card in board_alerts(technician)}
    assert cards["p-101"].unusual == "remaining life 25 h (alert below 30 h)"  # the agent's peak, 25
    server_peak = duration_text(server_alert.peak_score * 3600)
    assert cards["p-102"].unusual == f"remaining life {server_peak} (alert below 30 h)"


def test_a_tree_models_explanation_is_prepared_when_the_bundle_loads_not_at_the_first_alert(
    asset, at, monkeypatch, tmp_path
):
    # Explaining a tree model first imports shap and builds its trees (about a second): done in the alert's
    # own step, it held up that alert's publish to the HMI and the next batch of readings.
    explain_module._plan.cache.clear()  # a fresh process: nothing explained yet
    version = rul_champion(asset.asset_type)
    bundle = shipped(version, asset, tmp_path)
    decider = AssetDecider(asset.tag, EdgeModel(bundle), bundle.spec["sensors"])

    def built_late(*args, **kwargs):
        raise AssertionError("the explanation's trees were built when the alert was explained")

    monkeypatch.setattr(explain_module, "_tree_model", built_late)
    opened = opened_on_gateway(decider, asset, at)
    assert decider.explained(opened).sensor == "Vibration"


def test_a_gateway_that_cannot_build_the_explanation_still_loads_the_bundle_and_raises_its_alerts(
    asset, at, monkeypatch, tmp_path
):
    # Preparing the explanation at load time let anything but an ExplanationError out of EdgeModel: a gateway
    # without shap (agent code updated, requirements not re-installed) could not load the bundle at all, so
    # the asset went unwatched, where the words are only a courtesy to the HMI.
    explain_module._plan.cache.clear()  # a fresh process: nothing explained yet
    monkeypatch.setitem(sys.modules, "shap", None)  # `import shap` raises ImportError
    version = rul_champion(asset.asset_type)
    bundle = shipped(version, asset, tmp_path)
    decider = AssetDecider(asset.tag, EdgeModel(bundle), bundle.spec["sensors"])
    opened = opened_on_gateway(decider, asset, at)
    assert decider.explained(opened).sensor == ""  # the alert goes out, without words
