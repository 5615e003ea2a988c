# ScoringDue moves to the alerts app (scoring orchestration, issue 12). Its rows are kept: the table is
# renamed to the name the alerts app gives it (alerts/0005 then adds the model to alerts' state without
# touching the database). A rename is metadata only on PostgreSQL and SQLite: no copy, no lock held long.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("plant", "0006_label_verdict"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AlterModelTable(name="ScoringDue", table="alerts_scoringdue")],
            state_operations=[migrations.DeleteModel(name="ScoringDue")],
        ),
    ]
