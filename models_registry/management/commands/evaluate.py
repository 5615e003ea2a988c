"""manage.py evaluate {skab,cmapss,nab} [dataset options] [--out DIR]"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import CommandError, CommandParser

from models_registry.evaluation import EVALUATIONS, evaluation_module
from models_registry.evaluation.report import default_dir, markdown, write
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
        if options["out"] is not None and not options["out"].strip():
            # Read as left out, an empty value (an unset variable) wrote over the published docs/evaluation.
            raise CommandError("--out is empty: give the folder to write into, or leave it out")
        out = writable_folder(Path(options["out"]) if options["out"] is not None else default_dir())
        with dataset_errors(options.get("data_dir")):
            evaluation = module.run(options, self._progress)
        # The table first: a folder that stops being writable during a long run loses only the files.
        self.stdout.write(markdown(evaluation))
        try:
            json_path, md_path = write(evaluation, out)
        except OSError as exc:
            raise CommandError(
                f"--out: cannot write into {out}: {exc.strerror}; the table is above"
            ) from None
        self.stdout.write(f"wrote {json_path} and {md_path}")

    def _progress(self, message: str) -> None:
        # Progress goes to stderr so stdout stays the table (pipe-able into a file).
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def writable_folder(path: Path) -> Path:
    """``path``, created if needed, or a CommandError before any work when it is not a folder this process
    may write into (an evaluation runs for minutes before it writes)."""
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out: {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out: cannot create the folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CommandError(f"--out: cannot write into {path}")
    return path
