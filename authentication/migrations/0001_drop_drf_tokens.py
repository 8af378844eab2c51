"""DRF's tokens (rest_framework.authtoken) never expired and were stored in clear; the app
is gone and its table goes with it, so every one of them stops working. Tokens now come
from django-rest-knox (hashed, expiring)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_user_blinded_review")]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", migrations.RunSQL.noop),
    ]
