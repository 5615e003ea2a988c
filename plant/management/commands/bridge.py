"""manage.py bridge [--site SLUG]: read the plant's enabled connections into Vigil until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import CommandError, CommandParser

from plant.connections.bridge import connections_to_run, run_bridge
from plant.management.base import VigilCommand
from plant.models import Site
from plant.sites import UnknownSite, get_site


class Command(VigilCommand):
    help = "Run the plant connections (MQTT, OPC UA, Modbus TCP) of every site, or of one, until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", help="Only this site's connections (its slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        site = None
        if options["site"] is not None:
            # An empty --site (an unset variable in a unit file) must not widen the bridge to every site.
            if not options["site"].strip():
                raise CommandError(
                    "--site is empty: give a site's slug, or leave the option out for every site"
                )
            try:
                site = get_site(options["site"])
            except UnknownSite as exc:
                raise CommandError(str(exc)) from None
        connections = connections_to_run(site)
        if not connections:
            raise CommandError("no enabled connection" + (f" on site {site.slug}" if site else ""))
        for connection in connections:
            self.stdout.write(f"bridge: {connection.site.slug} / {connection.name} ({connection.endpoint})")
        asyncio.run(self._run(connections, site))

    async def _run(self, connections: list, site: Site | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Connections added, changed or disabled later (of the site) are picked up without a restart.
        await run_bridge(connections, stop, scope=lambda: connections_to_run(site))
        self.stdout.write("bridge: stopped")
