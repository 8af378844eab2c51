"""Worker heartbeats move here from the project package, beside the workers they describe.

Heartbeats are rewritten every few seconds, so the new table starts empty and nothing
is copied (leukweb 0002 drops the old one)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0002_modelevaluation"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkerHeartbeat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hostname", models.CharField(max_length=255, unique=True)),
                ("pid", models.PositiveIntegerField()),
                ("started", models.DateTimeField()),
                ("last_seen", models.DateTimeField(db_index=True)),
            ],
        ),
    ]
