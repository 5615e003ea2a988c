"""`manage.py seed_demo`: create the demo plant and print the gateway token and user credentials."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from demo.seed import MAX_DEMO_ASSETS, seed_demo
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = (
        "Create (idempotently) the demo sites, pumps, sensors, users and the demo-simulator gateway. "
        "Prints GATEWAY_TOKEN=... (a new token each run) and USER=... PASSWORD=... ROLE=... lines."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--assets", type=int, default=6, help=f"pumps on demo-plant (1-{MAX_DEMO_ASSETS}, default 6)"
        )

    def handle(self, *args, assets: int, **options) -> None:
        try:
            seed = seed_demo(assets=assets)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # stdout carries only the KEY=value lines so that scripts can parse them.
        for line in seed.lines():
            self.stdout.write(line)
