"""Looking a site up by slug for the command-line tools, with an error that lists the known slugs."""

from __future__ import annotations

from plant.models import Site


class UnknownSite(ValueError):
    """A site slug that does not exist; the message lists the ones that do."""


def get_site(slug: str) -> Site:
    """The site with this slug, or UnknownSite naming it and the known slugs."""
    site = Site.objects.filter(slug=slug).first()
    if site is None:
        known = list(Site.objects.order_by("slug").values_list("slug", flat=True))
        hint = (
            f"known sites: {', '.join(known)}"
            if known
            else "there are no sites yet; run `manage.py seed_demo`"
        )
        raise UnknownSite(f"unknown site {slug!r}; {hint}")
    return site
