"""One result format for every evaluation: a JSON document and a markdown table, written side by side."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import CommandError

from plant.datasets import DatasetFormatError, DatasetMissing

T = TypeVar("T")


def given(options: dict[str, Any], name: str, default: Any) -> Any:
    """The option's value, or ``default`` when it was not given (None). Never ``or default``: an explicit
    0 or empty value must reach the option's check and be refused there, not turn into the default."""
    value = options.get(name)
    return default if value is None else value


class NotEvaluable(CommandError):
    """A part of a dataset (an IMS test, a C-MAPSS subset) the evaluation cannot run: too short for the
    protocol, a layout it cannot have. The message says why; ``load_parts`` decides what happens next."""


def load_parts(
    names: Sequence[str],
    load: Callable[[str], T],
    *,
    asked: bool,
    what: str,
    progress: Callable[[str], None],
) -> tuple[list[tuple[str, T]], dict[str, str]]:
    """Read every part before any is evaluated, so a file that cannot be used is known before hours of
    training. A part the folder holds that is malformed or unreadable (DatasetFormatError, DatasetMissing)
    or NotEvaluable is set aside with its reason (a "WARNING <name> left out" progress line; the report
    lists it) and the others are evaluated; when the parts were ``asked`` for by name, the first such part
    stops the command with its reason. None left: a CommandError naming each. Every evaluation's one rule
    for parts it cannot use (IMS tests, C-MAPSS subsets, SKAB runs, NAB files)."""
    loaded: list[tuple[str, T]] = []
    skipped: dict[str, str] = {}
    for name in names:
        try:
            loaded.append((name, load(name)))
        except (DatasetFormatError, DatasetMissing, NotEvaluable) as exc:
            if asked:
                raise CommandError(f"{name}: {exc}") from None
            skipped[name] = str(exc)
            progress(f"WARNING {name} left out: {exc}")
    if not loaded:
        raise CommandError(
            f"no {what} could be evaluated: " + "; ".join(f"{n}: {why}" for n, why in skipped.items())
        )
    return loaded, skipped


@dataclass
class Evaluation:
    """What an evaluation found.

    ``rows`` are the table's lines (one dict per line, same keys in every row, Vigil's rows and the published
    reference rows together, told apart by a ``source`` key); ``summary`` holds the headline numbers and
    whether each target is met; ``notes`` are sentences printed under the table (protocol, caveats).
    """

    dataset: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def default_dir() -> Path:
    return Path(settings.BASE_DIR) / "docs" / "evaluation"


def markdown(evaluation: Evaluation) -> str:
    """The rows as a GitHub markdown table (floats to 3 decimals), then the notes as a list."""
    if not evaluation.rows:
        return "_no rows_\n"
    columns = list(evaluation.rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in evaluation.rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    lines.append("")
    lines += [f"- {note}" for note in evaluation.notes]
    return "\n".join(lines) + "\n"


def write(evaluation: Evaluation, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``<dataset>.json`` and ``<dataset>.md`` (dated) into ``out_dir``; returns both paths."""
    out_dir = out_dir or default_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    today = date.today().isoformat()
    document = {
        "dataset": evaluation.dataset,
        "date": today,
        "summary": evaluation.summary,
        "rows": evaluation.rows,
        "notes": evaluation.notes,
        "details": evaluation.details,
    }
    json_path = out_dir / f"{evaluation.dataset}.json"
    md_path = out_dir / f"{evaluation.dataset}.md"
    json_path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    md_path.write_text(f"### {evaluation.dataset} ({today})\n\n" + markdown(evaluation))
    return json_path, md_path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _jsonable(value: Any) -> Any:
    # NumPy scalars and arrays reach the report from the metric code; JSON wants plain numbers and lists.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in an evaluation report")
