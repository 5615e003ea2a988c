"""How long ago, or for how long, in the words of every page: Django's ``timesince`` ("6 minutes", "1 hour,
5 minutes"), except under a minute, which it words "0 minutes" ("open for 0 minutes", "0 minutes ago").
static/js/board.js keeps the same words current on the page (its ``since``)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()

UNDER_A_MINUTE = "under a minute"
JUST_NOW = "just now"


@register.filter
def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long since ``moment``: "under a minute", "6 minutes" ("open for …"); "" for no moment."""
    if moment is None:
        return ""
    now = now or timezone.now()
    if (now - moment).total_seconds() < 60:
        return UNDER_A_MINUTE
    return timesince(moment, now)


@register.filter
def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """When ``moment`` was: "just now", "6 minutes ago"; "never" for no moment."""
    if moment is None:
        return "never"
    text = age(moment, now)
    return JUST_NOW if text == UNDER_A_MINUTE else f"{text} ago"
