from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="blinded_review",
            field=models.BooleanField(
                default=False,
                help_text="Show the images first, the model's answer after a diagnosis.",
            ),
        ),
    ]
