"""VIGIL_LOG_FORMAT=json: Django's processes (web, bridge, commands) and Celery's (worker, beat) write one
JSON object per line with time, level, logger and message; the default stays plain text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent

DJANGO = """
import django, logging
django.setup()
logging.getLogger("plant.bridge").warning("connection %s lost", "skid")
"""

CELERY = """
import django
from config.celery import app
django.setup()
app.log.setup(loglevel="INFO", redirect_stdouts=False)
from celery.utils.log import get_logger, get_task_logger
get_logger("celery.worker").warning("worker ready")
get_task_logger("alerts.tasks").error("scoring failed", exc_info=ValueError("boom"))
"""


def run(code: str, log_format: str | None) -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("VIGIL_LOG_FORMAT", None)
    if log_format is not None:
        env["VIGIL_LOG_FORMAT"] = log_format
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_a_django_process_logs_json_lines_when_asked():
    records = [json.loads(line) for line in run(DJANGO, "json")]  # every line is JSON (axes logs too)
    (record,) = [r for r in records if r["logger"] == "plant.bridge"]
    assert record["level"] == "WARNING" and record["logger"] == "plant.bridge"
    assert record["message"] == "connection skid lost" and record["time"]


def test_the_default_stays_plain_text():
    assert "connection skid lost" in run(DJANGO, None)


def test_celery_worker_and_task_loggers_log_json_lines_when_asked():
    # Every line is a JSON object: a traceback is inside its record, not lines of its own.
    records = [json.loads(line) for line in run(CELERY, "json")]
    worker, task = [r for r in records if r["logger"] in ("celery.worker", "alerts.tasks")]
    assert (worker["level"], worker["logger"], worker["message"]) == (
        "WARNING",
        "celery.worker",
        "worker ready",
    )
    assert (task["level"], task["logger"], task["message"]) == ("ERROR", "alerts.tasks", "scoring failed")
    assert "ValueError: boom" in task["exc_info"]


def test_an_unknown_log_format_is_refused_with_its_name(monkeypatch):
    from config.env import env_choice

    monkeypatch.setenv("VIGIL_LOG_FORMAT", "xml")
    with pytest.raises(ImproperlyConfigured, match="VIGIL_LOG_FORMAT='xml' must be one of: text, json"):
        env_choice("VIGIL_LOG_FORMAT", "text", ("text", "json"))
