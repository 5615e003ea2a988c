"""manage.py rollback_model ASSET_TYPE KIND [--reason ...]"""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from models_registry.management.commands._common import check_kind, get_asset_type
from models_registry.services import (
    ModelRejected,
    RegistryError,
    current_champion,
    rollback,
    type_and_kind,
)
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = "Retire the champion of an asset type and kind and bring back the previous champion."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("asset_type", help="Asset type slug.")
        parser.add_argument("kind")
        parser.add_argument("--reason", default="", help="Why; stored in the versions' history.")

    def handle(self, *args, asset_type: str, kind: str, reason: str, **options) -> None:
        found = get_asset_type(asset_type)
        check_kind(kind)
        old = current_champion(found, kind)
        try:
            restored = rollback(found, kind, actor=None, reason=reason or "manage.py rollback_model")
        except ModelRejected as exc:
            raise CommandError(f"the previous champion is refused, {old} stays champion: {exc}") from None
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"rolled back {type_and_kind(found, kind)}: {old} retired, {restored} is champion"
            )
        )
