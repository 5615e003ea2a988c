"""Fill Alert.dominant_role from stored explanations."""

from django.db import migrations

# The same rule as alerts.services.lifecycle.dominant_roles (kept here so the migration never changes).
SHARE, MAX_ROLES = 0.6, 3


def top_role(explanation):
    totals = {}
    for feature in (explanation or {}).get("features", []):
        role = feature["name"].rsplit("__", 1)[0]
        totals[role] = totals.get(role, 0.0) + abs(float(feature["phi"]))
    if not totals or sum(totals.values()) <= 0:
        return ""
    return max(totals.items(), key=lambda item: item[1])[0]


def backfill(apps, schema_editor):
    Alert = apps.get_model("alerts", "Alert")
    changed = []
    for alert in Alert.objects.exclude(explanation=None).only("pk", "explanation").iterator(chunk_size=500):
        role = top_role(alert.explanation)
        if role:
            alert.dominant_role = role
            changed.append(alert)
        if len(changed) >= 500:
            Alert.objects.bulk_update(changed, ["dominant_role"])
            changed = []
    Alert.objects.bulk_update(changed, ["dominant_role"])


class Migration(migrations.Migration):
    dependencies = [("alerts", "0002_feedback")]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
