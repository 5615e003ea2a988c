"""The one Celery app; it reads every CELERY_* setting from Django settings."""

from __future__ import annotations

import gc
import os
import sys

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

from config.env import missing_settings_module
from config.logs import use_json_in_celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vigil")


def check_settings_module(**_: object) -> None:
    """Celery reads Django's settings lazily, first while parsing its own command line: a settings module
    that is not there ends `celery -A config ...` on one line, not an import traceback."""
    if problem := missing_settings_module():
        sys.exit(problem)


app.on_configure.connect(check_settings_module, weak=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# VIGIL_LOG_FORMAT=json: the handlers Celery makes in workers and beat write JSON lines too.
after_setup_logger.connect(use_json_in_celery, weak=False)
after_setup_task_logger.connect(use_json_in_celery, weak=False)


def freeze_startup_objects(**_: object) -> None:
    """A pool process's objects at start (Django's apps and models, the libraries) live as long as it:
    moved out of the collector's generations (gc.freeze), they are no longer scanned by every full
    collection, which cost about a tenth of a fleet sweep's worker CPU (docs/scaling.md)."""
    gc.freeze()


worker_process_init.connect(freeze_startup_objects, weak=False)
