"""Who may see and do what: Vigil's access rules, written once for the pages, the APIs, the WebSocket and
the engineering console of every app (plant is the lowest app, so all of them can import this).

* Sites: a user sees the sites they are a member of; a superuser sees every site. Every site-scoped
  query goes through ``scope_to_sites`` with the lookup from its model to a Site (``"asset__site"``).
* Roles: ``is_engineer`` (the engineer group, or a superuser) and ``can_see_health`` (engineers and
  supervisors); ``role_required`` / ``engineer_required`` guard views with them.
* Look-ups: ``get_for_user`` and its ``get_site_for_user`` / ``get_asset_for_user`` return an object of
  the user's sites or raise Http404, so another site's object looks exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from plant.choices import Role
from plant.models import Asset, Site

M = TypeVar("M", bound=Model)
View = Callable[..., HttpResponse]


# --- sites -------------------------------------------------------------------------------------------------


def sees_every_site(user: Any) -> bool:
    """Superusers see every site without being a member of it."""
    return bool(getattr(user, "is_authenticated", False) and user.is_superuser)


def scope_to_sites(queryset: QuerySet[M], user: Any, site_path: str | None) -> QuerySet[M]:
    """The rows of `queryset` on the sites `user` may see. `site_path` is the lookup from the model to its
    Site (``""`` for Site itself); None means the model belongs to no site and every row is kept.
    Anonymous users see no site."""
    if site_path is None or sees_every_site(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    # (site, user) is unique in SiteMembership and each path ends at one site: the join never duplicates.
    lookup = f"{site_path}__members" if site_path else "members"
    return queryset.filter(**{lookup: user})


def sites_for_user(user: Any) -> QuerySet[Site]:
    """The sites the user sees."""
    return scope_to_sites(Site.objects.all(), user, "")


def site_ids_for_user(user: Any) -> list[int]:
    """The ids of the sites the user sees, for services that filter by ``site_id__in``."""
    return list(sites_for_user(user).values_list("pk", flat=True))


def sees_all_sites_of(user: Any, sites: QuerySet[Site]) -> bool:
    """Whether the user sees every one of `sites` (e.g. every site running an asset type)."""
    if sees_every_site(user):
        return True
    return not sites.exclude(pk__in=sites_for_user(user).values("pk")).exists()


# --- roles -------------------------------------------------------------------------------------------------


def is_engineer(user: Any) -> bool:
    """Engineers (and superusers) open the registry, the noise page and the console, and may correct
    anyone's verdict."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    # Asked by the nav bar and again by the view on the same request: one groups query, kept on the user.
    cached = getattr(user, "_vigil_is_engineer", None)
    if cached is None:
        cached = user._vigil_is_engineer = any(group.name == Role.ENGINEER for group in user.groups.all())
    return cached


def can_see_health(user: Any) -> bool:
    """Engineers and supervisors (staff users, or anyone allowed to view alerts) see the alert health
    page, the metrics API and the export."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff or is_engineer(user) or user.has_perm("alerts.view_alert"))


def role_required(test: Callable[[Any], bool], message: str) -> Callable[[View], View]:
    """View decorator: anonymous users go to the login page, signed-in users failing `test` get a 403
    page that says `message`."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not test(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


engineer_required = role_required(is_engineer, "This page is for engineers.")


# --- look-ups ----------------------------------------------------------------------------------------------


def get_or_404(queryset: QuerySet[M], what: str, **lookup: Any) -> M:
    """The object of an already scoped `queryset` matching `lookup`, or Http404 "No such <what>."."""
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj


def get_for_user(
    request: HttpRequest, queryset: QuerySet[M], site_path: str | None, what: str, **lookup: Any
) -> M:
    """The object matching `lookup` if it is on one of the user's sites; Http404 otherwise."""
    return get_or_404(scope_to_sites(queryset, request.user, site_path), what, **lookup)


def get_site_for_user(request: HttpRequest, slug: str) -> Site:
    return get_for_user(request, Site.objects.all(), "", "site", slug=slug)


def get_asset_for_user(request: HttpRequest, pk: int) -> Asset:
    return get_for_user(request, Asset.objects.select_related("site", "asset_type"), "site", "asset", pk=pk)
