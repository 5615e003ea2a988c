"""manage.py load_dataset: every dataset loads a small slice from VIGIL_DATA_DIR (fail, never skip, when the
data is missing) with units, ranges, readings through the ingest path and dataset labels, idempotently."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from plant.choices import LabelKind, LabelSource
from plant.datasets import ai4i, cmapss_loader, skab
from plant.datasets.common import Progress
from plant.models import Asset, AssetType, Label, Reading, Site

FOLDERS = {
    "skab": "skab/data",
    "cmapss": "cmapss",
    "nab": "nab/data",
    "ai4i": "ai4i2020/ai4i2020.csv",
    "ims": "ims_bearing_features",
}


def need(dataset: str) -> None:
    path = Path(settings.VIGIL_DATA_DIR) / FOLDERS[dataset]
    if not path.exists():
        pytest.fail(
            f"{path} is missing: these tests need the {dataset} files; set VIGIL_DATA_DIR=../shared/data"
        )


def load(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("load_dataset", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=dt_timezone.utc)


@pytest.mark.django_db
def test_skab_run_loads_with_units_ranges_labels_and_a_second_load_adds_nothing():
    need("skab")
    out, err = load("skab", "--subset", "valve1/3", "--limit-rows", "700")

    asset = Asset.objects.get(site__slug="skab", tag="valve1-3")
    assert asset.asset_type.slug == "skab-testbed"
    sensors = {s.role.key: s for s in asset.sensors.select_related("role")}
    assert len(sensors) == 8
    assert (sensors["flow"].unit, sensors["flow"].valid_min, sensors["flow"].valid_max) == (
        "l/min",
        0.0,
        500.0,
    )
    assert Reading.objects.filter(sensor__asset=asset).count() == 8 * 700
    # The fault starts 600 s into valve1/3, so 700 rows hold a normal run and the start of the fault.
    labels = list(asset.labels.order_by("start"))
    assert [(label.kind, label.source) for label in labels] == [("normal", "dataset"), ("fault", "dataset")]
    assert labels[1].fault_type == "valve_closed_inlet"
    assert "5600 new readings" in out and "100%" in err

    out, _ = load("skab", "--subset", "valve1/3", "--limit-rows", "700")
    assert "0 new readings" in out and "5600 already stored" in out
    assert Reading.objects.filter(sensor__asset=asset).count() == 8 * 700
    assert asset.labels.count() == 2


@pytest.mark.django_db
def test_cmapss_engines_get_a_stated_clock_a_rul_fault_window_and_test_engines_their_true_rul():
    need("cmapss")
    out, _ = load("cmapss", "--subset", "FD001/train/1", "--subset", "FD001/test/1", "--limit-rows", "40")
    assert "1 cycle = 1 hour" in out

    train = Asset.objects.get(site__slug="cmapss", tag="fd001-train-1")
    assert train.sensors.count() == 24 and "1 cycle = 1 hour" in train.location
    assert "1 cycle = 1 hour" in train.asset_type.description
    t30 = train.sensors.get(role__key="s3")
    assert t30.unit == "°R" and t30.valid_min < 1500 < t30.valid_max and t30.sample_period_s == 3600
    first = Reading.objects.filter(sensor=t30).order_by("ts").first()
    assert first.ts == at(cmapss_loader.EPOCH) and Reading.objects.filter(sensor=t30).count() == 40

    # FD001 train engine 1 runs 192 cycles: RUL < 30 over cycles 163..192, whatever --limit-rows loaded.
    (fault,) = train.labels.all()
    assert (fault.kind, fault.source, fault.reason) == ("fault", "dataset", "RUL<30")
    assert fault.start == at(cmapss_loader.EPOCH) + timedelta(hours=162)
    assert fault.end == at(cmapss_loader.EPOCH) + timedelta(hours=191)

    # Test engine 1 is cut off after 31 cycles with a true RUL of 112: it fails after cycle 143.
    test = Asset.objects.get(site__slug="cmapss", tag="fd001-test-1")
    assert "true RUL 112" in test.name
    (future,) = test.labels.all()
    assert future.end == at(cmapss_loader.EPOCH) + timedelta(hours=142) and "true RUL 112" in future.note

    out, _ = load("cmapss", "--subset", "FD001/train/1", "--subset", "FD001/test/1", "--limit-rows", "40")
    assert "loaded cmapss: 2 assets, 0 new readings" in out
    assert Label.objects.filter(asset__site__slug="cmapss").count() == 2


@pytest.mark.django_db
def test_nab_series_loads_as_one_sensor_asset_with_its_windows_and_anomaly_points():
    need("nab")
    load("nab", "--subset", "machine_temperature_system_failure", "--limit-rows", "300")

    asset = Asset.objects.get(site__slug="nab", tag="machine-temperature-system-failure")
    (sensor,) = asset.sensors.all()
    assert (sensor.unit, sensor.sample_period_s) == ("°F", 300.0)
    assert sensor.valid_min is not None and sensor.valid_max is not None
    assert Reading.objects.filter(sensor=sensor).count() == 300
    # The card: 4 scoring windows, each centred on a labelled anomaly point.
    windows = asset.labels.filter(fault_type="anomaly_window", source=LabelSource.DATASET)
    points = asset.labels.filter(fault_type="anomaly", source=LabelSource.DATASET)
    assert windows.count() == 4 and points.count() == 4
    assert all(w.start < w.end for w in windows) and all(p.start == p.end for p in points)


def _nab_csv(path: Path, rows: int, step: timedelta) -> list[str]:
    start = datetime(2015, 1, 1)
    stamps = [(start + i * step).strftime("%Y-%m-%d %H:%M:%S") for i in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(f"{s},{i % 7}.5\n" for i, s in enumerate(stamps)))
    return stamps


@pytest.fixture()
def nab_categories(tmp_path: Path, settings) -> Path:
    """The real realKnownCause (a symlink) beside two synthetic categories in NAB's format: an hourly
    realAdExchange series with one window and one anomaly point, and artificialNoAnomaly (5 min, no windows)
    holding a file with a realKnownCause stem (nyc_taxi.csv)."""
    need("nab")
    real = Path(settings.VIGIL_DATA_DIR) / "nab"
    root = tmp_path / "nab"
    (root / "data").mkdir(parents=True)
    (root / "data" / "realKnownCause").symlink_to(real / "data" / "realKnownCause")
    hourly = _nab_csv(
        root / "data" / "realAdExchange" / "exchange-2_cpc_results.csv", 100, timedelta(hours=1)
    )
    _nab_csv(root / "data" / "artificialNoAnomaly" / "nyc_taxi.csv", 60, timedelta(minutes=5))
    windows = json.loads((real / "labels" / "combined_windows.json").read_text())
    points = json.loads((real / "labels" / "combined_labels.json").read_text())
    windows |= {
        "realAdExchange/exchange-2_cpc_results.csv": [[hourly[40] + ".000000", hourly[60] + ".000000"]],
        "artificialNoAnomaly/nyc_taxi.csv": [],
    }
    points |= {
        "realAdExchange/exchange-2_cpc_results.csv": [hourly[50]],
        "artificialNoAnomaly/nyc_taxi.csv": [],
    }
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "labels" / "combined_labels.json").write_text(json.dumps(points))
    settings.VIGIL_DATA_DIR = str(tmp_path)
    return root


@pytest.mark.django_db
def test_nab_loads_every_category_the_folder_holds_with_unique_tags_and_a_type_per_sample_period(
    nab_categories,
):
    out, _ = load("nab", "--limit-rows", "30")
    assert "loaded nab: 9 assets" in out

    assets = {a.tag: a for a in Asset.objects.filter(site__slug="nab").select_related("asset_type")}
    # realKnownCause keeps its bare-stem tags; the other categories' are prefixed, so two nyc_taxi files
    # are two assets.
    assert "machine-temperature-system-failure" in assets and "nyc-taxi" in assets
    assert {"realadexchange-exchange-2-cpc-results", "artificialnoanomaly-nyc-taxi"} <= set(assets)
    assert assets["nyc-taxi"].location == "NAB realKnownCause/nyc_taxi.csv"
    assert assets["artificialnoanomaly-nyc-taxi"].location == "NAB artificialNoAnomaly/nyc_taxi.csv"
    assert "realKnownCause" not in Site.objects.get(slug="nab").name

    # One asset type per sample period, each window WINDOW_SAMPLES samples long, one sample a step.
    machine, exchange = (
        assets["machine-temperature-system-failure"],
        assets["realadexchange-exchange-2-cpc-results"],
    )
    assert (machine.asset_type.slug, machine.asset_type.window_s, machine.asset_type.step_s) == (
        "nab-series",
        3600,
        300,
    )
    assert (exchange.asset_type.window_s, exchange.asset_type.step_s) == (12 * 3600, 3600)
    assert assets["ambient-temperature-system-failure"].asset_type == exchange.asset_type  # hourly too
    assert assets["artificialnoanomaly-nyc-taxi"].asset_type == machine.asset_type

    # A series outside SERIES_META: labelled by its stem, no unit, no range, its own period.
    (sensor,) = exchange.sensors.all()
    assert (sensor.unit, sensor.valid_min, sensor.valid_max, sensor.sample_period_s) == (
        "",
        None,
        None,
        3600.0,
    )
    assert exchange.name == "NAB exchange-2 cpc results"
    assert Reading.objects.filter(sensor=sensor).count() == 30
    assert sorted(exchange.labels.values_list("fault_type", flat=True)) == ["anomaly", "anomaly_window"]
    assert not assets["artificialnoanomaly-nyc-taxi"].labels.exists()
    assert assets["nyc-taxi"].labels.filter(fault_type="anomaly_window").count() == 5


@pytest.mark.django_db
def test_nab_subsets_select_a_category_a_qualified_series_or_an_unambiguous_stem(nab_categories):
    load("nab", "--subset", "realAdExchange", "--subset", "realKnownCause/nyc_taxi", "--limit-rows", "5")
    load("nab", "--subset", "machine_temperature_system_failure", "--limit-rows", "5")
    load("nab", "--subset", "artificialNoAnomaly/nyc_taxi.csv", "--limit-rows", "5")
    assert set(Asset.objects.filter(site__slug="nab").values_list("tag", flat=True)) == {
        "realadexchange-exchange-2-cpc-results",
        "nyc-taxi",
        "machine-temperature-system-failure",
        "artificialnoanomaly-nyc-taxi",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("subset", "message"),
    [
        ("realTweets", "valid subsets: categories artificialNoAnomaly, realAdExchange, realKnownCause"),
        ("realAdExchange/nope", "series artificialNoAnomaly/nyc_taxi, realAdExchange/exchange-2_cpc_results"),
        (
            "nyc_taxi",
            "artificialNoAnomaly/nyc_taxi.csv, realKnownCause/nyc_taxi.csv): name it as <category>/<stem>",
        ),
    ],
)
def test_an_unknown_or_ambiguous_nab_subset_is_a_command_error_listing_the_valid_ones(
    nab_categories, subset, message
):
    with pytest.raises(CommandError) as excinfo:
        load("nab", "--subset", subset)
    assert message in str(excinfo.value)
    assert not Asset.objects.exists()


@pytest.mark.django_db
def test_a_nab_category_the_label_files_do_not_name_is_refused_before_anything_is_stored(nab_categories):
    _nab_csv(nab_categories / "data" / "plantHistorian" / "pump_7.csv", 10, timedelta(minutes=5))
    with pytest.raises(CommandError, match=r"has no windows for 'plantHistorian/pump_7.csv'"):
        load("nab", "--limit-rows", "5")
    assert not Reading.objects.exists()
    (nab_categories / "data" / "realEmpty").mkdir()
    with pytest.raises(CommandError, match="NAB category 'realEmpty' holds no series"):
        load("nab", "--subset", "realEmpty")


@pytest.mark.django_db
def test_ai4i_rows_are_stamped_a_minute_apart_and_failure_modes_become_fault_labels_with_the_mode():
    need("ai4i")
    out, _ = load("ai4i", "--limit-rows", "200")
    assert "one a minute" in out

    mill = Asset.objects.get(site__slug="ai4i", tag="mill")
    torque = mill.sensors.get(role__key="torque")
    assert torque.unit == "Nm" and torque.sample_period_s == 60.0
    stamps = list(Reading.objects.filter(sensor=torque).order_by("ts").values_list("ts", flat=True)[:3])
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [timedelta(minutes=1)] * 2
    reasons = set(mill.labels.values_list("reason", flat=True))
    assert reasons and reasons <= {"TWF", "HDF", "PWF", "OSF", "RNF", "unspecified"}
    assert set(mill.labels.values_list("kind", "source").distinct()) == {
        (LabelKind.FAULT, LabelSource.DATASET)
    }


@pytest.mark.django_db
def test_ims_bearings_become_assets_with_snapshot_readings_and_the_card_failure_label():
    need("ims")
    load("ims", "--subset", "test1/3", "--subset", "test2", "--limit-rows", "50")

    test1 = Asset.objects.get(site__slug="ims", tag="test1-bearing3")
    assert set(test1.sensors.values_list("role__key", flat=True)) == {"vibration", "vibration_y"}
    assert Reading.objects.filter(sensor__asset=test1).count() == 100
    (failure,) = test1.labels.all()
    assert failure.fault_type == "inner_race_defect" and failure.start.date().isoformat() == "2003-11-25"

    assert Asset.objects.filter(site__slug="ims", tag__startswith="test2-").count() == 4
    bearing1 = Asset.objects.get(site__slug="ims", tag="test2-bearing1")
    (outer,) = bearing1.labels.all()
    assert outer.fault_type == "outer_race_failure"
    assert outer.start == datetime(2004, 2, 16, 4, 12, tzinfo=dt_timezone.utc)
    # The stopped-rig tail (~0.001 g) is trimmed: the failure is the last running snapshot, 06:02:39.
    assert outer.end == datetime(2004, 2, 19, 6, 2, 39, tzinfo=dt_timezone.utc)
    assert not Asset.objects.get(site__slug="ims", tag="test2-bearing2").labels.exists()
    assert AssetType.objects.get(slug="ims-bearing").roles.get(key="vibration").unit == "g"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("dataset", "subset", "listed"),
    [
        ("skab", "valve9", "valve1 (valve1/0..15)"),
        ("cmapss", "FD009", "FD001, FD002, FD003"),
        ("nab", "no_such_series", "machine_temperature_system_failure"),
        ("ai4i", "lathe", "mill"),
        ("ims", "test1/7", "test2 (test2/1..4)"),
    ],
)
def test_an_unknown_subset_is_a_command_error_listing_the_valid_ones(dataset, subset, listed):
    need(dataset)
    with pytest.raises(CommandError, match="valid subsets") as excinfo:
        load(dataset, "--subset", subset)
    assert listed in str(excinfo.value)
    assert not Reading.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("dataset", ["skab", "cmapss", "nab", "ai4i", "ims"])
def test_missing_data_is_a_command_error_naming_the_path_and_vigil_data_dir(dataset, settings, tmp_path):
    settings.VIGIL_DATA_DIR = tmp_path / "nowhere"
    with pytest.raises(CommandError, match="VIGIL_DATA_DIR") as excinfo:
        load(dataset)
    assert str(tmp_path / "nowhere") in str(excinfo.value)


@pytest.mark.django_db
def test_a_non_positive_row_limit_is_refused():
    need("skab")
    with pytest.raises(CommandError, match="--limit-rows must be at least 1"):
        load("skab", "--subset", "valve1/0", "--limit-rows", "0")


@pytest.mark.django_db
def test_a_changed_slice_replaces_the_stale_dataset_labels_but_keeps_feedback_labels():
    need("skab")
    load("skab", "--subset", "valve1/3", "--limit-rows", "500")
    asset = Asset.objects.get(tag="valve1-3")
    (normal,) = asset.labels.all()
    manual = Label.objects.create(
        asset=asset, start=normal.start, end=normal.end, kind="normal", source="feedback"
    )

    load("skab", "--subset", "valve1/3", "--limit-rows", "700")
    kinds = list(asset.labels.filter(source="dataset").order_by("start").values_list("kind", flat=True))
    assert kinds == ["normal", "fault"]
    assert Label.objects.filter(pk=manual.pk).exists()
    assert not Label.objects.filter(pk=normal.pk).exists()


def test_the_progress_bar_writes_percentages_and_ends_at_100():
    stream = io.StringIO()
    bar = Progress(200, stream, label="x")
    bar.advance(50)
    bar.advance(150)
    bar.close()
    text = stream.getvalue()
    assert " 25% (50/200)" in text and "100% (200/200)" in text and text.endswith("\n")


def test_the_skab_reader_keeps_readings_and_labels_aligned_on_a_limited_slice():
    need("skab")
    (unit,) = skab.read_units(["valve1/3"], limit_rows=650)
    assert len(unit.ts) == 650 and all(len(v) == 650 for v in unit.values.values())
    fault = [label for label in unit.labels if label.kind == "fault"]
    assert len(fault) == 1 and fault[0].end == unit.ts[-1]
    assert np.all(np.diff(unit.ts) > 0)


@pytest.mark.django_db
def test_loading_fewer_rows_after_a_full_load_keeps_the_labels_past_the_rows_loaded():
    # A preview (--limit-rows) of a file loaded in full before: its labels come from the rows it reads, so
    # it knows nothing of the fault past row 500 and must not delete it, nor cut the normal run short.
    need("skab")
    load("skab", "--subset", "valve1/3")
    asset = Asset.objects.get(site__slug="skab", tag="valve1-3")
    full = sorted(asset.labels.values_list("pk", "kind", "start", "end"), key=lambda row: row[2])
    assert [kind for _, kind, _, _ in full][:2] == ["normal", "fault"]

    out, _ = load("skab", "--subset", "valve1/3", "--limit-rows", "500")
    assert sorted(asset.labels.values_list("pk", "kind", "start", "end"), key=lambda row: row[2]) == full
    assert "labels +0 -0" in out

    # A slice that ends inside the fault: the stored fault is the one it cut short, kept whole.
    load("skab", "--subset", "valve1/3", "--limit-rows", "700")
    assert sorted(asset.labels.values_list("pk", "kind", "start", "end"), key=lambda row: row[2]) == full


@pytest.mark.django_db
def test_a_preview_still_replaces_a_label_that_the_rows_it_read_contradict():
    need("skab")
    load("skab", "--subset", "valve1/3", "--limit-rows", "700")
    asset = Asset.objects.get(site__slug="skab", tag="valve1-3")
    normal = asset.labels.get(kind="normal")
    # A stored dataset label the file does not say (e.g. from an older copy of the file) inside the rows read.
    wrong = Label.objects.create(
        asset=asset, start=normal.start, end=normal.start + timedelta(seconds=30), kind="fault",
        fault_type="valve_closed_inlet", source=LabelSource.DATASET,
    )  # fmt: skip

    out, _ = load("skab", "--subset", "valve1/3", "--limit-rows", "500")
    assert not Label.objects.filter(pk=wrong.pk).exists() and "labels +0 -1" in out
    assert asset.labels.filter(kind="fault").count() == 1


@pytest.mark.django_db
def test_a_shorter_ai4i_load_keeps_the_failure_labels_of_the_rows_it_did_not_read():
    need("ai4i")
    load("ai4i", "--limit-rows", "2000")
    mill = Asset.objects.get(site__slug="ai4i", tag="mill")
    stored = set(mill.labels.values_list("pk", "start"))
    cut = at(ai4i.stamp(200))
    assert any(start > cut for _, start in stored) and any(start <= cut for _, start in stored)

    out, _ = load("ai4i", "--limit-rows", "200")
    assert set(mill.labels.values_list("pk", "start")) == stored and "labels +0 -0" in out
