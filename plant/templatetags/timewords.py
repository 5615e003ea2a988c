"""How long ago, or for how long, in the words of every page: Django's ``timesince`` ("6 minutes", "1 hour,
5 minutes"), except under a minute, which it words "0 minutes" ("open for 0 minutes", "0 minutes ago").
static/js/timewords.js (on every page) keeps the same words current, computed the same way
(tests/e2e/test_timewords.py compares them)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()

UNDER_A_MINUTE = "under a minute"
JUST_NOW = "just now"


@register.filter
def age(moment: datetime | None, now: datetime | None = None, *, seconds: bool = False) -> str:
    """How long since ``moment``: "under a minute", "6 minutes" ("open for …"); "" for no moment.
    ``seconds``: under a minute in seconds ("45 seconds"), where the seconds matter (a bridge silent for
    longer than it may be, yet for less than a minute)."""
    if moment is None:
        return ""
    now = now or timezone.now()
    elapsed = (now - moment).total_seconds()
    if elapsed < 60:
        if seconds:
            n = max(0, int(elapsed))
            return f"{n} second{'' if n == 1 else 's'}"
        return UNDER_A_MINUTE
    return timesince(moment, now)


@register.filter
def ago(moment: datetime | None, now: datetime | None = None, *, seconds: bool = False) -> str:
    """When ``moment`` was: "just now", "6 minutes ago"; "never" for no moment. ``seconds``: as ``age``'s
    ("45 seconds ago", never "just now")."""
    if moment is None:
        return "never"
    text = age(moment, now, seconds=seconds)
    return JUST_NOW if text == UNDER_A_MINUTE else f"{text} ago"
