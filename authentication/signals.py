"""Receivers that audit logins, logouts, failures and lockouts, and revoke API tokens
when what they were granted on changes."""

import time

from django.conf import settings
from django.http import HttpRequest

from accounts.models import User
from audit.context import acting_user
from audit.models import AuditEvent
from audit.services import audit_record
from authentication import services
from authentication.http import client_address

# Session keys of the timeouts (authentication.middleware.SessionTimeoutMiddleware).
SIGNED_IN_AT = "signed_in_at"
SEEN_AT = "seen_at"


def _address(request: HttpRequest | None) -> str | None:
    return client_address(request) if request is not None else None


def logged_in_record(sender, request: HttpRequest | None, user: User, **kwargs) -> None:
    """The password was right: start the session's clocks and audit the login."""
    if request is not None and hasattr(request, "session"):
        now = int(time.time())
        request.session[SIGNED_IN_AT] = request.session[SEEN_AT] = now
    audit_record(
        actor=user,
        action=AuditEvent.Action.LOGIN,
        target=user,
        detail={"ip": _address(request), "path": request.path if request else ""},
    )


def logged_out_record(sender, request: HttpRequest | None, user: User | None, **kwargs) -> None:
    """A logout ends the user's API tokens too: a token copied on a shared computer
    stops working when its owner logs out there."""
    if user is None:
        return
    reason = getattr(request, "logout_reason", "") if request is not None else ""
    audit_record(
        actor=user,
        action=AuditEvent.Action.LOGOUT,
        target=user,
        detail={"ip": _address(request), "reason": reason or "logged out"},
    )
    services.tokens_revoke_all(user=user, actor=user, reason="logout")


def login_failed_record(sender, credentials: dict, request: HttpRequest | None = None, **kwargs):
    """A wrong password, an unknown username or a login refused during a lockout."""
    username = str(credentials.get("username") or "")
    services.user_audit_name(
        actor=None,
        action=AuditEvent.Action.LOGIN_FAILED,
        username=username,
        detail={
            "ip": _address(request),
            "path": request.path if request is not None else "",
            "locked_out": bool(getattr(request, "axes_locked_out", False)),
        },
    )


def locked_out_record(sender, request: HttpRequest, username: str | None, ip_address, **kwargs):
    """The failure that reached the limit: later ones during the lockout are failed logins."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is not None and failures != settings.AXES_FAILURE_LIMIT:
        return
    services.user_audit_name(
        actor=None,
        action=AuditEvent.Action.LOCKOUT,
        username=username or "",
        detail={
            "ip": ip_address,
            "failures": failures,
            "cool_off_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        },
    )


# What an API token was granted on: changing any of these revokes the user's tokens.
GRANTED_ON = ("role", "is_active", "is_superuser", "is_staff")


def user_change_revokes_tokens(sender, instance: User, raw: bool = False, **kwargs) -> None:
    """A new password, another role or a deactivation revokes the user's API tokens."""
    if raw or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not set(update_fields) & {"password", *GRANTED_ON}:
        return
    reasons = []
    # Set by set_password() and cleared by the silent re-hash at login (Django's marker).
    if getattr(instance, "_password", None) is not None:
        reasons.append("password changed")
    before = User.objects.filter(pk=instance.pk).values(*GRANTED_ON).first()
    if before is not None:
        if before["role"] != instance.role:
            reasons.append(f"role changed from {before['role']} to {instance.role}")
        if before["is_active"] and not instance.is_active:
            reasons.append("deactivated")
        if (before["is_superuser"], before["is_staff"]) != (
            instance.is_superuser,
            instance.is_staff,
        ):
            reasons.append("administrator rights changed")
    if reasons:
        # The administrator who changed the user (or the user), not "the system".
        services.tokens_revoke_all(
            user=instance, actor=acting_user(instance), reason=", ".join(reasons)
        )
