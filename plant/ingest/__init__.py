"""Reading ingestion: parse a batch (parse), validate/flag/store it (service), with bulk DB I/O (store)."""

from __future__ import annotations

from plant.ingest.parse import SOURCE_FLAGS, BatchError, ParsedBatch, parse_csv, parse_json
from plant.ingest.service import IngestResult, ingest_readings

__all__ = [
    "SOURCE_FLAGS",
    "BatchError",
    "IngestResult",
    "ParsedBatch",
    "ingest_readings",
    "parse_csv",
    "parse_json",
]
