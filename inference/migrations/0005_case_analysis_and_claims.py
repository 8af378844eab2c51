import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def pin_analysed_cases(apps, schema_editor):
    """Each case that has a primary result is pinned to the version of its earliest one
    (the version deployed when it was analysed first); any later primary result, made by a
    stray message after a deploy, stops being the case's answer."""
    CaseResult = apps.get_model("inference", "CaseResult")
    CaseAnalysis = apps.get_model("inference", "CaseAnalysis")
    pinned: dict[int, object] = {}
    for result in CaseResult.objects.filter(primary=True).order_by("created", "pk"):
        if result.case_id in pinned:
            CaseResult.objects.filter(pk=result.pk).update(primary=False)
            continue
        pinned[result.case_id] = result
        analysis = CaseAnalysis.objects.create(
            case_id=result.case_id, model_version_id=result.model_version_id
        )
        CaseAnalysis.objects.filter(pk=analysis.pk).update(created=result.created)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0003_withdrawn"),
        ("inference", "0004_evaluation_result_help"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CaseAnalysis",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reason", models.TextField(blank=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "case",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="analyses",
                        to="cases.case",
                    ),
                ),
                (
                    "model_version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="case_analyses",
                        to="inference.modelversion",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "case analyses",
                "ordering": ["-created", "-pk"],
            },
        ),
        migrations.AddField(
            model_name="modelevaluation",
            name="claimed_by",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="modelevaluation",
            name="lease_expires",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(pin_analysed_cases, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="caseresult",
            constraint=models.UniqueConstraint(
                condition=models.Q(("primary", True)),
                fields=("case",),
                name="one_primary_result_per_case",
            ),
        ),
    ]
