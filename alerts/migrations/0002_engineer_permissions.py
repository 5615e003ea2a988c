"""Give the engineer group the alerts permissions (plant.0002 ran before these models existed)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    app_config = apps.get_app_config("alerts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    engineer = Group.objects.filter(name="engineer").first()
    if engineer is not None:
        engineer.permissions.add(*Permission.objects.filter(content_type__app_label="alerts"))


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial"), ("plant", "0002_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
