#!/usr/bin/env python
"""Django's command-line utility for Vigil."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    except Exception:
        from config.env import missing_settings_module  # looked at only once a command has failed

        if problem := missing_settings_module():
            sys.exit(problem)  # --settings names no module: one line, not Django's import traceback
        raise


if __name__ == "__main__":
    main()
