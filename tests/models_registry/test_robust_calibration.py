"""Robust per-asset calibration in the product (issue 13, item 1): storage, recalibration (service, command,
asset-page button), the thresholds in force (override > asset > version) in the live scorer, the edge
bundle, training with per-asset thresholds, and a quiet pump's fault alerting beside a noisy one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from alerts.models import Alert, ThresholdOverride
from alerts.scoring import score_assets
from alerts.services.lifecycle import explain_window
from alerts.services.overrides import effective_thresholds
from detection.baseline import BaselineError, Calibration
from detection.thresholds import AssetThresholds
from models_registry import baseline
from models_registry.bundle import bundle_spec
from detection.bundle import Bundle
from edge.runner import score_series
from detection.features import feature_names
from models_registry.models import AssetBaseline, AssetThreshold, BaselineMode, ModelVersion
from models_registry.services import asset_holdout_order, promote, train_and_register
from demo.seed import PUMP_ROLES
from plant.simulator import Fault, FaultSchedule, PlantSimulator
from tests.models_registry.plant_builders import TAGS, make_simulated_plant, sim_assets
from tests.models_registry.test_end_to_end import HOUR, ORIGIN, at, ingest_simulated
from plant.choices import LabelKind
from plant.models import Label
from tests.conftest import T0
from tests.models_registry.test_regimes import vibration_version
from tests.scoring.conftest import CLEAR, NAMES, OPEN, START_S, fault, ingest

pytestmark = pytest.mark.django_db

NAMES_SIM = feature_names(sorted(key for key, *_ in PUMP_ROLES))
SPEC = {"name": "score", "index": 0, "direction": "higher_is_anomalous"}
ROBUST = {**SPEC, "baseline": "per_asset_robust"}


@pytest.fixture(autouse=True)
def few_windows(settings):
    settings.VIGIL_BASELINE_WINDOWS = 10


def robust_version(asset, name: str = "vib-robust"):
    return vibration_version(asset.asset_type, name=name, output_spec=ROBUST)


def moment(seconds: float):
    return T0 + timedelta(seconds=seconds)


# --- calibrating --------------------------------------------------------------------------------------------


def test_recalibrating_stores_a_robust_calibration_and_the_assets_thresholds(asset, engineer):
    version = robust_version(asset)
    ingest(asset, START_S, 600, vibration=lambda t: np.full_like(t, 12.0))
    old = baseline.recalibrate(asset, moment(0), moment(300)).baselines[0]

    done = baseline.recalibrate(asset, moment(0), moment(600), actor=engineer)

    [row] = done.baselines
    assert row.mode == BaselineMode.ROBUST and row.is_current and row.created_by == engineer
    assert row.vector_for(["vibration__mean"]) == [pytest.approx(12.0, abs=0.02)]
    assert row.window_count == 55  # windows of 60 s every 10 s wholly inside 600 s
    old.refresh_from_db()
    assert not old.is_current  # kept as history
    [found] = done.thresholds
    # 55 scores are far fewer than the rule needs for the asset's own: the version's, and said so.
    assert (found.source, found.window_count) == ("version", 55)
    assert (found.open_threshold, found.clear_threshold) == (OPEN, CLEAR)
    assert found.calibration == row and found.model_version == version
    assert AssetThreshold.objects.filter(asset=asset, model_version=version).count() == 2


def test_a_period_overlapping_a_fault_label_is_refused_naming_the_label(asset):
    robust_version(asset)
    ingest(asset, START_S, 600)
    Label.objects.create(
        asset=asset, kind=LabelKind.FAULT, start=moment(200), end=moment(260), fault_type="bearing_wear"
    )

    # QA: "fault label #29" named a database id an engineer never sees: the label is named by its words
    # and its span on the site's clock.
    span = f"{moment(200):%Y-%m-%d %H:%M} to {moment(260):%H:%M} (UTC)"
    with pytest.raises(BaselineError) as refused:
        baseline.recalibrate(asset, moment(0), moment(600))
    assert f"the period overlaps the bearing wear fault labelled {span};" in str(refused.value)
    assert "#" not in str(refused.value)
    assert not AssetBaseline.objects.exists()


def test_a_verdicts_fault_label_is_named_by_its_sensor_role_not_its_key(asset):
    # A confirmed fault on the board labels "<kind>:<role>" (alerts.services.feedback.fault_type_of): the
    # message read "the anomaly:bearing temp fault", the key of the alert kind and of the role.
    role = asset.asset_type.roles.order_by("key").first()
    name = role.label[:1].lower() + role.label[1:]
    zone = ZoneInfo("UTC")

    def words(fault_type: str) -> str:
        label = Label(
            asset=asset, kind=LabelKind.FAULT, start=moment(0), end=moment(60), fault_type=fault_type
        )
        return baseline.label_words(label, zone).split(" labelled ")[0]

    assert words(f"anomaly:{role.key}") == f"the {name} fault"
    assert words(f"sensor:{role.key}") == f"the {name} sensor fault"
    assert words("anomaly:no_such_role") == "the no such role fault"
    assert words("bearing_wear") == "the bearing wear fault" and words("a:b") == "the a:b fault"


def test_too_few_usable_windows_are_refused_with_the_counts(asset):
    robust_version(asset)
    ingest(asset, START_S, 80)

    with pytest.raises(BaselineError, match=r"only 3 complete feature windows .* among the 3 windows"):
        baseline.recalibrate(asset, moment(0), moment(80))
    with pytest.raises(BaselineError, match=r"only 0 complete feature windows"):
        baseline.recalibrate(asset, moment(1000), moment(2000))


@pytest.mark.parametrize("kind", [LabelKind.FAULT, LabelKind.EXCLUDED])
def test_auto_calibration_skips_windows_overlapping_a_fault_or_faulty_sensor_label(asset, kind):
    version = robust_version(asset)
    # A fault (or a faulty sensor) at the very start: auto-calibration must not take it for the normal.
    ingest(asset, START_S, 900, vibration=fault(START_S, START_S + 200, ramp_s=1.0))
    Label.objects.create(asset=asset, kind=kind, start=moment(0), end=moment(280))

    row = baseline.auto_calibrate(asset, list(version.feature_spec), mode="per_asset_robust")

    assert row is not None and row.robust and row.start >= moment(280)
    assert row.vector_for(["vibration__mean"]) == [pytest.approx(2.0, abs=0.02)]


def test_a_faulty_sensors_readings_never_calibrate_but_do_not_refuse_the_period(asset):
    # No robust version in use: the mean vector, which readings of 20 among 2 would pull up.
    ingest(asset, START_S, 900, vibration=fault(START_S + 300, START_S + 500))
    # A sensor judged faulty there (a sensor-fault verdict's EXCLUDED label), the machine running normally.
    Label.objects.create(
        asset=asset,
        kind=LabelKind.EXCLUDED,
        start=moment(240),
        end=moment(560),
        fault_type="sensor:vibration",
    )

    [row] = baseline.recalibrate(asset, moment(0), moment(900)).baselines

    assert row.mode == BaselineMode.MEAN
    assert row.vector_for(["vibration__mean"]) == [pytest.approx(2.0, abs=0.02)]
    # 85 windows of 60 s every 10 s; the 37 ending in (240 s, 620 s) touch the label
    assert row.window_count == 85 - 37


# --- the thresholds in force ------------------------------------------------------------------------------


def test_threshold_precedence_is_override_then_asset_then_version(asset, engineer):
    version = robust_version(asset)
    ingest(asset, START_S, 600)
    row = baseline.recalibrate(asset, moment(0), moment(600)).baselines[0]
    AssetThreshold.objects.all().delete()
    assert effective_thresholds(version, asset.pk) == (OPEN, CLEAR)

    baseline.store_thresholds(asset.pk, version, AssetThresholds(4.0, 2.0, 900, "asset"), row)
    assert effective_thresholds(version, asset.pk) == (4.0, 2.0)

    ThresholdOverride.objects.create(
        asset=asset, model_version=version, open_threshold=30.0, clear_threshold=20.0, created_by=engineer
    )
    assert effective_thresholds(version, asset.pk) == (30.0, 20.0)


def test_thresholds_of_an_older_calibration_are_not_in_force(asset):
    version = robust_version(asset)
    ingest(asset, START_S, 600)
    row = baseline.recalibrate(asset, moment(0), moment(300)).baselines[0]
    baseline.store_thresholds(asset.pk, version, AssetThresholds(4.0, 2.0, 900, "asset"), row)
    # A new calibration made while the version was not in use leaves it no thresholds of its own.
    baseline.calibrate(asset, None, moment(0), moment(600), mode="per_asset_robust")

    assert baseline.thresholds_in_force(version, [asset.pk]) == {}


def test_the_live_scorer_alerts_at_the_assets_own_thresholds_below_the_versions(asset):
    version = robust_version(asset)
    # A small rise (about 6 robust units) that the version's threshold of 10 never sees.
    ingest(asset, START_S, 600, vibration=lambda t: 2.0 + 0.06 * (t >= START_S + 400))
    row = baseline.recalibrate(asset, moment(0), moment(300)).baselines[0]
    scale = row.scale[NAMES.index("vibration__mean")]
    assert 0.05 / scale > 4.0
    baseline.store_thresholds(asset.pk, version, AssetThresholds(4.0, 2.0, 900, "asset"), row)

    score_assets([asset.pk])

    alert = Alert.objects.get(model_version=version)
    assert alert.opened_at > moment(400) and alert.peak_score < OPEN


# --- the asset page and the command ------------------------------------------------------------------------


def test_the_asset_page_shows_the_calibration_and_where_its_thresholds_come_from(client, engineer, asset):
    version = robust_version(asset)
    ingest(asset, START_S, 600)
    row = baseline.recalibrate(asset, moment(0), moment(600), actor=engineer).baselines[0]
    baseline.store_thresholds(asset.pk, version, AssetThresholds(4.5, 2.5, 900, "asset"), row)
    client.force_login(engineer)

    page = client.get(asset.get_absolute_url()).content.decode()

    assert f'id="baseline-{version.pk}"' in page and "robust calibration" in page
    assert "55 windows, calibrated by an engineer by" in page
    assert 'data-source="asset"' in page and "open 4.5000" in page and "(900 scores)" in page
    assert reverse("models_registry:asset_recalibrate", args=[asset.pk]) in page

    ThresholdOverride.objects.create(
        asset=asset, model_version=version, open_threshold=30.0, clear_threshold=20.0, created_by=engineer
    )
    page = client.get(asset.get_absolute_url()).content.decode()
    assert 'data-source="override"' in page and "open 30.0000" in page and "noise-control override" in page


def test_the_recalibrate_button_recalibrates_and_refuses_a_fault_period(client, engineer, asset):
    robust_version(asset)
    ingest(asset, START_S, 600)
    client.force_login(engineer)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    # The site's wall-clock times.
    local = [moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]
    period = {"calibrate-start": local[0], "calibrate-end": local[1]}

    response = client.post(url, period)

    assert response.status_code == 302
    row = AssetBaseline.objects.get(asset=asset, is_current=True)
    assert row.robust and row.created_by == engineer and row.source == "manual"

    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(100), end=moment(160))
    refused = client.post(url, period)
    assert refused.status_code == 400
    assert "fault labelled" in refused.content.decode()
    bad = client.post(url, {"calibrate-start": local[1], "calibrate-end": local[0]})
    assert bad.status_code == 400 and "must be after its start" in bad.content.decode()


def test_the_consoles_calibration_and_its_recalibrate_action_store_what_the_asset_page_does(
    client, engineer, asset
):
    # The console's "add asset baseline" stored a mean vector whatever the versions in use scored against,
    # and its "recalibrate" action the row's mode without the asset's thresholds, so a robust version's
    # asset fell back to the version's thresholds. Both are the asset page's recalibration now.
    version = robust_version(asset)
    ingest(asset, START_S, 600)
    client.force_login(engineer)
    day = f"{T0:%Y-%m-%d}"
    form = {"asset": asset.pk, "start_0": day, "start_1": f"{T0:%H:%M:%S}", "end_0": day}
    response = client.post(
        reverse("admin:models_registry_assetbaseline_add"),
        {**form, "end_1": f"{moment(600):%H:%M:%S}"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = AssetBaseline.objects.get(asset=asset, is_current=True)
    assert row.mode == BaselineMode.ROBUST and row.created_by == engineer and row.source == "manual"
    first = AssetThreshold.objects.get(asset=asset, model_version=version, is_current=True)
    assert first.calibration_id == row.pk

    changelist = reverse("admin:models_registry_assetbaseline_changelist")
    client.post(changelist, {"action": "recalibrate_selected", "_selected_action": [row.pk]})
    newest = AssetBaseline.objects.get(asset=asset, is_current=True)
    assert newest.pk != row.pk and newest.mode == BaselineMode.ROBUST
    now = AssetThreshold.objects.get(asset=asset, model_version=version, is_current=True)
    assert now.calibration_id == newest.pk  # in force: made with the asset's current calibration

    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(100), end=moment(160))
    refused = client.post(
        reverse("admin:models_registry_assetbaseline_add"),
        {**form, "end_1": f"{moment(600):%H:%M:%S}"},
    )
    assert refused.status_code == 200 and "fault labelled" in refused.content.decode()
    assert AssetBaseline.objects.filter(asset=asset).count() == 2


def test_the_consoles_calibration_refuses_what_the_recalibration_would_as_a_form_error(
    client, engineer, asset, monkeypatch
):
    # The form checked the calibrations only; the asset's thresholds, set when the console saved, could
    # still fail (a robust version in use that cannot score the period): a 500 after the form said valid.
    robust_version(asset)
    ingest(asset, START_S, 600)

    def broken(_version):
        raise OSError("model file missing")

    monkeypatch.setattr(baseline.cache, "loaded", broken)
    client.raise_request_exception = False
    client.force_login(engineer)
    day = f"{T0:%Y-%m-%d}"
    form = {"asset": asset.pk, "start_0": day, "start_1": f"{T0:%H:%M:%S}", "end_0": day}
    response = client.post(
        reverse("admin:models_registry_assetbaseline_add"), {**form, "end_1": f"{moment(600):%H:%M:%S}"}
    )
    assert response.status_code == 200
    assert "cannot score" in response.content.decode()
    assert not AssetBaseline.objects.exists()  # the check kept nothing


def test_a_refused_recalibration_names_its_times_in_the_sites_time_not_iso(client, engineer, asset):
    asset.site.timezone = "Europe/Berlin"
    asset.site.save()
    robust_version(asset)
    ingest(asset, START_S, 600)
    client.force_login(engineer)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    zone = ZoneInfo("Europe/Berlin")
    local = [moment(s).astimezone(zone).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]
    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(120), end=moment(180))
    page = client.post(url, {"calibrate-start": local[0], "calibrate-end": local[1]}).content.decode()
    berlin = [moment(s).astimezone(zone).strftime("%Y-%m-%d %H:%M") for s in (120, 180)]
    assert f"the period overlaps a fault labelled {berlin[0]} to {berlin[1][11:]} (Europe/Berlin);" in page
    too_short = [moment(s).astimezone(zone) for s in (700, 760)]
    page = client.post(
        url,
        {
            "calibrate-start": f"{too_short[0]:%Y-%m-%dT%H:%M}",
            "calibrate-end": f"{too_short[1]:%Y-%m-%dT%H:%M}",
        },
    ).content.decode()
    assert f"between {too_short[0]:%Y-%m-%d %H:%M} and {too_short[1]:%Y-%m-%d %H:%M} (need at least" in page
    errors = page[page.index('<div class="form-errors" role="alert">') :].split("</div>")[0]
    assert "(need at least" in errors and "+00:00" not in errors and "+01:00" not in errors
    # A period longer than a calibration may build names its times the same way.
    page = client.post(
        url, {"calibrate-start": "1990-01-01T00:00", "calibrate-end": local[0]}
    ).content.decode()
    errors = page[page.index('<div class="form-errors" role="alert">') :].split("</div>")[0]
    assert f"from 1990-01-01 00:00 to {local[0].replace('T', ' ')} holds about" in errors
    assert "+00:00" not in errors and "+01:00" not in errors


def test_recalibrating_an_asset_no_model_in_use_calibrates_against_says_nothing_changes(
    client, engineer, asset
):
    vibration_version(asset.asset_type, name="plain", output_spec=SPEC)  # champion, no per-asset baseline
    ingest(asset, START_S, 600)
    client.force_login(engineer)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    local = [moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]
    page = client.post(url, {"calibrate-start": local[0], "calibrate-end": local[1]}, follow=True)
    html = page.content.decode()
    assert f"Recalibrated {asset.tag}: operating point" in html
    assert f"No model in use on {asset.asset_type.name} scores against a per-asset calibration" in html
    # With a version that does, the engineer is not told so.
    robust_version(asset)  # promoted in its place
    html = client.post(url, {"calibrate-start": local[0], "calibrate-end": local[1]}, follow=True).content
    assert b"No model in use on" not in html


def test_a_technician_may_not_recalibrate(client, technician, asset):
    client.force_login(technician)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    assert client.post(url, {"calibrate-start": "2026-01-05T06:00"}).status_code == 403
    assert "Recalibrate from a normal period" not in client.get(asset.get_absolute_url()).content.decode()


def test_calibrate_baseline_command_sets_robust_calibration_and_thresholds(asset, capsys):
    version = robust_version(asset)
    ingest(asset, START_S, 600)

    call_command(
        "calibrate_baseline", "--asset", asset.tag, "--start", moment(0).isoformat(), "--end",
        moment(600).isoformat(),
    )  # fmt: skip

    out = capsys.readouterr().out
    assert "per_asset_robust" in out and f"for {version}: open 10" in out and "55 scores" in out
    Label.objects.create(asset=asset, kind=LabelKind.FAULT, start=moment(100), end=moment(160))
    with pytest.raises(CommandError, match="fault labelled"):
        call_command(
            "calibrate_baseline", "--asset", asset.tag, "--start", moment(0).isoformat(), "--end",
            moment(600).isoformat(),
        )  # fmt: skip


# --- the edge bundle ---------------------------------------------------------------------------------------


def test_a_robust_bundle_carries_the_calibration_and_the_assets_thresholds(asset, tmp_path):
    version = robust_version(asset)
    ingest(asset, START_S, 600, vibration=lambda t: np.full_like(t, 12.0))
    row = baseline.recalibrate(asset, moment(0), moment(600)).baselines[0]
    baseline.store_thresholds(asset.pk, version, AssetThresholds(4.0, 2.0, 900, "asset"), row)

    spec = bundle_spec(version, asset)

    assert (spec["open_threshold"], spec["clear_threshold"]) == (4.0, 2.0)
    calibration = Calibration.from_json(spec["baseline"])
    assert calibration.location[NAMES.index("vibration__mean")] == pytest.approx(12.0, abs=0.02)
    # The edge runner standardises as the scorer does: a healthy 12 mm/s pump scores about 0.
    t = START_S + np.arange(300, dtype=np.float64)
    series = {
        role: (
            t,
            np.full(300, level) + np.random.default_rng(1).normal(0, 0.05, 300),
            np.zeros(300, np.uint16),
        )
        for role, level in {"current": 20.0, "pressure": 6.0, "temperature": 50.0, "vibration": 12.0}.items()
    }
    rows = score_series(Bundle(model=version.read_onnx_bytes(), spec=spec), series)
    scores = [r["score"] for r in rows if r["score"] is not None]
    assert scores and max(abs(s) for s in scores) < 4.0


# --- training and the fleet --------------------------------------------------------------------------------


def test_a_quiet_pumps_fault_alerts_beside_a_noisy_pump_with_a_robust_version(site, settings, tmp_path):
    """End to end: pumps of one type, one quiet and one six times noisier (plant.simulator's noise), one
    robust version trained over both through train_and_register, the live scorer: the quiet pump's
    bearing wear alerts."""
    settings.MEDIA_ROOT = tmp_path / "media"
    asset_type, assets = make_simulated_plant(site)
    sims = [replace(sim, size=1.0, noise=noise) for sim, noise in zip(sim_assets(site), (1.0, 6.0, 1.0))]
    sim = PlantSimulator(
        sims,
        seed=3,
        faults=FaultSchedule([Fault("bearing_wear", "p-101", None, HOUR + 600, 900)]),
        origin=ORIGIN,
    )
    ingest_simulated(sim, 0, HOUR)

    version = train_and_register(asset_type, "anomaly", baseline="per_asset_robust")

    assert version.output_spec["baseline"] == "per_asset_robust"
    calibrations = AssetBaseline.objects.filter(mode=BaselineMode.ROBUST, is_current=True)
    assert calibrations.count() == 3
    quiet, noisy = (
        calibrations.get(asset=assets[tag]).scale[NAMES_SIM.index("vibration__std")]
        for tag in ("p-101", "p-102")
    )
    assert noisy > 1.5 * quiet  # each pump is judged on its own scale
    stored = {row.asset.tag: row for row in AssetThreshold.objects.filter(model_version=version)}
    assert set(stored) == set(TAGS)
    assert all(row.calibration.is_current and row.window_count > 50 for row in stored.values())
    promote(version, reason="test")

    ingest_simulated(sim, HOUR, HOUR + 2100)
    score_assets([asset.pk for asset in assets.values()])

    opened = Alert.objects.filter(model_version=version, asset=assets["p-101"], opened_at__gte=at(HOUR + 600))
    assert opened.filter(opened_at__lte=at(HOUR + 1500 + 120)).exists()


def test_train_model_command_trains_a_robust_version_with_a_chosen_detector(site, settings, tmp_path, capsys):
    settings.MEDIA_ROOT = tmp_path / "media"
    asset_type, _ = make_simulated_plant(site)
    ingest_simulated(PlantSimulator(sim_assets(site), seed=4, origin=ORIGIN), 0, 1800)

    call_command(
        "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "per_asset_robust",
        "--detector", "univariate",
    )  # fmt: skip

    version = ModelVersion.objects.get(asset_type=asset_type)
    assert version.output_spec["baseline"] == "per_asset_robust"
    assert version.provenance["params"]["detector"] == "univariate"
    assert AssetThreshold.objects.filter(model_version=version).count() == len(TAGS)
    with pytest.raises(CommandError, match="--detector applies to anomaly models only"):
        call_command("train_model", "--asset-type", asset_type.slug, "--kind", "rul", "--detector", "pca")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command(
            "train_model", "--asset-type", asset_type.slug, "--kind", "anomaly", "--baseline", "robust"
        )


def test_asset_holdout_order_holds_out_the_last_part_of_every_asset():
    groups = np.array([1] * 8 + [2] * 4)
    rows, params, held = asset_holdout_order(np.arange(12), groups, {"holdout_fraction": 0.25})

    assert held.tolist() == [6, 7, 11] and rows[-3:].tolist() == [6, 7, 11]
    assert sorted(rows.tolist()) == list(range(12)) and params["holdout_fraction"] == pytest.approx(3 / 12)


def test_an_explanation_of_a_robust_version_shows_the_raw_value_and_the_assets_median(asset):
    version = robust_version(asset)
    location = np.linspace(1.0, 2.0, len(NAMES))
    calibration = Calibration(location, np.full(len(NAMES), 0.5), 20)
    x = np.full(len(NAMES), 3.0, dtype=np.float32)  # three robust units above the median everywhere

    result = explain_window(version, x, end=moment(60), score=3.0, sensors=None, baseline=calibration)

    by_name = {feature["name"]: feature for feature in result["features"]}
    mean = by_name["vibration__mean"]
    k = NAMES.index("vibration__mean")
    assert mean["baseline"] == pytest.approx(location[k])
    assert mean["raw"] == pytest.approx(3.0 * 0.5 + location[k])


def test_a_version_that_cannot_score_the_period_is_a_form_error_not_a_500(
    client, engineer, asset, monkeypatch
):
    version = robust_version(asset)
    ingest(asset, START_S, 600)

    def broken(_version):
        raise OSError("model file missing")

    monkeypatch.setattr(baseline.cache, "loaded", broken)
    client.force_login(engineer)
    local = [moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]

    response = client.post(
        reverse("models_registry:asset_recalibrate", args=[asset.pk]),
        {"calibrate-start": local[0], "calibrate-end": local[1]},
    )

    assert response.status_code == 400
    assert f"{version} cannot score the period: model file missing" in response.content.decode()
    assert not AssetBaseline.objects.exists()  # nothing half-done


# --- a calibration over a warm-up -----------------------------------------------------------------------------


def warm_up(t: np.ndarray) -> np.ndarray:
    """Vibration climbing steadily from 2 to 3 over the first 600 s (a start-up the period would hold)."""
    return 2.0 + (t - START_S) / 600.0


def test_a_calibration_over_a_warm_up_is_said_not_settled(client, engineer, asset):
    robust_version(asset)
    ingest(asset, START_S, 600, vibration=warm_up)
    client.force_login(engineer)
    url = reverse("models_registry:asset_recalibrate", args=[asset.pk])
    local = [moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (0, 600)]

    response = client.post(url, {"calibrate-start": local[0], "calibrate-end": local[1]}, follow=True)

    row = AssetBaseline.objects.get(asset=asset, is_current=True)
    [trend] = row.trends  # only the vibration moved; the other sensors are steady
    assert trend["role"] == "vibration" and 2.0 < trend["first"] < 2.4 < 2.6 < trend["last"] < 3.0
    label = asset.asset_type.roles.get(key="vibration").label
    page = response.content.decode()
    assert "The period is not settled: " + label + " rose steadily through it (" in page  # the message
    assert 'class="calibration-unsettled"' in page and "recalibrate from a settled period" in page

    # A steady period: no warning, in the row, the message or on the page.
    ingest(asset, START_S + 600, 600)
    local = [
        moment(s).astimezone(ZoneInfo(asset.site.timezone)).strftime("%Y-%m-%dT%H:%M") for s in (600, 1200)
    ]
    page = client.post(url, {"calibrate-start": local[0], "calibrate-end": local[1]}, follow=True)
    assert AssetBaseline.objects.get(asset=asset, is_current=True).trends == []
    assert "not settled" not in page.content.decode() and "calibration-unsettled" not in page.content.decode()


def test_calibrate_baseline_warns_of_a_warm_up_and_auto_calibration_records_it(asset, capsys, settings):
    version = robust_version(asset)
    ingest(asset, START_S, 600, vibration=warm_up)

    call_command(
        "calibrate_baseline", "--asset", asset.tag, "--start", moment(0).isoformat(), "--end",
        moment(600).isoformat(),
    )  # fmt: skip
    assert "not a settled period: " in capsys.readouterr().out

    AssetBaseline.objects.all().delete()
    settings.VIGIL_BASELINE_WINDOWS = 55  # the whole warm-up (10 windows span too little to tell a trend)
    row = baseline.auto_calibrate(asset, list(version.feature_spec), mode="per_asset_robust")
    assert row is not None and [t["role"] for t in row.trends] == ["vibration"]


def test_a_fault_label_without_a_fault_type_is_named_by_its_note_and_a_span_over_midnight_by_both_dates(
    asset,
):
    label = Label(
        asset=asset,
        kind=LabelKind.FAULT,
        start=datetime(2026, 1, 5, 22, 50, tzinfo=UTC),
        end=datetime(2026, 1, 6, 0, 20, tzinfo=UTC),
        note="Seal   leaking\nat the drive end",
    )
    assert (
        baseline.label_words(label, ZoneInfo("Europe/Berlin"))
        == 'the fault "Seal leaking at the drive end" labelled 2026-01-05 23:50 to 2026-01-06 01:20 (Europe/Berlin)'
    )
