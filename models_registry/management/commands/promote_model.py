"""manage.py promote_model NAME VERSION [--shadow] [--reason ...]"""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from models_registry.management.commands._common import get_version
from models_registry.services import ModelRejected, RegistryError, promote, type_and_kind
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = "Validate a model version and make it the champion of its asset type and kind (or a shadow)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument("--shadow", action="store_true", help="Run it in shadow instead of as champion.")
        parser.add_argument("--reason", default="", help="Why; stored in the version's history.")

    def handle(self, *args, name: str, version: str, shadow: bool, reason: str, **options) -> None:
        target = get_version(name, version)
        try:
            report = promote(target, actor=None, reason=reason or "manage.py promote_model", shadow=shadow)
        except ModelRejected as exc:
            raise CommandError(f"{target} refused: {exc}") from None
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
        role = "shadow" if shadow else "champion"
        self.stdout.write(
            self.style.SUCCESS(
                f"{target} is now {role} for {type_and_kind(target.asset_type, target.kind)} "
                f"(validated: {', '.join(report.passed)}; latency {report.latency_ms:.3f} ms)"
            )
        )
