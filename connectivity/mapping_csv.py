"""Point mappings as CSV, read without Django: the server's console import (plant.connections.mappings)
and the edge agent's ``points`` file (edge.sources) read the same format through this one reader.

One column ``sensor`` (the Vigil sensor key) and one column per address field of the protocol
(``connectivity.<protocol>.parse_point`` names them). Every row is checked here — address fields, empty
sensor, a sensor mapped twice — and a refused row is reported with its line number and reason, never
stopping the others; which sensor keys exist is the caller's question (the server's database, the agent's
bundles).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any

from connectivity import protocols
from connectivity.csv_text import csv_records

MAX_ROWS = 20_000
MAX_BYTES = 4 * 1024 * 1024


class MappingFileError(Exception):
    """The file as a whole is unusable (no sensor column, too big, not text)."""


@dataclass
class MappingRows:
    """The valid rows (sensor key -> (line number, address fields, parsed point)) and the refused ones."""

    rows: dict[str, tuple[int, dict[str, str], Any]] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)


def read_mapping_csv(protocol: str, data: bytes) -> MappingRows:
    """Check every row of a mapping file for ``protocol``; MappingFileError if the file is unusable."""
    if len(data) > MAX_BYTES:
        raise MappingFileError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MappingFileError("the file is not UTF-8 text") from None
    records = csv_records(text)
    first = records[0] if records else []
    if isinstance(first, csv.Error):
        raise MappingFileError(f"the first line is not valid CSV: {first}")
    header = [name.strip() for name in first]
    if "sensor" not in header:
        raise MappingFileError("the first line must name the columns, one of them 'sensor'")
    result = MappingRows()
    # Blank lines are no rows (as csv.DictReader had it): numbers count the rows read.
    rows = [record for record in records[1:] if record != []]
    for number, record in enumerate(rows, start=2):
        if number - 1 > MAX_ROWS:
            raise MappingFileError(f"the file has more than {MAX_ROWS} rows")
        if isinstance(record, csv.Error):
            result.errors.append((number, f"not valid CSV: {record}"))
            continue
        if len(record) > len(header):
            result.errors.append((number, "more values than columns"))
            continue
        if any("\x00" in value for value in record):  # no database stores it in a key or an address
            result.errors.append((number, "contains a NUL character"))
            continue
        row = dict(zip(header, record))
        key = (row.pop("sensor", None) or "").strip()
        address = {name: (value or "").strip() for name, value in row.items() if (value or "").strip()}
        if not key:
            result.errors.append((number, "sensor is empty"))
            continue
        try:
            point = protocols.parse_point(protocol, address)
        except ValueError as exc:
            result.errors.append((number, str(exc)))
            continue
        if key in result.rows:
            result.errors.append(
                (number, f"sensor {key[:100]!r} is mapped again (first on line {result.rows[key][0]})")
            )
            continue
        result.rows[key] = (number, address, point)
    return result
