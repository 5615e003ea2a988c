"""Recompute Alert.dominant_role of explained alerts by the net push the alert's words name sensors by.

The title, the similar-alert grouping and the noise page took the role with the largest summed |φ| while the
words named the largest push towards the alert (summed φ in the bad direction): a demo alert titled
"Discharge pressure" explained itself by vibration. detection.explain.top_role now follows the words; stored
alerts get the same role here, and their stored explanations the model's direction (``higher_is_worse``,
which detection.explain now writes), so the gate and the words read old explanations as new ones.
"""

from django.db import migrations

# The rule of detection.explain.top_role (detection.wording.pushes) as of this migration, kept here so the
# migration never changes: the role whose features' summed φ, in the direction in which scores are bad, is
# the largest positive one; "" when no role pushed towards the alert.


def top_role(explanation, higher):
    sign = 1.0 if higher else -1.0
    totals = {}
    for feature in explanation.get("features", []):
        role = feature["name"].rsplit("__", 1)[0]
        totals[role] = totals.get(role, 0.0) + sign * float(feature.get("phi") or 0.0)
    pushed = [(role, push) for role, push in totals.items() if push > 0]
    return max(pushed, key=lambda item: item[1])[0] if pushed else ""


def higher_is_worse(output_spec):
    return not str((output_spec or {}).get("direction", "higher")).lower().startswith("lower")


def recompute(apps, schema_editor):
    Alert = apps.get_model("alerts", "Alert")
    rows = (
        Alert.objects.filter(explanation_status="ready", explanation__isnull=False)
        .select_related("model_version")
        .only("pk", "dominant_role", "explanation", "peak_explanation", "model_version__output_spec")
    )
    changed = []
    for alert in rows.iterator(chunk_size=500):
        higher = higher_is_worse(alert.model_version.output_spec)
        for stored in (alert.explanation, alert.peak_explanation):
            if isinstance(stored, dict):
                stored.setdefault("higher_is_worse", higher)
        alert.dominant_role = top_role(alert.explanation, alert.explanation["higher_is_worse"])
        changed.append(alert)
        if len(changed) >= 500:
            Alert.objects.bulk_update(changed, ["dominant_role", "explanation", "peak_explanation"])
            changed = []
    Alert.objects.bulk_update(changed, ["dominant_role", "explanation", "peak_explanation"])


class Migration(migrations.Migration):
    dependencies = [("alerts", "0016_feedback_reason_sensor_reads_true")]

    # Backwards keeps the new roles: the old rule's roles contradicted the alerts' own words.
    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
