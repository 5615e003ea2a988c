"""Template context every page needs: which sites and role-specific links the nav bar shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from plant.access import is_engineer, sites_for_user


def nav(request: HttpRequest) -> dict[str, Callable[[], Any]]:
    """``nav_sites``: the sites the user sees (every site for a superuser, as on the pages);
    ``nav_engineer``: the registry and alert-health links; ``nav_console``: the console link, for a staff
    user with something to open there (a supervisor is staff with no console permission: the link led to
    "You don't have permission to view or edit anything"). Callables, so only templates that show them
    (not the admin's) pay their queries, and ``nav_engineer`` is shared with the views' own role checks
    (``is_engineer`` keeps its answer on the user)."""
    user = getattr(request, "user", None)
    return {
        "nav_sites": lambda: list(sites_for_user(user)) if user is not None else [],
        "nav_engineer": lambda: bool(user is not None and is_engineer(user)),
        # An engineer's answer is cached on the user; only other staff pay the permissions query.
        "nav_console": lambda: bool(
            user is not None
            and user.is_active
            and user.is_staff
            and (is_engineer(user) or user.get_all_permissions())
        ),
    }
