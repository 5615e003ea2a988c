from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management.sql import emit_post_migrate_signal

from plant.roles import sync_role_permissions

pytestmark = pytest.mark.django_db


def perms(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_after_migrate_engineers_hold_every_permission_of_the_domain_apps():
    expected = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.filter(
            content_type__app_label__in=["plant", "alerts", "models_registry", "notify", "handoff"]
        ).select_related("content_type")
    }
    granted = perms("engineer")
    assert granted == expected
    # one model of each app, including models added by later migrations of alerts and the registry
    assert {
        "plant.change_asset",
        "alerts.add_feedback",
        "alerts.change_alert",
        "models_registry.change_modelincident",
        "models_registry.delete_modelversion",
        "handoff.change_webhookendpoint",
        "notify.change_channel",
    } <= granted
    assert not any(name.startswith("auth.") for name in granted)


def test_after_migrate_technicians_may_view_plant_and_add_labels_only():
    granted = perms("technician")
    assert "plant.add_label" in granted and "plant.view_asset" in granted
    assert all(name.startswith("plant.view_") or name == "plant.add_label" for name in granted)
    assert not {"plant.change_label", "alerts.change_alert", "models_registry.view_modelversion"} & granted


def test_every_migrate_restores_the_role_permissions():
    engineer, technician = Group.objects.get(name="engineer"), Group.objects.get(name="technician")
    before = perms("engineer"), perms("technician")
    engineer.permissions.clear()
    technician.permissions.add(Permission.objects.get(codename="change_alert"))
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert (perms("engineer"), perms("technician")) == before


def test_syncing_leaves_a_deleted_role_group_deleted():
    Group.objects.filter(name="technician").delete()
    sync_role_permissions()
    assert not Group.objects.filter(name="technician").exists()
    assert perms("engineer")
