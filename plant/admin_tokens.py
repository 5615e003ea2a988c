"""The one "copy this token now" answer page of the engineering console.

Gateways (plant) and CMMS connections (handoff) both mint a secret that is stored only as a hash, so it is
shown exactly once, on the answer to the add or rotate request: never in a message, the session, a cookie or
a cache. Both admins render it through :func:`issued_tokens_page` with their own words and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import SafeString


def issued_tokens_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    issued: Iterable[tuple[Any, str]],
    *,
    title: str,
    intro: SafeString | str,
    columns: Sequence[tuple[str, Callable[[Any], object]]],
    empty: str,
    back: str,
) -> HttpResponse:
    """The page listing each (object, token) pair just issued, one row per object.

    ``columns`` are (heading, value of the object) before the token column; ``intro`` says where the token
    goes (``mark_safe`` a constant text with markup); ``empty`` is shown when nothing was selected and
    ``back`` names the change list the page links back to.
    """
    opts = model_admin.opts
    rows = [([value(obj) for _, value in columns], token) for obj, token in issued]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "intro": intro,
        "headings": [heading for heading, _ in columns],
        "rows": rows,
        "empty": empty,
        "back": back,
        "table_id": f"{opts.model_name}-tokens",
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    response = TemplateResponse(request, "admin/issued_tokens.html", context)
    add_never_cache_headers(response)  # a token must not stay in a browser or proxy cache
    return response
