"""`manage.py create_gateway <site> <name>`: issue a gateway token for a site and print it once."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from plant.management.base import VigilCommand
from plant.models import Gateway
from plant.sites import UnknownSite, get_site


class Command(VigilCommand):
    help = "Issue a new gateway for a site and print GATEWAY_TOKEN=<token> (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("site", help="slug of the site the gateway writes readings for")
        parser.add_argument("name", help="a name for the gateway, e.g. 'line-2 edge box'")

    def handle(self, *args, site: str, name: str, **options) -> None:
        name = name.strip()
        if not name:
            raise CommandError("the gateway name must not be empty")
        if len(name) > Gateway._meta.get_field("name").max_length:
            raise CommandError(
                f"the gateway name is longer than {Gateway._meta.get_field('name').max_length} characters"
            )
        try:
            target = get_site(site)
        except UnknownSite as exc:
            raise CommandError(str(exc)) from None
        _gateway, token = Gateway.issue(target, name)
        self.stdout.write(f"GATEWAY_TOKEN={token}")
