"""Worker heartbeats now live in the inference app (inference 0003)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("leukweb", "0001_initial"),
    ]

    operations = [
        migrations.DeleteModel(name="WorkerHeartbeat"),
    ]
