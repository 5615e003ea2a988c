"""Give the engineer group the registry's permissions (plant.0002 may run before these models exist)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    app_config = apps.get_app_config("models_registry")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    engineer, _ = Group.objects.get_or_create(name="engineer")
    engineer.permissions.add(*Permission.objects.filter(content_type__app_label="models_registry"))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="engineer"):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="models_registry"))


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0001_initial"),
        ("plant", "0002_groups"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
