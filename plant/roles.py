"""The permissions of the technician and engineer groups, kept in one place.

Migration plant.0002 creates the two groups; ``sync_role_permissions`` gives them their permissions after
every ``migrate`` (``post_migrate``, connected in ``PlantConfig.ready``), so a model added to any app later
is granted without a per-app data migration. The set is exact: a permission added to these two groups by
hand is removed at the next migrate (give extra rights through another group). Groups that do not exist
(deleted, or a flushed test database) are left alone.

* engineer: every permission of plant, alerts, models_registry, notify and handoff.
* technician: view on plant's models, and add on plant's labels.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from plant.choices import Role

ENGINEER, TECHNICIAN = Role.ENGINEER.value, Role.TECHNICIAN.value
ENGINEER_APPS = ("plant", "alerts", "models_registry", "notify", "handoff")
TECHNICIAN_PERMISSIONS = Q(content_type__app_label="plant") & (
    Q(codename__startswith="view_") | Q(codename="add_label")
)


def sync_role_permissions(using: str = DEFAULT_DB_ALIAS, apps: Apps = global_apps) -> None:
    """Set each role group's permissions to exactly its role's set (permissions created first if missing)."""
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth is not migrated (e.g. `migrate auth zero`): nothing to grant
        return
    # post_migrate reaches plant before the apps listed after it, whose permissions may not exist yet.
    for label in ENGINEER_APPS:
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    permissions = Permission.objects.using(using)
    wanted = {
        ENGINEER: permissions.filter(content_type__app_label__in=ENGINEER_APPS),
        TECHNICIAN: permissions.filter(TECHNICIAN_PERMISSIONS),
    }
    for group in Group.objects.using(using).filter(name__in=wanted):
        group.permissions.set(wanted[group.name])


def sync_after_migrate(
    sender: Any, using: str = DEFAULT_DB_ALIAS, apps: Apps = global_apps, **kwargs: Any
) -> None:
    """post_migrate receiver (sent once per app; connected for plant only)."""
    sync_role_permissions(using=using, apps=apps)
