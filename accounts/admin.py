from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Team, User
from accounts.services import user_deactivate


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Users are deactivated, never deleted: the audit log names them. Deleting is not
    offered; the "Deactivate" action (or unticking Active) ends a user's access."""

    actions = ["deactivate"]
    list_display = ("username", "email", "role", "is_active", "last_login")
    list_filter = ("role", "is_active", "teams")
    fieldsets = (
        # Django sets UserAdmin.fieldsets; the stubs keep ModelAdmin's "or None".
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]
        ("LeukWeb", {"fields": ("role", "teams")}),
    )
    add_fieldsets = (
        *BaseUserAdmin.add_fieldsets,
        ("LeukWeb", {"fields": ("role", "teams")}),
    )
    filter_horizontal = ("teams", "groups", "user_permissions")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Deactivate the selected users (their API tokens are revoked)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = [u for u in queryset if u.is_active]
        for user in users:
            user_deactivate(actor=request.user, user=user)  # type: ignore[arg-type]
        self.message_user(request, f"{len(users)} user(s) deactivated.")


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created")
    search_fields = ("name",)
