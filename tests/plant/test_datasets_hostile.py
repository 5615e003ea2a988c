"""load_dataset on hostile files: every malformed dataset is a CommandError naming the file and what is
wrong with it, and nothing is stored."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from plant.models import Label, Reading

SKAB_HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
    "Volume Flow RateRMS;anomaly;changepoint\n"
)
SKAB_ROW = "2020-03-09 10:34:{s:02d};0.027;0.039;0.87;0.054;75.4;25.8;244.0;32.0;{anomaly};0.0\n"
AI4I_HEADER = (
    "\ufeffUDI,Product ID,Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],"
    "Torque [Nm],Tool wear [min],Machine failure,TWF,HDF,PWF,OSF,RNF\n"
)
AI4I_ROW = "{udi},M14860,M,298.1,308.6,1551,42.8,0,0,0,0,0,0,0\n"
IMS_HEADER = ",Datetime," + ",".join(f"Bearing {b}-{x}" for b in range(1, 5) for x in "AB") + "\n"


def skab(*rows: str) -> tuple[str, bytes]:
    return "skab/data/valve1/1.csv", (SKAB_HEADER + "".join(rows)).encode()


def ai4i(*rows: str) -> tuple[str, bytes]:
    return "ai4i2020/ai4i2020.csv", (AI4I_HEADER + "".join(rows)).encode()


def ims(*rows: str) -> tuple[str, bytes]:
    return "ims_bearing_features/1st_test_mean_abs_per_snapshot.csv", (IMS_HEADER + "".join(rows)).encode()


def nab(body: bytes) -> tuple[str, bytes]:
    return "nab/data/realKnownCause/nyc_taxi.csv", body


GOOD_SKAB = [SKAB_ROW.format(s=s, anomaly="0.0") for s in range(3)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("dataset", "file", "message"),
    [
        # Bytes the reader cannot decode were a bare "'utf-8' codec can't decode byte 0xe9 in position 135".
        ("skab", (skab()[0], skab(*GOOD_SKAB)[1] + b"2020-03-09 10:35:00;0.0\xe9\n"), "1.csv: not UTF-8 text (byte 0xe9"),
        ("ai4i", (ai4i(AI4I_ROW.format(udi=1))[0], bytes(range(256)) * 4), "ai4i2020.csv: not UTF-8 text"),
        ("ims", (ims()[0], IMS_HEADER.encode("utf-16")), "snapshot.csv: not UTF-8 text (byte 0xff"),
        ("nab", nab(b"timestamp,value\n2014-07-01 00:00:00,1\xff\n"), "nyc_taxi.csv: not UTF-8 text"),
        # An anomaly of 1e400 is infinite: an OverflowError converting the labels.
        ("skab", skab(*GOOD_SKAB, SKAB_ROW.format(s=4, anomaly="1e400")), "values other than 0 and 1"),
        # A short row left None in DictReader's row: an AttributeError.
        ("ai4i", ai4i(AI4I_ROW.format(udi=1), "2,L47181,L,298.2\n"), "ai4i2020.csv, line 3: 4 columns, expected 14"),
        # A file of only a header loaded "0 readings" and deleted the run's labels from an earlier load.
        ("skab", skab(), "1.csv: no rows after the header"),
        ("ai4i", ai4i(), "ai4i2020.csv: no rows after the header"),
    ],
    ids=["skab-latin1", "ai4i-binary", "ims-utf16", "nab-latin1", "skab-inf-label", "ai4i-short-row",
         "skab-header-only", "ai4i-header-only"],
)  # fmt: skip
def test_a_malformed_dataset_file_is_a_command_error_naming_it_and_nothing_is_stored(
    settings, tmp_path, dataset, file, message
):
    relative, content = file
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    settings.VIGIL_DATA_DIR = tmp_path
    with pytest.raises(CommandError) as error:
        call_command("load_dataset", dataset, stdout=io.StringIO(), stderr=io.StringIO())
    assert message in str(error.value)
    assert str(Path(relative).name) in str(error.value)
    assert not Reading.objects.exists() and not Label.objects.exists()


@pytest.mark.django_db
def test_an_ims_folder_without_a_test_file_is_missing_data_not_an_empty_load(settings, tmp_path):
    # A directory where the test file should be: "loaded ims: 0 assets", exit 0.
    (tmp_path / "ims_bearing_features" / "1st_test_mean_abs_per_snapshot.csv").mkdir(parents=True)
    settings.VIGIL_DATA_DIR = tmp_path
    with pytest.raises(
        CommandError, match=r"ims_bearing_features holds no IMS test file .*VIGIL_DATA_DIR is"
    ):
        call_command("load_dataset", "ims", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
def test_a_header_only_file_keeps_the_labels_of_an_earlier_load(settings, tmp_path):
    relative, content = skab(*GOOD_SKAB, *(SKAB_ROW.format(s=s, anomaly="1.0") for s in range(3, 6)))
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    settings.VIGIL_DATA_DIR = tmp_path
    call_command("load_dataset", "skab", stdout=io.StringIO(), stderr=io.StringIO())
    labels = set(Label.objects.values_list("pk", flat=True))
    assert labels and Reading.objects.count() == 6 * 8

    path.write_bytes(skab()[1])
    with pytest.raises(CommandError, match="no rows after the header"):
        call_command("load_dataset", "skab", stdout=io.StringIO(), stderr=io.StringIO())
    assert set(Label.objects.values_list("pk", flat=True)) == labels


@pytest.mark.django_db
@pytest.mark.parametrize("subsets", [[",,,"], ["", " "]])
def test_a_subset_option_that_names_nothing_is_refused_not_taken_as_every_part(settings, tmp_path, subsets):
    # It loaded the whole dataset (every C-MAPSS engine: minutes of work nobody asked for).
    relative, content = skab(*GOOD_SKAB)
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_bytes(content)
    settings.VIGIL_DATA_DIR = tmp_path
    args = [item for subset in subsets for item in ("--subset", subset)]
    with pytest.raises(CommandError, match=r"--subset .* names no part of skab; valid: anomaly-free, valve1"):
        call_command("load_dataset", "skab", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_a_skab_file_named_in_digits_that_are_not_ascii_is_not_an_experiment(settings, tmp_path):
    # "².csv" passed str.isdigit(): int() refused it and the whole load was "invalid literal for int()".
    relative, content = skab(*GOOD_SKAB)
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    (path.parent / "\u00b2.csv").write_bytes(content)
    settings.VIGIL_DATA_DIR = tmp_path
    call_command("load_dataset", "skab", stdout=io.StringIO(), stderr=io.StringIO())
    assert Reading.objects.count() == 3 * 8  # valve1/1 only
