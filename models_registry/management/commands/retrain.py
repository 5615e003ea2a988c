"""manage.py retrain --asset-type SLUG --kind anomaly|failure_classifier [--since ISO] [--enqueue]"""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from models_registry.management.commands._common import get_asset_type, parse_moment
from models_registry.models import RetrainRun
from models_registry.retrain import RetrainError, check_request, execute_run, start_retrain
from models_registry.services import type_and_kind
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = (
        "Retrain a model of an asset type from operator feedback (confirmed faults, false alarms with their "
        "reasons, missed failures) and register it as a candidate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--asset-type", required=True, help="Asset type slug.")
        parser.add_argument("--kind", required=True, help="anomaly, failure_classifier or rul.")
        parser.add_argument(
            "--since",
            help="ISO date/time, not in the future and before the last operator feedback: use readings and "
            "feedback from here on.",
        )
        parser.add_argument("--enqueue", action="store_true", help="Run as a Celery task instead of here.")

    def handle(self, *args, **options) -> None:
        asset_type = get_asset_type(options["asset_type"])
        since = parse_moment(options["since"], "--since")
        kind = options["kind"]
        try:
            # Checked before a run is recorded: a run refused here would only be left behind failed.
            check_request(asset_type, kind, since, field="--since")
            if options["enqueue"]:
                with transaction.atomic():
                    run = start_retrain(asset_type, kind, since=since)
                self.stdout.write(f"queued retraining run #{run.pk} of {type_and_kind(asset_type, kind)}")
                return
        except RetrainError as exc:
            raise CommandError(str(exc)) from None
        run = RetrainRun.objects.create(asset_type=asset_type, kind=kind, since=since)
        finished = execute_run(
            run.pk, echo=lambda stage, percent: self.stdout.write(f"{percent:3d} % {stage}")
        )
        if finished is None or finished.status != "succeeded":
            error = finished.error if finished is not None else "the run could not be claimed"
            raise CommandError(f"retraining run #{run.pk} failed: {error}")
        labels = finished.report.get("labels", {})
        sources = ", ".join(f"{key} {value}" for key, value in labels.get("by_source", {}).items())
        self.stdout.write(
            self.style.SUCCESS(
                f"registered {finished.result} (candidate) from run #{run.pk}; labels: {sources}; "
                f"open {finished.result.open_threshold:.4g}, clear {finished.result.clear_threshold:.4g}"
            )
        )
