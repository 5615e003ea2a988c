"""Loaders of the public datasets in ``settings.VIGIL_DATA_DIR`` (see each dataset's DATASET_CARD.md).

A loader creates the asset type, assets and sensors of its dataset, imports the readings through
``plant.ingest.ingest_readings`` (the API's own code path) and the dataset's labels as ``plant.Label`` rows
with source ``dataset``. Loading is idempotent. Dataset files are read in place and never copied into the
repository: several are under licences (SKAB: GPL-3.0) that the product does not take on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not where VIGIL_DATA_DIR says; the message names the path looked at."""


class DatasetFormatError(ValueError):
    """A dataset file does not have the shape its card describes; the message names the file and line."""


class UnknownSubset(DatasetMissing):
    """A subset / file selector the dataset does not have; the message lists the valid ones."""


def text_lines(handle: Iterable[str], path: Path) -> Iterator[str]:
    """The lines of a dataset file opened as text; bytes its encoding cannot decode (a binary file, Latin-1,
    UTF-16) are a DatasetFormatError naming the file, not a bare UnicodeDecodeError. (No line number: the
    text layer decodes ahead in blocks, so the line being read is not the line holding the byte.)"""
    try:
        yield from handle
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: not {exc.encoding.upper().replace('-SIG', '')} text (byte 0x{exc.object[exc.start]:02x} "
            "cannot be decoded)"
        ) from None


@contextmanager
def dataset_errors(data_dir: str | None = None) -> Iterator[None]:
    """For the commands that read datasets: a missing, unknown or malformed dataset becomes a CommandError
    naming the problem (and where VIGIL_DATA_DIR, or the ``data_dir`` a command was given instead, points
    when files are missing), never a traceback."""
    from django.conf import settings
    from django.core.management.base import CommandError

    try:
        yield
    except UnknownSubset as exc:
        raise CommandError(str(exc)) from None
    except DatasetMissing as exc:
        where = f"--data-dir is {data_dir}" if data_dir else f"VIGIL_DATA_DIR is {settings.VIGIL_DATA_DIR}"
        raise CommandError(f"{exc} ({where})") from None
    except (DatasetFormatError, ValueError) as exc:
        raise CommandError(str(exc)) from None
