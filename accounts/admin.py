from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Team, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
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


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created")
    search_fields = ("name",)
