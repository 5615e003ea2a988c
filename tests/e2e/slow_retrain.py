"""`manage.py demo` whose worker makes every retrain stage last at least E2E_RETRAIN_STAGE_S seconds.

A small retrain finishes faster than the progress page's 1 s poll, so the browser test could not see the
stages move. The slowing is test code: run as ``slow_retrain.py demo <demo options>`` it starts the demo
with its worker command pointed back at this file; run as ``slow_retrain.py worker <worker options>`` it
wraps ``retrain_from_feedback``'s progress callback with a sleep and starts the Celery worker in-process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def slow_down_retrain(stage_s: float) -> None:
    """Each progress() call of a retrain run sleeps `stage_s` after the stage is recorded."""
    from models_registry import retrain

    original = retrain.retrain_from_feedback

    def slowed(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        def slow_progress(stage: str) -> None:
            progress(stage)
            time.sleep(stage_s)

        return original(*args, progress=slow_progress if progress else None, **kwargs)

    retrain.retrain_from_feedback = slowed


def run_worker(argv: list[str]) -> None:
    import django

    django.setup()
    slow_down_retrain(float(os.environ.get("E2E_RETRAIN_STAGE_S", "1.0")))
    from config.celery import app

    app.worker_main(["worker", *argv])


def run_demo(argv: list[str]) -> None:
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    from demo.management.commands import demo

    original = demo.worker_command

    def worker_command(var_dir: Path) -> list[str]:
        command = original(var_dir)
        return [sys.executable, __file__, "worker", *command[command.index("worker") + 1 :]]

    demo.worker_command = worker_command
    execute_from_command_line(["manage.py", "demo", *argv])


if __name__ == "__main__":
    {"demo": run_demo, "worker": run_worker}[sys.argv[1]](sys.argv[2:])
