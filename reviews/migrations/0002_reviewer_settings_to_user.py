"""The blinded-review choice moves onto the user, where the access rules read it."""

from django.db import migrations


def copy_to_users(apps, schema_editor) -> None:
    settings = apps.get_model("reviews", "ReviewerSettings")
    user = apps.get_model("accounts", "User")
    blinded = settings.objects.filter(blinded=True).values("user_id")
    user.objects.filter(pk__in=blinded).update(blinded_review=True)


def copy_back(apps, schema_editor) -> None:
    settings = apps.get_model("reviews", "ReviewerSettings")
    user = apps.get_model("accounts", "User")
    for user_id in user.objects.filter(blinded_review=True).values_list("pk", flat=True):
        settings.objects.update_or_create(user_id=user_id, defaults={"blinded": True})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_user_blinded_review"),
        ("reviews", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_to_users, copy_back),
        migrations.DeleteModel(name="ReviewerSettings"),
    ]
