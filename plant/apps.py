from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate

from plant import lookups  # noqa: F401  (registers field__any on every field: plant.lookups)
from plant.roles import sync_after_migrate


class PlantConfig(AppConfig):
    default = True
    name = "plant"
    verbose_name = "Plant"

    def ready(self) -> None:
        # After every migrate, so permissions of models added later reach the role groups too.
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="plant.sync_role_permissions")


class VigilAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the site-scoped console site (plant.admin_scoping.ScopedAdminSite)."""

    default = False
    default_site = "plant.admin_scoping.ScopedAdminSite"
