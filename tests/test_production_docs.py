"""The production run is written once: the README quotes every Procfile command verbatim (and CI's
.ci/production_run.py starts them from the Procfile), so the docs, the units' examples and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {m[1]: m[2] for line in lines if (m := re.match(r"^([\w-]+):\s*(.+)$", line))}


def test_the_readme_quotes_every_procfile_command():
    readme = (ROOT / "README.md").read_text()
    commands = procfile()
    assert {"release", "web", "worker-scoring", "worker-default", "beat", "bridge"} <= commands.keys()
    for name, command in commands.items():
        assert f"`{command}`" in readme, f"README does not quote the Procfile's {name}: {command}"


def test_the_systemd_workers_serve_the_procfile_queues():
    commands = procfile()
    for unit in ("scoring", "default"):
        queues = re.search(r"-Q (\S+)", commands[f"worker-{unit}"])[1]
        env = (ROOT / "deploy" / "systemd" / f"worker-{unit}.env").read_text()
        assert f"QUEUES={queues}" in env


def test_the_readme_gives_the_broker_settings_the_bridge_relies_on():
    # With mosquitto's defaults (1000 queued messages per session, no persistence) a bridge down for a minute
    # lost QoS 1 messages the broker had acknowledged; the tests ran with other settings than the docs gave.
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"- \*\*MQTT broker\*\*.*?```\n(.*?)```", readme, re.S)
    assert block, "README's 'Run in production' gives no MQTT broker settings"
    lines = [line.strip() for line in block[1].splitlines() if line.strip()]
    assert "persistence true" in lines and "max_queued_messages 100000" in lines
    tested = (ROOT / "tests" / "brokers.py").read_text()
    for line in lines:
        assert line in tested, f"tests/brokers.py does not run with {line!r}"
