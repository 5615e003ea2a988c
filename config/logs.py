"""Structured logs (issue 17, item 5): with VIGIL_LOG_FORMAT=json every process writes one JSON object per
line with ``time``, ``level``, ``logger`` and ``message`` (plus ``exc_info`` and any ``extra=`` fields).

Django's LOGGING uses :func:`json_formatter` for the web processes, the bridge and every management
command; Celery sets up its own handlers in workers and beat, so :func:`use_json_in_celery` swaps their
formatter once Celery has made them (its ``after_setup_logger`` / ``after_setup_task_logger`` signals).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def json_formatter() -> logging.Formatter:
    """The one JSON line format of every Vigil process."""
    return JsonFormatter(FIELDS, rename_fields=RENAMED)


def use_json_in_celery(logger: logging.Logger | None = None, **kwargs: Any) -> None:
    """Celery's after_setup_(task_)logger: its handlers write JSON when VIGIL_LOG_FORMAT is json."""
    if logger is None or settings.VIGIL_LOG_FORMAT != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
