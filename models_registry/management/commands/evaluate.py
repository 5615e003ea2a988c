"""manage.py evaluate {skab,cmapss,nab} [dataset options] [--out DIR]"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import CommandParser

from models_registry.evaluation import EVALUATIONS, evaluation_module
from models_registry.evaluation.report import markdown, write
from plant.datasets import dataset_errors
from plant.management.base import VigilCommand


class Command(VigilCommand):
    help = (
        "Score a public dataset through the production path (feature windows, ONNX model, thresholds, "
        "hysteresis) and print the result beside the published numbers; writes JSON + markdown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", help="Folder for <dataset>.json and <dataset>.md (default docs/evaluation)."
        )
        sub = parser.add_subparsers(dest="dataset", required=True, parser_class=type(parser))
        for name in EVALUATIONS:
            module = evaluation_module(name)
            child = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
            module.add_arguments(child)

    def handle(self, *args, **options) -> None:
        name = options["dataset"]
        module = evaluation_module(name)
        with dataset_errors():
            evaluation = module.run(options, self._progress)
        json_path, md_path = write(evaluation, Path(options["out"]) if options["out"] else None)
        self.stdout.write(markdown(evaluation))
        self.stdout.write(f"wrote {json_path} and {md_path}")

    def _progress(self, message: str) -> None:
        # Progress goes to stderr so stdout stays the table (pipe-able into a file).
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
