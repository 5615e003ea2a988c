"""Template context every page needs: which role-specific links the nav bar shows."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from alerts.services import is_engineer


def nav(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """``nav_engineer``: the registry and alert-health links. A callable, so only templates that show it
    (not the admin's) pay its groups query, and it is shared with the views' own role checks
    (``is_engineer`` keeps its answer on the user)."""
    user = getattr(request, "user", None)
    return {"nav_engineer": lambda: bool(user is not None and is_engineer(user))}
