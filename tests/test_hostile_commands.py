"""The hostile-argument sweep of every management command, the commands' part of tests/test_hostile_sweep.py.

Every command in */management/commands/ is called with missing, junk, negative, huge, wrong-type,
non-existent-file and out-of-range arguments (COMMAND_CASES; a command without cases fails
test_every_command_is_swept). Each must end in a CommandError whose message names the problem, never another
exception, and write no traceback. The long-running commands (demo, simulate, replay, bridge) are given only
arguments they must refuse before they start anything: the parts that would start (the demo's processes and
Redis, the simulator's and the replay's runs, the bridge's loop) are replaced by a stub that fails the test.
A handful of cases run as real ``python manage.py`` subprocesses, whose stderr must hold the message and no
"Traceback".
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from plant.models import Connection, Gateway
from tests.conftest import make_asset, make_pump_type, make_site
from tests.models_registry.conftest import make_version

ROOT = Path(django_settings.BASE_DIR)
HUGE = "9" * 30
NEXT_YEAR = f"{date.today().year + 1}-01-01"  # in the future, within the years plant.params accepts
T = ("--token", "t")  # simulate's token: every case below is refused before a request is made
ALPHA = ("--site", "alpha")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# command → [(argv, what the message must say)]. {port} is a free TCP port, {token} alpha's gateway token.
COMMAND_CASES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "create_gateway": [
        ((), "the following arguments are required: site, name"),
        (("nosuch", "edge"), "unknown site 'nosuch'; known sites: alpha, beta"),
        (("alpha", "  "), "the gateway name must not be empty"),
        (("alpha", "x" * 5000), "the gateway name is longer than 120 characters"),
        (("a\x00", "edge"), "site: 'a\\x00' contains a NUL character"),
        (("alpha", "\udcff"), "name: '\\udcff' contains bytes that are not UTF-8"),
        (("x" * 3000, "edge"), "unknown site 'xxx"),
    ],
    "seed_demo": [
        (("--assets", "-1"), "--assets must be between 1 and 200 (got -1)"),
        (("--assets", "0"), "--assets must be between 1 and 200 (got 0)"),
        (("--assets", HUGE), f"--assets must be between 1 and 200 (got {HUGE})"),
        (("--assets", "abc"), "argument --assets: invalid int value: 'abc'"),
        (("--assets", "2.5"), "argument --assets: invalid int value: '2.5'"),
    ],
    "bridge": [
        (("--site", "nosuch"), "unknown site 'nosuch'; known sites: alpha, beta"),
        # Empty used to mean "every site": beta's connection would have run.
        (("--site", ""), "--site is empty"),
        (("--site", "   "), "--site is empty"),
        (("--site", "alpha"), "no enabled connection on site alpha"),
    ],
    "load_dataset": [
        ((), "the following arguments are required: dataset"),
        (("junk",), "argument dataset: invalid choice: 'junk'"),
        (("skab", "--limit-rows", "-1"), "--limit-rows must be at least 1, got -1"),
        (("skab", "--limit-rows", "0"), "--limit-rows must be at least 1, got 0"),
        (("skab", "--limit-rows", "x"), "argument --limit-rows: invalid int value: 'x'"),
        (("skab", "--subset", ","), "--subset ',' names no part of skab"),
        (("skab",), "SKAB data not found at"),
        (("nab", "--subset", "../../etc"), "NAB data not found at"),
        (("cmapss", "--subset", "FD009"), "unknown C-MAPSS subset 'FD009'; valid subsets: FD001"),
        (("cmapss", "--subset", "FD001/test/-5"), "unknown C-MAPSS subset 'FD001/test/-5'"),
        # "²" passed str.isdigit() and int() refused it: "invalid literal for int() with base 10".
        (("cmapss", "--subset", "FD001/test/\u00b2"), "unknown C-MAPSS subset 'FD001/test/\u00b2'"),
    ],
    "replay": [
        ((), "the following arguments are required: run"),
        (("junk",), "cannot replay 'junk': give <dataset>/<run>"),
        (("skab/",), "cannot replay 'skab/': give <dataset>/<run>"),
        (("skab/../../etc/passwd",), "SKAB data not found at"),
        (("cmapss/FD001/test/\u00b2",), "unknown C-MAPSS subset 'FD001/test/\u00b2'"),
        (("cmapss/FD001/test/" + HUGE,), "train_FD001.txt: no rows"),  # the files of the world are empty
        (("skab/valve1/3", "--speed", "0"), "--speed must be positive (got 0.0)"),
        (("skab/valve1/3", "--speed", "nan"), "--speed must be positive (got nan)"),
        (("skab/valve1/3", "--speed=-inf"), "--speed must be positive (got -inf)"),
        (("skab/valve1/3", "--speed", "fast"), "argument --speed: invalid float value: 'fast'"),
        (("skab/valve1/3", "--batch-seconds", "-1"), "--batch-seconds must be positive (got -1.0)"),
        (("skab/valve1/3", "--max-retries", "-1"), "--max-retries must be >= 0 (got -1)"),
        (("skab/valve1/3", "--limit-rows", "0"), "--limit-rows must be at least 1, got 0"),
        (("skab/valve1/3", "--url", "ftp://x"), "--url: 'ftp://x' is not an http:// or https:// URL"),
        (("skab/valve1/3", "--url", "http://[::1"), "--url: 'http://[::1' is not a URL"),
        # httpx takes any port number: the replay started and retried for a minute.
        (("skab/valve1/3", "--url", "http://127.0.0.1:99999"), "port 99999 is not a TCP port"),
        # Read as "no token": the replay gateway's token was rotated (tests/plant/test_replay.py).
        (("skab/valve1/3", "--token", ""), "--token is empty: give a gateway token"),
        (("skab/valve1/3", "--token", " "), "--token is empty: give a gateway token"),
    ],
    "simulate": [
        ((), "no gateway token: pass --token or set GATEWAY_TOKEN"),
        # Read as left out: with GATEWAY_TOKEN set it posted with that gateway.
        (("--token", ""), "--token is empty: give a gateway token, or leave it out to use $GATEWAY_TOKEN"),
        ((*T, "--speed", "0"), "--speed must be positive (got 0.0)"),
        ((*T, "--speed", "nan"), "--speed must be positive (got nan)"),
        ((*T, "--speed", "1e308"), "--speed 1e+308 simulates more than 3650 days per --batch-seconds"),
        ((*T, "--assets", "0"), "--assets must be positive (got 0)"),
        ((*T, "--assets", "many"), "argument --assets: invalid int value: 'many'"),
        ((*T, "--backfill", "-1"), "--backfill must be >= 0 (got -1.0)"),
        ((*T, "--backfill", "1e300"), "--backfill must be at most 5256000 minutes"),
        ((*T, "--duration", "inf"), "--duration must be >= 0 (got inf)"),
        ((*T, "--batch-seconds", "0"), "--batch-seconds must be positive (got 0.0)"),
        ((*T, "--max-retries", "-1"), "--max-retries must be >= 0 (got -1)"),
        ((*T, "--seed", "1.5"), "argument --seed: invalid int value: '1.5'"),
        ((*T, "--url", "junk"), "--url: 'junk' is not an http:// or https:// URL of a server"),
        ((*T, "--url", "http://127.0.0.1:70000"), "port 70000 is not a TCP port"),
        ((*T, "--site", "nosuch"), "unknown site 'nosuch'; known sites: alpha, beta"),
        ((*T, *ALPHA, "--faults", "junk"), "--faults: cannot read fault 'junk'"),
        ((*T, *ALPHA, "--faults", ",,,"), "--faults: cannot read fault ''"),
        ((*T, *ALPHA, "--faults", "nosuch@p-101:1m:1m"), "--faults: unknown fault kind 'nosuch'"),
        ((*T, *ALPHA, "--faults", "spikes@p-101.vibration:1e400:5m"), "--faults: cannot read fault"),
        ((*T, *ALPHA, "--faults", "spikes@p-101.vibration:9999999h:5m"), "without --duration a fault"),
        ((*T, *ALPHA, "--faults", "bearing_wear@p-101:1m:0"), "duration must be > 0 s"),
        ((*T, *ALPHA, "--mqtt-json", "p-101"), "--mqtt-json / --mqtt-sparkplug need --mqtt"),
        ((*T, *ALPHA, "--mqtt", "junk://", "--mqtt-json", "p-101"), "--mqtt: endpoint must start with"),
        ((*T, *ALPHA, "--mqtt", "mqtt://h:99999", "--mqtt-json", "p-101"), "Port out of range"),
        ((*T, *ALPHA, "--mqtt", "mqtt://h", "--mqtt-json", "p-999"), "no simulated asset p-999"),
        ((*T, *ALPHA, "--modbus-device", "junk"), "--modbus-device 'junk': expected tag:port"),
        ((*T, *ALPHA, "--opcua-device", "p-101:99999"), "--opcua-device 'p-101:99999': expected tag:port"),
        # "²" passed str.isdigit(): int() raised a ValueError traceback.
        ((*T, *ALPHA, "--opcua-device", "p-101:\u00b2"), "--opcua-device 'p-101:\u00b2': expected tag:port"),
        # ASCII digits past int()'s 4300-digit limit passed is_digits: int() raised a ValueError traceback.
        ((*T, *ALPHA, "--modbus-device", "p-101:" + "9" * 5000), "--modbus-device 'p-101:9999"),
        # The same pump twice: the last port silently won.
        (
            (*T, *ALPHA, "--opcua-device", "p-101:{port},p-101:{port2}"),
            "--opcua-device: p-101 is given twice",
        ),
        # One port for two devices: pymodbus's RuntimeError traceback once the live run had started.
        (
            (*T, *ALPHA, "--opcua-device", "p-101:{port}", "--modbus-device", "p-102:{port}"),
            "--modbus-device 'p-102:{port}': port {port} is already --opcua-device p-101's",
        ),
    ],
    "demo": [
        (("--port", "99999"), "--port 99999 is not a TCP port"),
        (("--port", HUGE), f"--port {HUGE} is not a TCP port"),
        (("--port", "http"), "argument --port: invalid int value: 'http'"),
        (("--backfill", "-5"), "--backfill must be zero or more minutes"),
        (("--speed", "0"), "--speed must be positive (got 0.0)"),
        (("--replay-speed", "nan"), "--replay-speed must be positive (got nan)"),
        (("--ready-timeout", "0"), "--ready-timeout must be positive"),
        (("--mqtt-port", "0"), "--mqtt-port 0: the demo needs 1 TCP port(s) from it"),
        (("--data", "junk"), "argument --data: invalid choice: 'junk'"),
        (("--data", "skab"), "--data skab: SKAB data not found at"),
        # Each of these used to start Redis, seed and train, then the web server or the simulator died.
        (("--backfill", "99999999"), "--backfill must be at most 5256000 minutes"),
        (("--speed", "1e9"), "--speed 1e+09 simulates more than 3650 days"),
        (("--host", ""), "--host is empty"),
        (("--host", "no such host!"), "--host 'no such host!': the web server cannot listen there"),
        (("--host", "192.0.2.1"), "--host '192.0.2.1': the web server cannot listen there"),
        (("--token", ""), "--token is empty"),
        (("--token", "junk"), "--token: the gateway token is unknown or revoked"),
        (("--token", "{token}"), "--token is a gateway of site 'alpha'; the demo simulates 'demo-plant'"),
        (("--faults", "junk"), "--faults: cannot read fault 'junk'"),
        (("--faults", "spikes@p-999.vibration:1m:2m"), "no simulated asset"),
        # --replay without --data was silently ignored.
        (("--replay", "valve1/1"), "--replay names the run --data replays: give --data skab with it"),
        # Read as left out: the demo started and replayed the default run.
        (("--data", "skab", "--replay", ""), "--replay is empty: name a SKAB valve run"),
        (("--data", "skab", "--replay", "/"), "--replay is empty: name a SKAB valve run"),
    ],
    "evaluate": [
        ((), "the following arguments are required: dataset"),
        (("junk",), "argument dataset: invalid choice: 'junk'"),
        (("--out", "/etc/passwd", "skab"), "--out: /etc/passwd is a file, not a folder"),
        (("--out", "/proc/vigil", "skab"), "--out: cannot create the folder /proc/vigil"),
        # Read as left out: the run wrote over the published reports in docs/evaluation.
        (("--out", "", "skab"), "--out is empty: give the folder to write into"),
        (("--out", " ", "skab"), "--out is empty: give the folder to write into"),
        (("skab", "--data-dir", "/nonexistent"), "SKAB data not found at /nonexistent/skab/data"),
        (("skab", "--data-dir", "/etc/passwd"), "SKAB data not found at /etc/passwd/skab/data"),
        # Empty was the current folder, and the message blamed VIGIL_DATA_DIR.
        (("skab", "--data-dir", ""), "--data-dir is empty"),
        (("skab", "--window", "-1"), "--window, --step and --calibration-points must be positive"),
        (("skab", "--step", "nan"), "--window, --step and --calibration-points must be positive"),
        (("skab", "--window", "wide"), "argument --window: invalid float value: 'wide'"),
        # An OverflowError traceback (a window position of 1e300 steps), and an infinite window.
        (("skab", "--step", "1e-300"), "--step must be at least SKAB's 1 s sample period, got 1e-300"),
        (
            ("skab", "--window", "inf"),
            "--window, --step and --calibration-points must be positive (and finite)",
        ),
        # Read as left out: the default category was evaluated in full.
        (("nab", "--category", ""), "--category is empty: give a NAB category or 'all'"),
        # 10**30 trees per booster were accepted, the run went on reading and fitting.
        (("cmapss", "--trees", HUGE), f"--trees must be between 1 and 6000 trees per booster, got {HUGE}"),
        (("cmapss",), "C-MAPSS"),
        (("nab", "--data-dir", "/x"), "unrecognized arguments: --data-dir /x"),
        (("simfleet", "--seeds", "-1"), "--seeds must be whole numbers >= 0, got -1"),
        (("simfleet", "--pumps-per-class", "0"), "--pumps-per-class must be >= 1"),
        (("simfleet", "--test-hours", "nan"), "--test-hours >= 1"),
        (("simfleet", "--pumps-per-class", HUGE), "must be at most 1,512 pump-hours"),
        # Any count of seeds ran, one whole simulation each.
        (("simfleet", "--seeds", *map(str, range(71))), "71 --seeds of 216 pump-hours each must be at most"),
        (("simfleet", "--pumps-per-class", "7", "--seeds", *map(str, range(31))), "at most 30 seeds with"),
        (("simfleet", "--seeds"), "argument --seeds: expected at least one argument"),
        (("simfleet", "--seeds", "\u00b2"), "argument --seeds: invalid int value: '\u00b2'"),
        (("ims", "--detectors", "junk"), "argument --detectors: invalid choice: 'junk'"),
        (("ims", "--framing", "junk"), "argument --framing: invalid choice: 'junk'"),
        (("ims", "--framing", "machine", "--peers"), "--framing machine runs the pre-registered"),
    ],
    "train_model": [
        ((), "the following arguments are required: --asset-type, --kind"),
        (("--asset-type", "nosuch", "--kind", "anomaly"), "no asset type 'nosuch' (known: pump)"),
        (("--asset-type", "pump", "--kind", "junk"), "unknown kind 'junk'; choose one of anomaly"),
        (("--asset-type", "pump", "--kind", "anomaly", "--start", "junk"), "--start 'junk' is not an ISO"),
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--start", "9999-12-31T23:59:59-05:00"),
            "--start: 9999-12-31T23:59:59-05:00 is out of range",
        ),
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--start", "2026-02-01", "--end", "2026-01-01"),
            "the training range is empty: start must be before end",
        ),
        (("--asset-type", "pump", "--kind", "anomaly", "--name", "x" * 5000), "at most 80 characters"),
        (("--asset-type", "pump", "--kind", "anomaly", "--name", "a b/../c"), "model name 'a b/../c'"),
        # Empty values were read as left out: the default name, all time.
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--name", ""),
            "model name '': This field cannot be blank",
        ),
        (("--asset-type", "pump", "--kind", "anomaly", "--start", ""), "--start '' is not an ISO date"),
        (("--asset-type", "pump", "--kind", "anomaly", "--roles", ","), "--roles needs at least one role"),
        (("--asset-type", "pump", "--kind", "anomaly", "--roles", "nosuch"), "has no role nosuch"),
        (("--asset-type", "pump", "--kind", "anomaly", "--detector", "x"), "argument --detector: invalid"),
        (("--asset-type", "pump", "--kind", "anomaly", "--peers", "median"), "--peers needs --baseline"),
        (("--asset-type", "pump", "--kind", "rul", "--detector", "pca"), "--detector applies to anomaly"),
        (("--asset-type", "pump", "--kind", "anomaly"), "no readings for assets of type 'pump'"),
    ],
    "retrain": [
        (("--asset-type", "nosuch", "--kind", "anomaly"), "no asset type 'nosuch' (known: pump)"),
        (("--asset-type", "pump", "--kind", "junk"), "cannot retrain kind 'junk' from feedback"),
        (("--asset-type", "pump", "--kind", "anomaly", "--since", "junk"), "--since 'junk' is not an ISO"),
        (("--asset-type", "pump", "--kind", "anomaly", "--since", "0001-01-01"), "is out of range"),
        (("--asset-type", "pump", "--kind", "anomaly", "--since", ""), "--since '' is not an ISO date"),
        # A future --since failed the run it had recorded (tests/models_registry/test_retrain_runs.py).
        (
            ("--asset-type", "pump", "--kind", "anomaly", "--since", NEXT_YEAR),
            f"--since {NEXT_YEAR} 00:00 is in",
        ),
        (("--asset-type", "pump", "--kind", "anomaly"), "no operator feedback on Pump assets"),
    ],
    "promote_model": [
        ((), "the following arguments are required: name, version"),
        (("nosuch", "1"), "no model named 'nosuch'"),
        (("pump-anomaly", "7"), "'pump-anomaly' has no version 7 (versions: 1)"),
        (("pump-anomaly", "-1"), "version '-1' is not a number"),
        (("pump-anomaly", HUGE), f"version '{HUGE}' is not a number"),
        (("pump-anomaly", "v\u00b2"), "version 'v\u00b2' is not a number"),
    ],
    "rollback_model": [
        ((), "the following arguments are required: asset_type, kind"),
        (("nosuch", "anomaly"), "no asset type 'nosuch' (known: pump)"),
        (("pump", "junk"), "unknown kind 'junk'; choose one of anomaly"),
        (("pump", "anomaly"), "Pump / Anomaly detector has no champion to roll back"),
    ],
    "export_bundle": [
        (("nosuch", "1"), "no model named 'nosuch'"),
        (("pump-anomaly", "1", "--output", " "), "--output is empty"),
        (("pump-anomaly", "1", "--output", "/nonexistent/dir/x.zip"), "cannot write /nonexistent/dir/x.zip"),
        (("pump-anomaly", "1", "--output", "/tmp"), "cannot write /tmp: Is a directory"),
        (("pump-anomaly", "1", "--output", "/dev/full"), "cannot write /dev/full: No space left on device"),
        (("pump-anomaly", "1", "--output", "/tmp/" + "x" * 300 + ".zip"), "File name too long"),
        (("pump-anomaly", "1", "--asset", "nosuch"), "no asset with tag or id 'nosuch'"),
        (("pump-anomaly", "1", "--asset", HUGE), f"no asset with tag or id '{HUGE}'"),
        (("pump-anomaly", "1", "--asset", "/"), "no asset with tag or id '/'"),
        (("pump-anomaly", "1", "--asset", ""), "no asset with tag or id ''"),  # was: a bundle for no asset
    ],
    "calibrate_baseline": [
        ((), "the following arguments are required: --asset, --start, --end"),
        (("--asset", "nosuch", "--start", "2026-01-01", "--end", "2026-01-02"), "no asset with tag or id"),
        (("--asset", "p-101", "--start", "junk", "--end", "2026-01-02"), "--start 'junk' is not an ISO"),
        (("--asset", "p-101", "--start", "", "--end", "2026-01-02"), "--start '' is not an ISO date"),
        (
            ("--asset", "p-101", "--start", "2026-01-01", "--end", "2026-01-02", "--model", ""),
            "no model named ''",
        ),
        (
            ("--asset", "p-101", "--start", "2026-01-02", "--end", "2026-01-01"),
            "the calibration period is empty",
        ),
        (("--asset", "p-101", "--start", "1900-01-01", "--end", "2026-01-01"), "--start: 1900-01-01"),
        (
            ("--asset", "p-101", "--start", "2026-01-01", "--end", "2026-01-02", "--model", "nosuch"),
            "no model named 'nosuch'",
        ),
        (("--asset", "p-101", "--start", "2026-01-01", "--end", "2026-01-02"), "only 0 complete feature"),
    ],
}
CASES = [(name, argv, message) for name, cases in COMMAND_CASES.items() for argv, message in cases]


def project_commands() -> set[str]:
    return {
        path.stem
        for path in ROOT.glob("*/management/commands/*.py")
        if not path.stem.startswith("_") and ".venv" not in path.parts
    }


def test_every_command_is_swept():
    assert project_commands() == set(COMMAND_CASES), "a management command without cases is not swept"


def refuse_to_start(what: str):
    def start(*args, **kwargs):
        raise AssertionError(f"{what} started although an argument is bad")

    return start


@pytest.fixture
def world(db, settings, tmp_path, monkeypatch):
    """Two sites (alpha with pumps p-101 and p-102 and a gateway, beta with an enabled connection), a model
    version, an empty data folder but for C-MAPSS's file names; nothing long-running can start."""
    monkeypatch.chdir(tmp_path)  # a case a command wrongly accepts writes nothing into the checkout
    settings.VAR_DIR = tmp_path
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.VIGIL_DATA_DIR = tmp_path / "data"
    (tmp_path / "data" / "cmapss").mkdir(parents=True)
    for kind in ("train", "test", "RUL"):
        (tmp_path / "data" / "cmapss" / f"{kind}_FD001.txt").touch()
    pump = make_pump_type()
    alpha, beta = make_site("alpha"), make_site("beta")
    make_asset(alpha, "p-101", pump)
    make_asset(alpha, "p-102", pump)
    make_version(pump)
    Connection.objects.create(site=beta, name="skid", protocol="mqtt", endpoint="mqtt://127.0.0.1:1")
    _gateway, token = Gateway.issue(alpha, "edge")

    from demo.management.commands.demo import Command as Demo
    from demo.supervisor import Supervisor

    monkeypatch.setattr(Supervisor, "install_signal_handlers", lambda self: None)
    monkeypatch.setattr(Supervisor, "start", refuse_to_start("a demo process"))
    monkeypatch.setattr(Demo, "_start_redis", refuse_to_start("the demo's Redis"))
    monkeypatch.setattr(Demo, "_seed", refuse_to_start("the demo's seed"))
    monkeypatch.setattr("plant.management.commands.simulate.SimulationRun", refuse_to_start("simulate"))
    monkeypatch.setattr("plant.management.commands.replay.ReplayRun", refuse_to_start("replay"))
    monkeypatch.setattr("plant.management.commands.bridge.run_bridge", refuse_to_start("the bridge"))
    return {"token": token}


@pytest.mark.parametrize(("name", "argv", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_bad_argument_is_a_command_error_naming_it(world, name, argv, message):
    port, port2 = free_port(), free_port()
    values = {"port": port, "port2": port2, "token": world["token"]}
    argv = tuple(arg.format(**values) if "{" in arg else arg for arg in argv)
    if name == "demo" and "--port" not in argv:
        argv = (*argv, "--port", str(free_port()))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command(name, *argv, stdout=out, stderr=err)
    assert message.format(**values) in str(error.value)
    assert "Traceback" not in err.getvalue() + out.getvalue()


# (argv, what stderr must say): refused before the database is touched, so they need no migrated database.
SUBPROCESS_CASES = [
    (
        ("create_gateway", b"\xff".decode("utf-8", "surrogateescape"), "edge"),
        "contains bytes that are not UTF-8",
    ),
    (("seed_demo", "--assets", "abc"), "argument --assets: invalid int value: 'abc'"),
    (("simulate", "--token", "t", "--speed", "-1"), "--speed must be positive (got -1.0)"),
    (("replay", "nab/"), "cannot replay 'nab/'"),
    (("evaluate", "skab", "--window", "-1"), "--window, --step and --calibration-points must be positive"),
    (("demo", "--port", "99999"), "--port 99999 is not a TCP port"),
    (("demo", "--host", "", "--port", "1"), "--host is empty"),
]


def test_bad_arguments_of_a_real_manage_py_end_in_a_message_and_no_traceback(tmp_path):
    env = {
        **os.environ,
        "VIGIL_VAR_DIR": str(tmp_path),
        "VIGIL_DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    runs = [
        (
            argv,
            message,
            subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), *argv],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
            ),
        )
        for argv, message in SUBPROCESS_CASES
    ]
    for argv, message, process in runs:
        _out, err = process.communicate(timeout=120)
        assert process.returncode in (1, 2), (argv, process.returncode, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err, (argv, err)


# Entry points given a settings module that is not there: manage.py (--settings or the variable, a project
# command and one of Django's, which fail at different places), the ASGI module uvicorn imports and the Celery
# app `celery -A config` loads (its settings are read while it parses its own options). Each printed Django's
# import traceback.
SETTINGS_CASES = [
    ((str(ROOT / "manage.py"), "check", "--settings", "nosuch.mod"), "nosuch.mod", {}),
    ((str(ROOT / "manage.py"), "replay", "skab/valve1/3", "--settings=config.nosuch"), "config.nosuch", {}),
    ((str(ROOT / "manage.py"), "migrate"), "nosuch.mod", {"DJANGO_SETTINGS_MODULE": "nosuch.mod"}),
    (("-c", "import config.asgi"), "nosuch.mod", {"DJANGO_SETTINGS_MODULE": "nosuch.mod"}),
    (
        ("-c", "from config import celery_app; celery_app.conf.broker_url"),
        "x",
        {"DJANGO_SETTINGS_MODULE": "x"},
    ),
]


def test_a_settings_module_that_is_not_there_is_one_line_naming_it(tmp_path):
    env = {**os.environ, "VIGIL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    runs = [
        (
            argv,
            module,
            subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env={**env, **extra},
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )  # fmt: skip
        for argv, module, extra in SETTINGS_CASES
    ]
    for argv, module, process in runs:
        _out, err = process.communicate(timeout=120)
        lines = [line for line in err.splitlines() if not line.startswith("AXES:")]
        assert process.returncode == 1, (argv, process.returncode, err)
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert lines[0].startswith(f"Configuration error: cannot import the settings module {module!r}"), err


def test_a_settings_module_that_is_there_but_fails_keeps_its_traceback(tmp_path):
    """Only a module that cannot be found is one line: one that is there and fails while importing (here a
    dependency it lacks) shows where, as before."""
    (tmp_path / "broken_settings.py").write_text("import nosuch_dependency\n")
    env = {**os.environ, "VIGIL_VAR_DIR": str(tmp_path), "PYTHONPATH": str(tmp_path)}
    process = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--settings", "broken_settings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == 1
    assert "Traceback" in process.stderr and "No module named 'nosuch_dependency'" in process.stderr
    assert "Configuration error" not in process.stderr
