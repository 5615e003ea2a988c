"""AlertEvent.kind: what an event records, set on existing rows from the words readers used to match.

Before this field, a category change was recognised by its reason starting with "category " on an event that
kept the state, and an opening held for a faulty sensor by its reason starting with the held sentence on an
event from no state. Existing rows get their kind from those words once; every other row is a state change.
Backwards, the column goes and the reasons, never changed, still carry the words the old code matched.
"""

from django.db import migrations, models
from django.db.models import F

# The words as Alert.recategorize and alerts.services.lifecycle wrote them (kept here so the migration never
# changes): "category <was> → <now>: <why>" and "held: the readings of a faulty sensor explain it (<roles>): ".
CATEGORY_PREFIX, CATEGORY_ARROW = "category ", " → "
HELD_PREFIX = "held: the readings of a faulty sensor explain it"
CHUNK = 500


def _classify(events, kind, matches):
    # The database narrows the rows; the test is redone here because SQLite's LIKE ignores case.
    pks = [
        pk for pk, reason in events.values_list("pk", "reason").iterator(chunk_size=CHUNK) if matches(reason)
    ]
    for start in range(0, len(pks), CHUNK):
        events.model.objects.filter(pk__in=pks[start : start + CHUNK]).update(kind=kind)


def kinds_from_reasons(apps, schema_editor):
    AlertEvent = apps.get_model("alerts", "AlertEvent")
    _classify(
        AlertEvent.objects.filter(from_state=F("to_state"), reason__startswith=CATEGORY_PREFIX),
        "category",
        lambda reason: reason.startswith(CATEGORY_PREFIX) and CATEGORY_ARROW in reason,
    )
    _classify(
        AlertEvent.objects.filter(from_state="", reason__startswith=HELD_PREFIX),
        "held",
        lambda reason: reason.startswith(HELD_PREFIX),
    )


class Migration(migrations.Migration):
    dependencies = [("alerts", "0013_alert_category_data_link")]

    operations = [
        migrations.AddField(
            model_name="alertevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("state", "State change"),
                    ("category", "Category change"),
                    ("held", "Held: a faulty sensor explains it"),
                ],
                default="state",
                max_length=12,
            ),
        ),
        migrations.RunPython(kinds_from_reasons, migrations.RunPython.noop),
    ]
