"""Evaluate Vigil on skab (placeholder: being built)."""

from __future__ import annotations

from django.core.management.base import CommandError


def add_arguments(parser) -> None:
    pass


def run(options, progress):
    raise CommandError("evaluate skab is not built yet")
