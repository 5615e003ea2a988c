# ScoringGap and ScoringProgress move to the alerts app (scoring orchestration, issue 12). Their rows are
# kept: the tables are renamed to the names the alerts app gives them (alerts/0005 then adds the models to
# alerts' state without touching the database). A rename is metadata only on PostgreSQL and SQLite.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0005_scoring_gaps"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable(name="ScoringGap", table="alerts_scoringgap"),
                migrations.AlterModelTable(name="ScoringProgress", table="alerts_scoringprogress"),
            ],
            state_operations=[
                migrations.DeleteModel(name="ScoringGap"),
                migrations.DeleteModel(name="ScoringProgress"),
            ],
        ),
    ]
