"""Create the technician and engineer groups with the permissions their roles need."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ENGINEER_APPS = ("plant", "alerts", "models_registry")


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    engineer, _ = Group.objects.get_or_create(name="engineer")
    engineer.permissions.set(Permission.objects.filter(content_type__app_label__in=ENGINEER_APPS))
    technician, _ = Group.objects.get_or_create(name="technician")
    technician.permissions.set(
        Permission.objects.filter(content_type__app_label="plant", codename__startswith="view_")
        | Permission.objects.filter(content_type__app_label="plant", codename="add_label")
    )


def drop_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["engineer", "technician"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("plant", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, drop_groups)]
