"""`manage.py load_dataset NAME`: load a public dataset from VIGIL_DATA_DIR into the plant, idempotently."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from plant.datasets import dataset_errors
from plant.datasets.registry import DATASETS, load_dataset
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = (
        "Load a public dataset (skab, cmapss, nab, ai4i, ims) from VIGIL_DATA_DIR: asset type, assets and "
        "sensors, readings through the ingestion path and the dataset's labels. Re-running adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
        parser.add_argument(
            "--subset",
            action="append",
            default=None,
            help="part to load (repeatable; default all): "
            + "; ".join(f"{e.name}: {e.subsets}" for e in DATASETS.values()),
        )
        parser.add_argument(
            "--limit-rows", type=int, default=None, help="load only the first N rows of each file / unit"
        )

    def handle(self, *args: object, **options: object) -> None:
        name = str(options["dataset"])
        entry = DATASETS[name]
        subsets = [
            part for value in options["subset"] or [] for part in str(value).split(",") if part.strip()
        ]
        if options["subset"] is not None and not subsets:
            # An empty selection would otherwise mean "every part": a whole dataset nobody asked for.
            raise CommandError(
                f"--subset {', '.join(map(repr, options['subset']))} names no part of {name}; valid: "
                f"{entry.subsets}"
            )
        with dataset_errors():
            results = load_dataset(name, subsets, limit_rows=options["limit_rows"], stream=self.stderr)
        if entry.time_note:
            self.stdout.write(f"time axis: {entry.time_note}")
        for result in results:
            self.stdout.write(f"{name} {result.summary()}")
        new = sum(r.accepted for r in results)
        self.stdout.write(
            self.style.SUCCESS(
                f"loaded {name}: {len(results)} assets, {new} new readings,"
                f" {sum(r.duplicates for r in results)} already stored, {sum(r.rejected for r in results)}"
                f" rejected; labels +{sum(r.labels_created for r in results)}"
                f" -{sum(r.labels_deleted for r in results)}"
            )
        )
