"""Login throttling hooks for django-axes: the client's address, the lockout page and what a login resets.

Not domain code: axes calls these through the AXES_* settings (config/settings.py, "security" block).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def client_ip(request: HttpRequest) -> str | None:
    """The address failed logins are counted against.

    REMOTE_ADDR, unless VIGIL_CLIENT_IP_HEADER names a header set by the reverse proxy in front of Vigil:
    then its right-most address, the one that proxy added (entries to its left come from the client and
    can be forged). A missing or malformed header falls back to REMOTE_ADDR.
    """
    header = settings.VIGIL_CLIENT_IP_HEADER
    if header:
        candidate = request.META.get(header, "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR")


def client_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username failed logins are counted against: axes' own choice (the credentials given to
    authenticate, else the posted form), cut to the length its tables hold.

    Django's login forms hand any username to authenticate, however long (their max_length only sizes the
    input box), and axes stored it whole: on PostgreSQL a username past 255 characters was "value too long
    for type character varying(255)", a 500 instead of the form's "Please enter a correct username". No
    account has a name that long (150 at most), so the cut name counts apart from every real one.
    """
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")
    username = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    if not isinstance(username, str):
        return username
    return username[: AccessAttempt._meta.get_field("username").max_length]


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """The page a locked-out login gets: 429 with the reason, the cool-off and who can unlock it.

    axes passes (original_response, credentials) or, from its async middleware, only credentials; neither
    is needed here.
    """
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {"cooloff_minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT}
    response = TemplateResponse(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response.render()


class UsernameResetHandler(AxesDatabaseHandler):
    """axes' database handler, except that a successful login clears only that username's failures.

    axes' own reset also clears the failures counted against the client's address, so an attacker holding
    one valid account could log into it between guesses and never reach the per-address limit.
    """

    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        username = get_client_username(request, credentials)
        return self.reset_attempts(username=username) if username else 0
