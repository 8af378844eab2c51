import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models


class AddIndexOnPostgreSQL(migrations.AddIndex):
    """A PostgreSQL index type (GIN with trigrams): created there, skipped on SQLite (the
    embedded default has no GIN, and scanning is fine at its scale). The model's state
    gets the index either way, so no database owes a migration."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class TrigramExtensionOnPostgreSQL(TrigramExtension):
    """Django's CreateExtension skips other databases going forwards but not backwards,
    where it asks SQLite for pg_extension: skipped both ways here."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0005_clinical_history"),
    ]

    operations = [
        # pg_trgm, for `?q=` on identifiers (a no-op on databases other than PostgreSQL).
        TrigramExtensionOnPostgreSQL(),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["-created", "-id"], name="case_newest"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["status", "-created", "-id"], name="case_status_newest"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(
                fields=["team", "status", "-created"], name="case_team_status_newest"
            ),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(
                condition=models.Q(("withdrawn__isnull", True)),
                fields=["team"],
                name="case_current_team",
            ),
        ),
        AddIndexOnPostgreSQL(
            model_name="patient",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("identifier"), name="gin_trgm_ops"
                ),
                name="patient_identifier_trgm",
            ),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["identifier", "id"], name="patient_identifier_order"),
        ),
    ]
