"""The SKAB demo model (demo.skab): trained on normal data only, without the replayed run, it
opens an alert at the replayed run's fault — not in the minutes before it — by the lifecycle's own rules."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from detection import runtime
from detection.features import build_windows
from detection.rules import alert_episodes
from plant.series import load_series
from models_registry.services import current_champion
from demo import skab as skab_demo
from plant.datasets import skab
from plant.datasets.common import store_units, utc
from alerts.models import ScoringDue
from plant.models import Asset


def need_skab() -> None:
    try:
        skab.data_dir()
    except skab.DatasetMissing as exc:
        pytest.fail(f"{exc}; these tests need the SKAB files (VIGIL_DATA_DIR=../shared/data)")


def test_the_normal_data_is_the_fault_free_start_of_every_valve_run_but_the_replayed_one():
    need_skab()
    units = skab_demo.normal_units(skab_demo.DEFAULT_RUN)
    refs = {unit.ref for unit in units}
    assert skab_demo.DEFAULT_RUN not in refs and "anomaly-free" not in refs
    assert {"valve1/0", "valve2/0"} <= refs
    assert all(label.kind == "normal" for unit in units for label in unit.labels)


@pytest.mark.django_db
def test_the_demo_champion_opens_an_alert_at_the_replayed_fault_and_not_before():
    need_skab()
    version = skab_demo.ensure_champion(log=lambda line: None)
    testbed = skab.ensure_asset_type()
    assert current_champion(testbed, "anomaly") == version
    assert skab_demo.ensure_champion(log=lambda line: None) is None  # idempotent
    assert Asset.objects.filter(asset_type=testbed, is_active=False).count() == 0
    assert not ScoringDue.objects.filter(asset__asset_type=testbed, due=True).exists()

    (unit,) = skab.read_units([skab_demo.DEFAULT_RUN])
    (result,) = store_units(skab.SITE, [unit])
    roles = list(testbed.roles.order_by("key").values_list("key", flat=True))
    sensors = dict(result.asset.sensors.values_list("pk", "role__key"))
    series = load_series(sensors, utc(unit.ts[0]), utc(unit.ts[-1]))
    windows = build_windows(
        series,
        roles,
        window_s=testbed.window_s,
        step_s=testbed.step_s,
        start_s=unit.ts[0] - 1,
        end_s=unit.ts[-1],
    )
    columns = [windows.names.index(name) for name in version.feature_spec]
    session = runtime.reference_session(version.read_onnx_bytes())
    scores = runtime.run_batch(session, windows.X[:, columns], version.output_spec)
    episodes = alert_episodes(
        scores,
        version.open_threshold,
        version.clear_threshold,
        settings.VIGIL_ALERT_OPEN_WINDOWS,
        settings.VIGIL_ALERT_CLEAR_WINDOWS,
    )
    (fault,) = [label for label in unit.labels if label.kind == "fault"]
    assert episodes, "the replayed fault opened no alert"
    opened = windows.ends[episodes[0].opened]
    assert fault.start <= opened <= fault.start + 180  # within 3 minutes of the valve closing
    assert scores[windows.ends < fault.start].max() < version.open_threshold


@pytest.mark.django_db
def test_loading_the_normal_data_keeps_the_fault_labels_of_a_run_loaded_in_full():
    # The demo loads the fault-free start of each run: the labels past it (the fault) are not its to drop.
    need_skab()
    call_command("load_dataset", "skab", "--subset", "valve1/0", stdout=io.StringIO(), stderr=io.StringIO())
    asset = Asset.objects.get(site__slug="skab", tag="valve1-0")
    before = set(asset.labels.values_list("pk", flat=True))
    assert asset.labels.filter(kind="fault").exists()

    (unit,) = [u for u in skab_demo.normal_units(skab_demo.DEFAULT_RUN) if u.ref == "valve1/0"]
    store_units(skab.SITE, [unit])
    assert set(asset.labels.values_list("pk", flat=True)) == before
