"""The Django admin's view of sign-in: second factors, API tokens and lockouts, listed
without their secrets; resetting, revoking and unlocking go through the audited services.

django-otp's and knox's own admin pages show TOTP keys, recovery codes and token digests,
so they are replaced here (AXES_ENABLE_ADMIN=False keeps django-axes' out)."""

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from audit.admin import ReadOnlyAdmin
from authentication import services

for model in (TOTPDevice, StaticDevice, AuthToken):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


def _actor(request: HttpRequest):
    return request.user


@admin.register(TOTPDevice)
class SecondFactorAdmin(ReadOnlyAdmin):
    """Who has an authenticator app; a lost phone is reset here (the user enrols again)."""

    list_display = ("user", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    fields = list_display
    actions = ["reset"]

    @admin.action(description="Reset the second factor (the user enrols again at next login)")
    def reset(self, request: HttpRequest, queryset: QuerySet[TOTPDevice]) -> None:
        users = {device.user for device in queryset.select_related("user")}
        for user in users:
            services.second_factor_reset(actor=_actor(request), user=user, via="Django admin")
        self.message_user(request, f"Second factor reset for {len(users)} user(s).")


@admin.register(AuthToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """API tokens by prefix, owner and expiry: never the token, never its hash."""

    list_display = ("token_key", "user", "created", "expiry")
    search_fields = ("user__username", "token_key")
    list_filter = ("expiry",)
    fields = list_display
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        tokens = list(queryset.select_related("user"))
        for token in tokens:
            services.token_revoke(
                actor=_actor(request), token=token, reason="revoked in the Django admin"
            )
        self.message_user(request, f"{len(tokens)} token(s) revoked.")


@admin.register(AccessAttempt)
class LockoutAdmin(ReadOnlyAdmin):
    """Failed logins by username and address, and which of them are locked out now."""

    list_display = ("username", "ip_address", "failures_since_start", "attempt_time", "locked")
    search_fields = ("username", "ip_address")
    fields = ("username", "ip_address", "user_agent", "path_info", "failures_since_start")
    actions = ["unlock"]

    @admin.display(boolean=True, description="Locked now")
    def locked(self, attempt: AccessAttempt) -> bool:
        return (
            attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT
            and attempt.attempt_time + settings.AXES_COOLOFF_TIME > timezone.now()
        )

    @admin.action(description="Unlock the selected usernames and addresses")
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        pairs = set(queryset.values_list("username", "ip_address"))
        for username, address in pairs:
            services.lockout_clear(
                actor=_actor(request), username=username, address=address, via="Django admin"
            )
        self.message_user(
            request, f"Unlocked {len(pairs)} username/address pair(s).", messages.SUCCESS
        )
