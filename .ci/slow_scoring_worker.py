"""The reliability check's Celery worker: every scoring run sleeps, so a SIGKILL lands mid-run.

``slow_scoring_worker.py <delay_s> <celery worker options>``: half the delay between scoring and storing,
half inside the store transaction right after the Score rows are inserted (where a kill must roll them
back). The sleeps are patched in here, before the worker starts, so production code has no test path.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def slow_down_scoring(delay_s: float) -> None:
    from alerts import scoring

    store, insert_scores = scoring._store, scoring._insert_scores

    def slow_store(*args: Any, **kwargs: Any) -> int:
        time.sleep(delay_s / 2)
        return store(*args, **kwargs)

    def slow_insert_scores(*args: Any, **kwargs: Any) -> None:
        insert_scores(*args, **kwargs)
        time.sleep(delay_s / 2)  # the reliability check kills workers here, inside the transaction

    scoring._store, scoring._insert_scores = slow_store, slow_insert_scores


def main(argv: list[str]) -> None:
    import django

    django.setup()
    slow_down_scoring(float(argv[0]))
    from config.celery import app

    # Forked pool children inherit the patched module.
    app.worker_main(["worker", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
