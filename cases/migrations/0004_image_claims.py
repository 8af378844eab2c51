from django.db import migrations, models
from django.db.models import F


def queued_when_last_changed(apps, schema_editor):
    """Images of submitted cases have waited since their status last changed, as far as
    anything recorded can tell."""
    SmearImage = apps.get_model("cases", "SmearImage")
    SmearImage.objects.exclude(case__status="draft").update(queued=F("status_changed"))


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0003_withdrawn"),
    ]

    operations = [
        migrations.AddField(
            model_name="smearimage",
            name="claimed_by",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="smearimage",
            name="lease_expires",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="smearimage",
            name="queued",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(queued_when_last_changed, migrations.RunPython.noop),
    ]
