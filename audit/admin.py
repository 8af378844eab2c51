from django.contrib import admin

from audit.models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse and filter only: for records that are appended, never edited or deleted here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: admins browse and filter the log, nobody edits or deletes it."""

    list_display = ("created", "actor", "action", "target_type", "target_repr", "case")
    list_filter = ("action", "target_type", "created", "actor")
    search_fields = ("target_repr", "target_id", "actor__username", "case__patient__identifier")
    date_hierarchy = "created"
    list_select_related = ("actor", "case__patient")
