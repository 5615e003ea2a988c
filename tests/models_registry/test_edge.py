"""Edge bundles: export; the Django-free runner scores as onnxruntime does; bad bundles and input refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from edge import runner as edge
from plant.series import load_series
from detection.features import build_windows, feature_names
from tests.conftest import T0, make_asset, make_pump_type
from tests.models_registry.conftest import corrupt, linear_onnx, make_readings, make_version

ROLES = ["current", "pressure", "temperature", "vibration"]


@pytest.fixture
def scored_asset(site):
    """An asset with 10 minutes of readings, the last 4 of them faulty."""
    asset = make_asset(site, tag="p-101", asset_type=make_pump_type())
    make_readings(asset, T0, 600, seed=3, fault_from=360)
    return asset


@pytest.fixture
def version(scored_asset):
    """A linear model scoring vibration roughness (vibration__diff_rms): low when healthy, high in faults."""
    names = feature_names(ROLES)
    weights = np.zeros(len(names), dtype=np.float32)
    weights[names.index("vibration__diff_rms")] = 1.0
    rng = np.random.default_rng(1)
    return make_version(
        scored_asset.asset_type,
        onnx_bytes=linear_onnx(len(names), weights=weights),
        feature_spec=names,
        background=np.abs(rng.normal(1.0, 0.1, size=(10, len(names)))),
        open_threshold=0.3,
        clear_threshold=0.2,
    )


@pytest.fixture
def bundle(version, scored_asset, tmp_path) -> Path:
    path = tmp_path / "bundle.zip"
    call_command(
        "export_bundle",
        version.name,
        str(version.version),
        "--asset",
        scored_asset.tag,
        "--output",
        str(path),
    )
    return path


def write_csv(asset, path: Path, *, iso_every: int = 2) -> dict[str, tuple]:
    """The asset's readings as sensor,ts,value (mixing epoch and ISO times); returns the series by role."""
    sensors = {sensor.pk: (sensor.key, sensor.role.key) for sensor in asset.sensors.select_related("role")}
    series = load_series({pk: role for pk, (_, role) in sensors.items()}, T0, T0.replace(hour=23))
    keys = {role: key for key, role in sensors.values()}
    lines = ["sensor,ts,value"]
    for role, (ts, values, _) in series.items():
        for i, (moment, value) in enumerate(zip(ts, values, strict=True)):
            if i % iso_every:
                from datetime import datetime, timedelta, timezone

                stamp = datetime.fromtimestamp(moment, tz=timezone(timedelta(hours=2))).isoformat()
            else:
                stamp = repr(float(moment))
            lines.append(f"{keys[role]},{stamp},{float(value)!r}")
    path.write_text("\n".join(lines) + "\n")
    return series


def run_edge(*args: str, stdin: str | None = None) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    old_err, sys.stderr = sys.stderr, err
    try:
        code = edge.main(list(args), stdin=io.StringIO(stdin) if stdin is not None else None, stdout=out)
    finally:
        sys.stderr = old_err
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, rows, err.getvalue()


def test_the_bundle_holds_the_model_its_spec_and_checksums(bundle, version, scored_asset):
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == ["checksums.json", "model.onnx", "spec.json"]
        spec = json.loads(archive.read("spec.json"))
        checksums = json.loads(archive.read("checksums.json"))
        assert archive.read("model.onnx") == version.read_onnx_bytes()
    assert spec["feature_names"] == feature_names(ROLES)
    assert spec["roles"] == ROLES
    assert (spec["window_s"], spec["step_s"]) == (60, 10)
    assert (spec["open_threshold"], spec["clear_threshold"]) == (0.3, 0.2)
    assert spec["output_spec"] == {"name": "score", "direction": "higher"}
    assert spec["sensors"] == {f"north.p-101.{role}": role for role in ROLES}
    assert spec["model"]["sha256"] == version.sha256 == checksums["model.onnx"]
    # What the agent explains its local alerts with: the version's background and the roles' words.
    assert np.allclose(spec["background"], version.background)
    roles = scored_asset.asset_type.roles.values_list("key", "label", "unit")
    assert spec["role_words"] == {key: [label, unit] for key, label, unit in roles}


def test_an_exported_bundle_explains_a_faulty_window_at_the_edge(scored_asset, tmp_path):
    """A model weighing only vibration roughness, its background the asset's healthy windows: the edge
    names the vibration role in its type's words for a faulty window."""
    from detection.bundle import load_bundle
    from edge.model import EdgeModel
    from models_registry.bundle import build_bundle

    series = load_series(dict(scored_asset.sensors.values_list("pk", "role__key")), T0, T0.replace(hour=23))
    windows = build_windows(series, ROLES, window_s=60, step_s=10)
    names = feature_names(ROLES)
    weights = np.zeros(len(names), dtype=np.float32)
    weights[names.index("vibration__diff_rms")] = 1.0
    healthy = make_version(
        scored_asset.asset_type,
        name="edge-words",
        onnx_bytes=linear_onnx(len(names), weights=weights),
        feature_spec=names,
        background=windows.X[:20],
        open_threshold=0.3,
        clear_threshold=0.2,
    )
    path = tmp_path / "words.zip"
    path.write_bytes(build_bundle(healthy, scored_asset))
    model = EdgeModel(load_bundle(str(path)))
    scored = model.score(series)
    last = max(scored.inputs)
    assert scored.scores[last] > 0.3  # the last window is in the fault
    reason = model.reason(scored.inputs[last])
    vibration = scored_asset.asset_type.roles.get(key="vibration")
    assert reason is not None and reason.role == "vibration" and reason.sensor == vibration.label
    assert vibration.unit in reason.sentence


def test_the_edge_runner_scores_exactly_what_onnxruntime_scores_on_the_same_windows(
    bundle, scored_asset, tmp_path
):
    csv_path = tmp_path / "readings.csv"
    series = write_csv(scored_asset, csv_path)
    code, rows, err = run_edge(str(bundle), str(csv_path))
    assert code == 0, err

    windows = build_windows(series, ROLES, window_s=60, step_s=10)
    session = ort.InferenceSession(bundle_model(bundle), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": windows.X})[0][:, 0]
    assert len(rows) == len(windows.ends) > 40
    assert np.allclose([row["score"] for row in rows], expected, rtol=0, atol=1e-6)
    alerts = [row["alert"] for row in rows]
    assert not any(alerts[:25]) and all(alerts[-20:])  # healthy first six minutes, faulty last four
    assert rows[-1]["window_end"] == "2026-01-05T08:09:50+00:00"


def test_the_runner_reads_csv_from_stdin(bundle, scored_asset, tmp_path):
    csv_path = tmp_path / "readings.csv"
    write_csv(scored_asset, csv_path)
    from_file = run_edge(str(bundle), str(csv_path))[1]
    code, from_stdin, _ = run_edge(str(bundle), "-", stdin=csv_path.read_text())
    assert code == 0 and from_stdin == from_file


def test_the_runner_works_as_a_module_without_importing_django(bundle, scored_asset, tmp_path):
    csv_path = tmp_path / "readings.csv"
    write_csv(scored_asset, csv_path)
    probe = (
        "import sys, edge.runner as e; code = e.main(sys.argv[1:]); "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'django'); "
        "sys.exit(f'django imported: {leaked}' if leaked else code)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(bundle), str(csv_path)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) > 40


def bundle_model(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read("model.onnx")


def rewrite(path: Path, name: str, change) -> None:
    with zipfile.ZipFile(path) as archive:
        contents = {item: archive.read(item) for item in archive.namelist()}
    contents = change(contents, name)
    with zipfile.ZipFile(path, "w") as archive:
        for item, data in contents.items():
            archive.writestr(item, data)


def flip(contents: dict[str, bytes], name: str) -> dict[str, bytes]:
    data = bytearray(contents[name])
    data[len(data) // 2] ^= 0x01
    return {**contents, name: bytes(data)}


def drop(contents: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {item: data for item, data in contents.items() if item != name}


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("model.onnx", flip, "checksum mismatch for model.onnx"),
        ("spec.json", flip, "checksum mismatch for spec.json"),
        ("model.onnx", drop, "has no model.onnx"),
        ("checksums.json", drop, "has no checksums.json"),
    ],
    ids=["model-tampered", "spec-tampered", "model-missing", "checksums-missing"],
)
def test_a_tampered_or_incomplete_bundle_exits_non_zero_with_a_message(
    bundle, tmp_path, name, change, message
):
    rewrite(bundle, name, change)
    code, rows, err = run_edge(str(bundle), "-", stdin="x,1,2\n")
    assert code == 3 and rows == []
    assert message in err and "Traceback" not in err


def test_a_tampered_model_is_refused_by_the_command_line_runner_without_a_traceback(bundle):
    rewrite(bundle, "model.onnx", flip)
    done = subprocess.run(
        [sys.executable, "-m", "edge.runner", str(bundle)],
        cwd=settings.BASE_DIR,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert (
        done.stderr.strip()
        == "edge: error: checksum mismatch for model.onnx: the bundle was modified or damaged"
    )


def test_a_missing_bundle_or_csv_file_is_named(bundle, tmp_path):
    code, _, err = run_edge(str(tmp_path / "nope.zip"), "-", stdin="")
    assert code == 3 and "does not exist" in err
    code, _, err = run_edge(str(bundle), str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read" in err and "nope.csv" in err


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("sensor,ts,value\n", "has no readings"),
        ("", "has no readings"),
        (
            "north.p-101.current,1767600000,1.0\nmystery.sensor,1767600000,1.0\n",
            "unknown sensor(s) in the input: mystery.sensor",
        ),
        ("north.p-101.current,2026-01-05T08:00:00,1.0\n", "has no UTC offset"),
        ("north.p-101.current,yesterday,1.0\n", "neither epoch seconds nor ISO 8601"),
        ("north.p-101.current,1767600000,high\n", "line 1: value 'high' is not a number"),
        ("north.p-101.current,1767600000\n", "expected 3 columns"),
        ("north.p-101.current,1767600000,1.0\n", "less than one 60 s window"),
    ],
    ids=[
        "header-only",
        "empty",
        "unknown-sensor",
        "naive-time",
        "bad-time",
        "bad-value",
        "short-row",
        "too-short",
    ],
)
def test_input_that_does_not_fit_the_bundle_exits_non_zero_with_a_message(bundle, csv_text, message):
    code, rows, err = run_edge(str(bundle), "-", stdin=csv_text)
    assert code == 2 and rows == []
    assert message in err and "Traceback" not in err


def test_role_keys_work_as_sensor_names_in_a_bundle_made_without_an_asset(version, scored_asset, tmp_path):
    path = tmp_path / "generic.zip"
    call_command("export_bundle", version.name, "1", "--output", str(path))
    lines = ["sensor,ts,value"] + [
        f"{role},{1767600000 + s},{1.0 + (s % 3) * 0.1}" for s in range(120) for role in ROLES
    ]
    code, rows, err = run_edge(str(path), "-", stdin="\n".join(lines))
    assert code == 0, err
    assert len(rows) == 6 and all(row["alert"] is False for row in rows)


def test_hysteresis_opens_above_the_open_threshold_and_holds_until_below_the_clear_one():
    scores = [0.1, 0.35, 0.25, None, 0.21, 0.19, 0.3, 0.31]
    assert edge.alert_states(scores, 0.3, 0.2) == [False, True, True, True, True, False, False, True]
    assert edge.alert_states([5, 1.5, 1, 2, 3], 1.5, 2.5, higher=False) == [False, False, True, True, False]


def test_the_runner_opens_and_closes_alerts_after_as_many_windows_as_the_server():
    # Open after 3 windows above 0.3, close after 2 below 0.2: the lifecycle's rules (detection.rules).
    scores = [0.4, 0.4, 0.1, 0.4, 0.4, 0.4, 0.25, 0.1, 0.35, 0.1, 0.1]
    states = edge.alert_states(scores, 0.3, 0.2, open_windows=3, clear_windows=2)
    # Opens at the third window of the second run above 0.3; 0.25 holds it (hysteresis band); the 0.35
    # breaks the first run below 0.2; the second window of the next run closes it.
    assert states == [False, False, False, False, False, True, True, True, True, True, False]


def test_a_bundle_ships_the_alert_rules_and_the_assets_threshold_override(version, scored_asset, settings):
    from alerts.models import ThresholdOverride
    from models_registry.bundle import bundle_spec

    settings.VIGIL_ALERT_OPEN_WINDOWS, settings.VIGIL_ALERT_CLEAR_WINDOWS = 4, 7
    spec = bundle_spec(version, scored_asset)
    assert (spec["open_windows"], spec["clear_windows"]) == (4, 7)
    assert spec["open_threshold"] == version.open_threshold
    ThresholdOverride.objects.create(
        asset=scored_asset,
        model_version=version,
        open_threshold=version.open_threshold * 2,
        clear_threshold=version.clear_threshold * 2,
    )
    spec = bundle_spec(version, scored_asset)
    assert spec["open_threshold"] == pytest.approx(version.open_threshold * 2)
    assert spec["clear_threshold"] == pytest.approx(version.clear_threshold * 2)


def test_a_bundle_ships_the_ingests_quality_rules_and_the_agent_flags_its_readings_with_them(
    version, scored_asset, settings, tmp_path
):
    """The agent flags the readings it decides on as the ingest flags the stored ones (detection.quality):
    the bundle carries the rules' settings and each sensor's valid range and sample period."""
    from connectivity.points import Sample
    from detection.bundle import load_bundle
    from edge.decide import AssetDecider
    from edge.model import EdgeModel
    from models_registry.bundle import build_bundle
    from plant.choices import QualityFlag

    settings.VIGIL_QUALITY_STUCK_SAMPLES = 7
    sensor = scored_asset.sensors.get(role__key="vibration")
    sensor.valid_min, sensor.valid_max, sensor.sample_period_s = 0.0, 25.0, 2.0
    sensor.save()
    path = tmp_path / "quality.zip"
    path.write_bytes(build_bundle(version, scored_asset))
    bundle = load_bundle(str(path))
    assert bundle.spec["quality"]["rules"]["stuck_samples"] == 7
    assert bundle.spec["quality"]["sensors"][sensor.key] == [0.0, 25.0, 2.0]

    decider = AssetDecider(scored_asset.tag, EdgeModel(bundle), bundle.spec["sensors"])
    decider.add([Sample(sensor.key, 100.0 + 2 * i, 3.0 + 0.1 * (i % 3)) for i in range(10)])
    decider.add([Sample(sensor.key, 130.0, 40.0), Sample(sensor.key, 132.0, 3.1)])
    decider.add([Sample(sensor.key, 134.0 + 2 * i, 3.1) for i in range(7)])
    flags = decider._buffers["vibration"].quality
    # Past valid_max: out of range; 12 s after the previous reading, more than 3 sample periods: a gap.
    assert flags[10] == QualityFlag.OUT_OF_RANGE | QualityFlag.GAP
    assert flags[:10] == [0] * 10 and flags[11:17] == [0] * 6
    assert flags[17:] == [QualityFlag.STUCK] * 2  # from the 7th equal value on (the bundle's stuck_samples)


def test_export_refuses_a_damaged_artifact_and_an_asset_of_another_type(version, site, tmp_path):
    fan_asset = make_asset(site, tag="f-1", asset_type=make_pump_type("fan"))
    with pytest.raises(CommandError, match="is a Fan, but pump-anomaly v1 is for Pump"):
        call_command(
            "export_bundle",
            "pump-anomaly",
            "1",
            "--asset",
            fan_asset.tag,
            "--output",
            str(tmp_path / "a.zip"),
        )
    with pytest.raises(CommandError, match="no asset with tag or id 'ghost'"):
        call_command("export_bundle", "pump-anomaly", "1", "--asset", "ghost")
    corrupt(version)
    with pytest.raises(CommandError, match="checksum check failed"):
        call_command("export_bundle", "pump-anomaly", "1", "--output", str(tmp_path / "b.zip"))
    assert not (tmp_path / "b.zip").exists()
