"""manage.py calibrate_baseline --asset TAG|SITE/TAG|ID --start ISO --end ISO [--model NAME]"""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from detection.baseline import BaselineError
from models_registry.baseline import recalibrate, unsettled_words
from models_registry.management.commands._common import get_asset, parse_moment
from models_registry.models import ModelVersion
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = (
        "Calibrate an asset's per-asset baseline from the feature windows of a period of normal running: its "
        "operating point, and its robust calibration and thresholds when robust versions are in use; "
        "baselined models score the asset against it from their next run. A period overlapping a labelled "
        "fault is refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--asset", required=True, help="Asset tag, site-slug/tag, or id.")
        parser.add_argument("--start", required=True, help="ISO date/time: start of the normal period.")
        parser.add_argument("--end", required=True, help="ISO date/time: end of the normal period.")
        parser.add_argument(
            "--model",
            help="Calibrate only the features of this model's newest version (default: every feature of "
            "the roles of its type the asset has a sensor for, which serves every model that can score it).",
        )

    def handle(self, *args, asset: str, start: str, end: str, model: str | None, **options) -> None:
        found = get_asset(asset)
        begin, finish = parse_moment(start, "--start"), parse_moment(end, "--end")
        names = None
        if model is not None:  # an empty --model names no model (it meant every feature)
            version = ModelVersion.objects.filter(name=model).order_by("-version").first()
            if version is None:
                raise CommandError(f"no model named {model!r}")
            if version.asset_type_id != found.asset_type_id:
                raise CommandError(
                    f"{version} is for {version.asset_type}, but {found.tag} is a {found.asset_type}"
                )
            names = list(version.feature_spec)
        try:
            done = recalibrate(found, begin, finish, feature_names=names)
        except BaselineError as exc:
            raise CommandError(str(exc)) from None
        for row in done.baselines:
            self.stdout.write(
                self.style.SUCCESS(
                    f"calibrated {found.tag}: {len(row.feature_names)} features from {row.window_count} "
                    f"windows between {row.start.isoformat()} and {row.end.isoformat()} "
                    f"(baseline #{row.pk}, {row.mode})"
                )
            )
            for words in unsettled_words(found, row.trends):
                self.stdout.write(self.style.WARNING(f"not a settled period: {words}"))
        for item in done.thresholds:
            self.stdout.write(
                f"thresholds of {found.tag} for {item.model_version}: open {item.open_threshold:.6g}, "
                f"clear {item.clear_threshold:.6g} ({item.get_source_display().lower()}, "
                f"{item.window_count} scores)"
            )
