"""`manage.py demo` and its supervisor: every process it starts is stopped on Ctrl-C, SIGTERM or a death."""

from __future__ import annotations

from django.conf import settings

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from config.embedded_redis import start_embedded_redis
from plant.models import Gateway
from demo.management.commands.demo import (
    Login,
    broker_answers,
    parse_seed_output,
    simulator_command,
    worker_command,
)
from tests.brokers import amqtt_broker  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
PID_RE = re.compile(r"started (\S+) \(pid (\d+)\)")

SUPERVISE = textwrap.dedent(
    """
    import sys
    from demo.supervisor import Supervisor

    py = sys.executable
    sup = Supervisor(stop_timeout=2.0)
    sup.install_signal_handlers()
    sup.start("sleeper", [py, "-c", "import time; print('up', flush=True); time.sleep(600)"])
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    sup.start("stubborn", [py, "-c", stubborn])
    forker = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print('grandchild', p.pid, flush=True); time.sleep(600)"
    )
    sup.start("forker", [py, "-c", forker], stop_last=True)
    sup.start("client", [py, "-c", "import time; time.sleep(600)"], stop_first=True)
    if len(sys.argv) > 1:
        sup.start("crasher", [py, "-c", "import sys, time; time.sleep(1); sys.exit(3)"])
    print("READY", flush=True)
    dead = sup.run_until_stopped(interval=0.1)
    sup.stop_all()
    print(f"DIED {dead.name} {dead.returncode}" if dead else "STOPPED", flush=True)
    sys.exit(1 if dead else 0)
    """
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_all_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not gone(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def read_until(process: subprocess.Popen, *markers: str, timeout: float = 60.0) -> list[str]:
    """Lines of output up to the point where every marker has appeared in some line."""
    lines: list[str] = []
    missing = set(markers)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before printing {missing}:\n" + "".join(lines))
        lines.append(line)
        missing = {marker for marker in missing if marker not in line}
    if missing:
        raise AssertionError(f"no {missing} within {timeout} s:\n" + "".join(lines))
    return lines


def pids_in(lines: list[str]) -> dict[str, int]:
    found = {name: int(pid) for name, pid in PID_RE.findall("".join(lines))}
    for line in lines:
        if "grandchild" in line:
            found["grandchild"] = int(line.split()[-1])
    return found


def start_supervise_script(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_supervisor_stops_every_child_and_grandchild_on_a_stop_signal(signum):
    process = start_supervise_script()
    # "stubborn | up" is printed once it ignores SIGTERM: a signal sent before that would just kill it.
    pids = pids_in(read_until(process, "READY", "grandchild", "stubborn  | up"))
    assert {"sleeper", "stubborn", "forker", "grandchild"} <= set(pids)

    process.send_signal(signum)
    out, _ = process.communicate(timeout=30)

    assert process.returncode == 0
    assert "STOPPED" in out
    assert "Traceback" not in out
    assert "stubborn did not stop within 2 s; killing it" in out
    # Clients first (their requests are not cut off inside a stopping server), then servers, then the rest.
    assert out.index("stopping client") < out.index("stopping sleeper") < out.index("stopping forker")
    assert wait_all_gone(list(pids.values())) == []


def test_supervisor_stops_the_rest_and_names_the_child_that_died():
    process = start_supervise_script("crash")
    pids = pids_in(read_until(process, "READY", "grandchild"))

    out, _ = process.communicate(timeout=30)

    assert process.returncode == 1
    assert "DIED crasher 3" in out
    assert wait_all_gone(list(pids.values())) == []


def test_supervisor_prefixes_each_line_of_a_child_with_its_name():
    process = start_supervise_script()
    lines = read_until(process, "READY", "grandchild", "sleeper   | up")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    text = "".join(lines) + out
    assert re.search(r"^sleeper\s+\| up$", text, re.MULTILINE)
    assert re.search(r"^forker\s+\| grandchild \d+$", text, re.MULTILINE)


def test_seed_output_gives_the_gateway_token_and_the_logins():
    text = "Seeded demo-plant\nGATEWAY_TOKEN=vgl_abc-123\nUSER=tech1 PASSWORD=s3cret ROLE=technician\n"
    text += "USER=engineer PASSWORD=x-y ROLE=engineer\n"
    token, logins = parse_seed_output(text)
    assert token == "vgl_abc-123"
    assert logins == [Login("tech1", "s3cret", "technician"), Login("engineer", "x-y", "engineer")]
    assert parse_seed_output("nothing here") == (None, [])


def test_the_worker_and_simulator_commands_follow_the_process_contract(tmp_path):
    worker = worker_command(tmp_path)
    assert worker[1:6] == ["-m", "celery", "-A", "config", "worker"]
    # The demo's one worker consumes every queue Vigil declares (outbound: webhooks and work orders).
    queues = worker[worker.index("-Q") + 1].split(",")
    assert sorted(queues) == sorted(queue.name for queue in settings.CELERY_TASK_QUEUES)
    simulator = simulator_command("http://127.0.0.1:8000", "tok", 60, None)
    assert simulator[2:] == [
        "simulate",
        "--url",
        "http://127.0.0.1:8000",
        "--token",
        "tok",
        "--backfill",
        "60",
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_manage_py_demo_starts_web_and_worker_and_stops_them_all_on_ctrl_c(tmp_path):
    redis = start_embedded_redis(f"redis://127.0.0.1:{_free_port()}/0", tmp_path / "redis")
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL"}}
    env.update(VIGIL_VAR_DIR=str(tmp_path / "var"), REDIS_URL=redis.url, PYTHONUNBUFFERED="1")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--token", "t", "--no-simulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = read_until(demo, "Vigil demo running at", timeout=90)
        tree = [child.pid for child in psutil.Process(demo.pid).children(recursive=True)]
        pids = pids_in(lines)
        assert set(pids) == {"web", "worker"}, "REDIS_URL is set, so no embedded Redis is started"
        assert f"http://127.0.0.1:{port}/" in lines[-1]

        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
        redis.stop()

    assert demo.returncode == 0, out
    assert "Traceback" not in out.split("stopping", 1)[-1]
    assert "Vigil demo stopped" in out
    assert wait_all_gone(tree + list(pids.values())) == []
    # The web server's access log goes to its file (the readiness polls), not to the terminal.
    access = (tmp_path / "var" / "log" / "web-access.log").read_text()
    assert '"GET /accounts/login/ HTTP/1.1" 200' in access and "GET /accounts/login/" not in out


def test_the_broker_is_ready_only_when_it_answers_mqtt(amqtt_broker):  # noqa: F811
    # The demo waits for an MQTT handshake, not an open port: a bare TCP probe made the broker log an ERROR.
    assert broker_answers("127.0.0.1", amqtt_broker.port)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not broker_answers("127.0.0.1", silent.getsockname()[1])  # accepts, never answers CONNECT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "0"], "--speed must be positive (got 0.0)"),  # the simulator child died after startup
        (["--speed", "nan"], "--speed must be positive (got nan)"),
        (["--ready-timeout", "0"], "--ready-timeout must be positive"),
        (["--stop-timeout", "-1"], "--stop-timeout must be >= 0"),
        (["--ot-port", "65534"], "--ot-port 65534: the demo needs 4 TCP port(s) from it, up to 65535"),
    ],
)
def test_demo_refuses_bad_numbers_before_it_starts_anything(monkeypatch, args, message):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from demo.supervisor import Supervisor

    def start(self, name, *rest, **kwargs):
        raise AssertionError(f"the demo started {name} although an option is bad")

    monkeypatch.setattr(Supervisor, "install_signal_handlers", lambda self: None)
    monkeypatch.setattr(Supervisor, "start", start)
    with pytest.raises(CommandError) as error:
        call_command("demo", "--token", "t", "--port", str(_free_port()), *args, stdout=StringIO())
    assert message in str(error.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (
            "spikes@p-999.vibration:1m:2m",
            "--faults: fault 'spikes@p-999.vibration:1m:2m': no simulated asset",
        ),
        ("spikes@p-101.vibration:-2h:5m", "before the live start, but --backfill 60 sends 1 h"),
        ("stuck_sensor@p-101.vibration:72h:5m", "without --duration a fault must start less than"),
        ("nonsense", "--faults: cannot read fault 'nonsense'"),
    ],
)
def test_demo_refuses_a_fault_schedule_the_simulator_would_refuse_before_it_starts_the_processes(
    monkeypatch, faults, message
):
    # The simulator used to exit on such a schedule after the web server, worker, broker and bridge had
    # started, and the demo stopped with its message among the children's lines.
    from io import StringIO

    from django.core.management import CommandError, call_command

    from demo.management.commands.demo import Command
    from demo.seed import DEMO_SITE
    from tests.conftest import make_asset, make_site

    site = make_site(DEMO_SITE[0])
    make_asset(site, "p-101")
    _gateway, token = Gateway.issue(site, "demo-simulator")

    def start(self, *args, **kwargs):
        raise AssertionError("the demo started a process although --faults is bad")

    # Checked before anything starts, Redis included.
    monkeypatch.setattr(Command, "_start_redis", start)
    monkeypatch.setattr(Command, "_start_all", start)
    with pytest.raises(CommandError) as error:
        call_command(
            "demo", "--token", token, "--port", str(_free_port()), "--faults", faults, stdout=StringIO()
        )
    assert message in str(error.value)


@pytest.mark.django_db
def test_demo_accepts_a_fault_schedule_inside_its_backfill_and_its_first_day(monkeypatch):
    from io import StringIO

    from django.core.management import call_command

    from demo.management.commands.demo import Command
    from demo.seed import DEMO_SITE
    from tests.conftest import make_asset, make_site

    site = make_site(DEMO_SITE[0])
    make_asset(site, "p-101")
    _gateway, token = Gateway.issue(site, "demo-simulator")
    started = []
    monkeypatch.setattr(Command, "_start_redis", lambda self, supervisor, timeout: None)
    monkeypatch.setattr(
        Command, "_start_all", lambda self, *args, **kwargs: started.append(args[-1]["faults"])
    )
    monkeypatch.setattr(Command, "_print_banner", lambda self, *args: None)
    monkeypatch.setattr("demo.supervisor.Supervisor.run_until_stopped", lambda self: None)
    faults = "spikes@p-101.vibration:-30m:5m,stuck_sensor@p-101.vibration:2h:5m"
    call_command("demo", "--token", token, "--port", str(_free_port()), "--faults", faults, stdout=StringIO())
    assert started == [faults]
