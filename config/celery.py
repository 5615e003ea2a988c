"""The one Celery app; it reads every CELERY_* setting from Django settings."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from config.logs import use_json_in_celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vigil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# VIGIL_LOG_FORMAT=json: the handlers Celery makes in workers and beat write JSON lines too.
after_setup_logger.connect(use_json_in_celery, weak=False)
after_setup_task_logger.connect(use_json_in_celery, weak=False)
