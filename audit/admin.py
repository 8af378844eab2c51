from django.contrib import admin
from django.db.models import Q, QuerySet

from audit.models import AuditEvent

# Every registry change is audited as ``deploy`` with its own name in detail["event"];
# these are the registry's names for them (inference's DeploymentEvent.Action, which
# audit, a lower layer, cannot import).
REGISTRY_EVENTS = {
    "deploy": "Deploy",
    "rollback": "Roll back",
    "shadow": "Set as shadow",
    "retire": "Retire",
    "variant": "Choose variant",
}


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

    list_display = ("created", "actor_username", "event", "target_type", "target_repr", "case")
    list_filter = ("action", "target_type", "created", "actor")
    search_fields = ("target_repr", "target_id", "actor_username", "case__patient__identifier")
    date_hierarchy = "created"
    list_select_related = ("actor", "case__patient")

    @admin.display(description="Action", ordering="action")
    def event(self, obj: AuditEvent) -> str:
        """A registry change by its own name (Roll back, Set as shadow), not as "Deployed"."""
        name = (obj.detail or {}).get("event") if obj.action == AuditEvent.Action.DEPLOY else None
        return REGISTRY_EVENTS.get(name, name) if name else obj.get_action_display()

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        """Also find events by what was done: the action ("deploy", "Deployed") and a
        registry change's own name ("rollback", "Roll back", "shadow")."""
        filtered = queryset  # already narrowed by the list filters: keep them
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lower()
        if not term:
            return queryset, may_have_duplicates
        actions = [v for v, name in AuditEvent.Action.choices if term in f"{v} {name}".lower()]
        events = [v for v, name in REGISTRY_EVENTS.items() if term in f"{v} {name}".lower()]
        if actions or events:
            queryset |= filtered.filter(Q(action__in=actions) | Q(detail__event__in=events))
        return queryset, may_have_duplicates


class FieldHistoryAdmin(ReadOnlyAdmin):
    """A clinical model's saved versions (django-simple-history): when, who, and each
    changed field's old and new value. Register with ``Model.history.model``."""

    list_display = ("history_date", "history_user", "history_type", "record", "changes")
    list_filter = ("history_type", "history_date")
    search_fields = ("history_user__username",)
    date_hierarchy = "history_date"
    list_select_related = ("history_user",)

    @admin.display(description="Record")
    def record(self, obj) -> str:
        return f"{obj.instance_type._meta.verbose_name} {obj.id}"

    @admin.display(description="Changes (old → new)")
    def changes(self, obj) -> str:
        previous = obj.prev_record
        if previous is None:
            return "created"
        delta = obj.diff_against(previous)
        return "; ".join(f"{c.field}: {c.old!r} → {c.new!r}" for c in delta.changes) or "-"
