"""CSV read record by record, for every reader of uploaded CSV (the readings API, point-mapping files):
a record the csv module refuses is kept in its place as the error, so one bad line never fails the file."""

from __future__ import annotations

import csv
import io


def csv_records(text: str) -> list[list[str] | csv.Error]:
    """The CSV records of `text`; a record the csv module refuses (a field over its size limit) is its
    error in its place, and reading goes on with the next line."""
    # newline="": quoted fields may hold line breaks and a bare CR ends a line, as the csv module expects.
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[list[str] | csv.Error] = []
    while True:
        try:
            records.append(next(reader))
        except StopIteration:
            return records
        except csv.Error as exc:
            records.append(exc)
