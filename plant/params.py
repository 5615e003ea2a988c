"""The rules every page and API applies to a query-string value: printable text of bounded length, ids that
fit a database integer, dates and period labels within the years Vigil can hold readings for.

A hostile value (a NUL, a 30-digit id, the year 9999) is a ``ParamError`` naming the parameter, which the
views answer with a 400; it never reaches the database (PostgreSQL refuses NUL in text and dates past
year 294276, Python's dates stop at 9999, both as a 500). The bounds are deliberately generous: from the
Unix epoch to ``YEARS_AHEAD`` years after the current one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import date, datetime

from django.utils import timezone

EARLIEST = date(1970, 1, 1)
YEARS_AHEAD = 5
MAX_TEXT = 200
MAX_ID_DIGITS = 18  # below 2**63: every id fits PostgreSQL's bigint
# C0 and C1 control characters, DEL and lone surrogates: never part of a slug, a date or a choice.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# A note or findings may span lines: the same set without tab, line feed, vertical tab, form feed and CR.
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]+")
# What no database column, file name or log line can hold: a NUL, and the lone surrogates that stand for
# bytes of a command-line argument that were not UTF-8.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class ParamError(ValueError):
    """A query-string value that cannot be used; ``param`` names it, the message says what is accepted."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def shown(raw: str, limit: int = 40) -> str:
    """A value as an error message quotes it: cut short, control characters escaped by repr."""
    return repr(raw[:limit])


def check_text(param: str, raw: str, *, max_length: int = MAX_TEXT, multiline: bool = False) -> str:
    """``raw`` without surrounding blanks; ParamError for a control character or more than max_length.
    ``multiline``: free text (a note), where tabs and line breaks are allowed."""
    value = raw.strip()
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        raise ParamError(param, f"{shown(value)} contains a control character")
    if len(value) > max_length:
        raise ParamError(param, f"is longer than {max_length} characters")
    return value


def check_storable(param: str, raw: str) -> str:
    """``raw`` unchanged; ParamError for a NUL or for bytes that were not UTF-8 (free text, e.g. a command's
    argument, may hold anything else)."""
    if found := _UNSTORABLE.search(raw):
        what = "a NUL character" if found.group() == "\x00" else "bytes that are not UTF-8"
        raise ParamError(param, f"{shown(raw)} contains {what}")
    return raw


def text(params: Mapping[str, str], name: str, *, max_length: int = MAX_TEXT) -> str:
    """The parameter ``name`` checked by check_text ('' when absent; a repeated key counts its last value)."""
    return check_text(name, params.get(name) or "", max_length=max_length)


def is_digits(raw: str) -> bool:
    """Whether ``raw`` is a whole number written in ASCII digits only, which int() takes: str.isdigit() also
    takes "²" (which int() refuses with a ValueError) and other scripts' digits, and int() refuses more
    digits than Python's limit (sys.get_int_max_str_digits(), 4300; 0 is no limit)."""
    limit = sys.get_int_max_str_digits()
    return _DIGITS.fullmatch(raw) is not None and (limit == 0 or len(raw) <= limit)


def parse_id(param: str, raw: str) -> int:
    """A database id written in ASCII digits (no sign, no other script's digits, at most 18 of them)."""
    value = check_text(param, raw)
    if not is_digits(value) or len(value) > MAX_ID_DIGITS:
        raise ParamError(param, f"{shown(value, 20)} is not an id")
    return int(value)


def latest_date(now: datetime | None = None) -> date:
    """The last date a parameter may name: the end of the year YEARS_AHEAD years from now."""
    return date((now or timezone.now()).year + YEARS_AHEAD, 12, 31)


def check_year(param: str, year: int, now: datetime | None = None) -> int:
    if not EARLIEST.year <= year <= latest_date(now).year:
        raise ParamError(param, f"the year must be between {EARLIEST.year} and {latest_date(now).year}")
    return year


def check_date(
    param: str, day: date | datetime, now: datetime | None = None, *, written: str = ""
) -> date | datetime:
    """``day`` if its date lies between 1970-01-01 and latest_date(); ParamError otherwise, naming the
    value as ``written`` (else in ISO). The bounds are years away from Python's and PostgreSQL's limits, so
    the date in any time zone will do."""
    if not EARLIEST <= (day.date() if isinstance(day, datetime) else day) <= latest_date(now):
        given = written or day.isoformat()[:40]
        raise ParamError(param, f"{given} is out of range: use a date from {EARLIEST} to {latest_date(now)}")
    return day
