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
IMS_ROW = "{i},2003.10.22.12.{m:02d}.24," + ",".join(["0.1"] * 8) + "\n"


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
    ],
    ids=["skab-latin1", "ai4i-binary", "ims-utf16", "nab-latin1"],
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
