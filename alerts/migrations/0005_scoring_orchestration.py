# ScoringDue (from plant), ScoringGap and ScoringProgress (from models_registry) join the scoring
# orchestration in alerts (issue 12). State only: plant/0007 and models_registry/0006 renamed their tables
# to alerts_scoringdue, alerts_scoringgap and alerts_scoringprogress, with their rows, indexes and
# constraints.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0004_noise_control"),
        ("models_registry", "0006_scoring_orchestration"),
        ("plant", "0007_scoring_orchestration"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ScoringDue",
                    fields=[
                        (
                            "asset",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="scoring_due",
                                serialize=False,
                                to="plant.asset",
                            ),
                        ),
                        (
                            "seq",
                            models.BigIntegerField(
                                default=0, help_text="Bumped by every ingest that stored readings."
                            ),
                        ),
                        ("due", models.BooleanField(default=False)),
                        (
                            "marked_at",
                            models.DateTimeField(
                                blank=True, help_text="When the asset last became due.", null=True
                            ),
                        ),
                        (
                            "enqueued_at",
                            models.DateTimeField(
                                blank=True, help_text="When a scoring task was last sent.", null=True
                            ),
                        ),
                        (
                            "scored_seq",
                            models.BigIntegerField(
                                default=0, help_text="The seq the last completed scoring claimed."
                            ),
                        ),
                    ],
                    options={
                        "indexes": [models.Index(fields=["due", "marked_at"], name="scoring_due_sweep")],
                    },
                ),
                migrations.CreateModel(
                    name="ScoringGap",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "start",
                            models.DateTimeField(
                                help_text="Last window end scored before the gap (exclusive)."
                            ),
                        ),
                        ("end", models.DateTimeField(help_text="Last window end left unscored (inclusive).")),
                        (
                            "reason",
                            models.CharField(
                                choices=[("backlog_limit", "Backlog older than the scoring limit")],
                                max_length=20,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        (
                            "asset",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="scoring_gaps",
                                to="plant.asset",
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="scoring_gaps",
                                to="models_registry.modelversion",
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-end", "-id"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("asset", "model_version", "start"), name="one_gap_per_start"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("start__lt", models.F("end"))), name="scoring_gap_ordered"
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="ScoringProgress",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "through",
                            models.DateTimeField(
                                help_text="Every window ending at or before this has been considered."
                            ),
                        ),
                        (
                            "asset",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="plant.asset",
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="models_registry.modelversion",
                            ),
                        ),
                    ],
                    options={
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("asset", "model_version"), name="one_progress_per_pair"
                            )
                        ],
                    },
                ),
            ],
        ),
    ]
