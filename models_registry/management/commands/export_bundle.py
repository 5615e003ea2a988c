"""manage.py export_bundle NAME VERSION [--asset TAG|SITE/TAG|ID] [--output PATH]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError, CommandParser

from models_registry.bundle import BundleExportError, build_bundle
from models_registry.management.commands._common import get_asset, get_version
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = "Write an edge bundle (.zip with model.onnx, spec.json, checksums.json) for the edge runner (python -m edge.runner)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument(
            "--asset", help="Asset tag, site-slug/tag, or id whose sensor keys the bundle maps to roles."
        )
        parser.add_argument("--output", help="Where to write the zip (default NAME-vVERSION[-TAG].zip).")

    def handle(
        self, *args, name: str, version: str, asset: str | None, output: str | None, **options
    ) -> None:
        if output is not None and not output.strip():
            raise CommandError("--output is empty: name the zip file to write (or leave the option out)")
        target = get_version(name, version)
        found = get_asset(asset) if asset is not None else None  # an empty --asset names no asset
        try:
            data = build_bundle(target, found)
        except BundleExportError as exc:
            raise CommandError(str(exc)) from None
        suffix = f"-{found.tag}" if found else ""
        path = Path(output or f"{target.name}-v{target.version}{suffix}.zip")
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        self.stdout.write(self.style.SUCCESS(f"wrote {path} ({len(data)} bytes) for {target}"))
