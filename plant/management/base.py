"""The base of every Vigil management command: arguments no command can use are refused up front."""

from __future__ import annotations

import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from plant.params import ParamError, check_storable


class VigilCommand(BaseCommand):
    """A BaseCommand whose text arguments are checked before ``handle``: a NUL or bytes that are not UTF-8
    (a mistyped or mis-encoded name, a path in another encoding) are a CommandError naming the argument, not
    a database or encoder traceback half-way through the command."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        self._argument_names = {
            action.dest: (action.option_strings or [action.dest])[-1] for action in parser._actions
        }
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        names = getattr(self, "_argument_names", {})
        for dest, value in options.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for item in values:
                if isinstance(item, str):
                    try:
                        check_storable(names.get(dest, dest), item)
                    except ParamError as exc:
                        raise CommandError(str(exc)) from None
        return super().execute(*args, **options)


def check_numbers(*checks: tuple[str, float | None, bool]) -> None:
    """(option, value, positive) each: a given value must be finite and > 0 (positive) or >= 0; a
    CommandError names the first that is not. None is an option left out."""
    for name, value, positive in checks:
        if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise CommandError(f"{name} must be {'positive' if positive else '>= 0'} (got {value})")
