from django.db import migrations, models
from django.db.models import BooleanField, ExpressionWrapper, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce


def abstentions_copy(apps, schema_editor):
    """A verdict filed before this field existed judged the case's latest primary answer
    by its version at the time; it abstained if that answer had every image out of scope
    (inference.models.ABSTAINED, frozen here as migrations freeze their models)."""
    Review = apps.get_model("reviews", "Review")
    CaseResult = apps.get_model("inference", "CaseResult")
    judged = (
        CaseResult.objects.filter(
            case=OuterRef("case"),
            model_version=OuterRef("model_version"),
            primary=True,
            created__lte=OuterRef("created"),
        )
        .order_by("-created")
        .annotate(
            abstained=ExpressionWrapper(
                Q(images_count__gt=0, out_of_scope_count__gte=F("images_count")),
                output_field=BooleanField(),
            )
        )
    )
    Review.objects.update(
        model_abstained=Coalesce(Subquery(judged.values("abstained")[:1]), Value(False))
    )


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0010_prediction_ood_reason"),
        ("reviews", "0003_history_and_answers_shown"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalreview",
            name="model_abstained",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="review",
            name="model_abstained",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(abstentions_copy, migrations.RunPython.noop),
    ]
