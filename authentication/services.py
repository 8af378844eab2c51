"""Writes of sign-in: second-factor enrolment, checks and resets, API tokens, lockouts.
Every one of them is audited."""

from __future__ import annotations

from dataclasses import dataclass

from axes.utils import reset as axes_reset
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from accounts import policies
from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_about_name
from authentication import selectors

USER_TARGET = "accounts.user"


class SecondFactorThrottled(Exception):
    """Too many wrong codes in a row: django-otp wants a pause before the next one."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"too many wrong codes; try again in {seconds} s")
        self.seconds = seconds


class WrongCode(Exception):
    """The one-time code given with a token request was wrong."""


class SecondFactorNeeded(Exception):
    """The user must give a one-time code (or enrol first, when ``enrolled`` is False)."""

    def __init__(self, *, enrolled: bool) -> None:
        super().__init__("a one-time code is needed" if enrolled else "no second factor yet")
        self.enrolled = enrolled


@dataclass(frozen=True)
class CodeCheck:
    """A code that was accepted: by which device, and how many recovery codes are left."""

    device: Device
    recovery_code: bool
    recovery_codes_left: int


def user_audit_name(*, actor, action: str, username: str, detail: dict) -> AuditEvent:
    """An event about a username as typed: the user's when it names one, else the name."""
    user = User.objects.filter(username=username).only("pk").first()
    return audit_record_about_name(
        actor=actor,
        action=action,
        target_type=USER_TARGET,
        target_id=str(user.pk) if user else "",
        name=username,
        detail=detail,
    )


# --- second factor -----------------------------------------------------------------


def _normalised(code: str) -> str:
    """What people type: spaces and dashes between groups, any case."""
    return "".join(code.split()).replace("-", "").lower()


def _wait_seconds(device: Device) -> int:
    allowed, info = device.verify_is_allowed()
    if allowed or not info or "locked_until" not in info:
        return 0
    return max(1, int((info["locked_until"] - timezone.now()).total_seconds() + 0.999))


def enrolment_start(*, user: User) -> TOTPDevice:
    """An authenticator for the user to scan: the same one until it is confirmed, so that
    reloading the page shows the same secret."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def _recovery_codes_make(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, defaults={"name": "Recovery codes", "confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(settings.RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def enrolment_confirm(
    *, user: User, device: TOTPDevice, code: str, address: str | None
) -> list[str] | None:
    """Confirm an authenticator with a code it shows: it replaces any earlier one, and new
    recovery codes are made and returned, to be shown once. None when the code is wrong."""
    if device.user_id != user.pk or device.confirmed:
        raise ValueError("not this user's pending authenticator")
    wait = _wait_seconds(device)
    if wait:
        raise SecondFactorThrottled(wait)
    with transaction.atomic():
        if not device.verify_token(_normalised(code)):
            audit_record(
                actor=user,
                action=AuditEvent.Action.MFA_FAIL,
                target=user,
                detail={"during": "enrolment", "ip": address},
            )
            return None
        replaced = TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()[0]
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_make(user)
        audit_record(
            actor=user,
            action=AuditEvent.Action.MFA_ENROL,
            target=user,
            detail={"authenticator": "replaced" if replaced else "new", "ip": address},
        )
    return codes


def recovery_codes_renew(*, user: User, address: str | None) -> list[str]:
    """New recovery codes for an enrolled user; the old ones stop working."""
    if selectors.authenticator_of(user) is None:
        raise ValueError("recovery codes come with an authenticator; enrol one first")
    with transaction.atomic():
        codes = _recovery_codes_make(user)
        audit_record(
            actor=user,
            action=AuditEvent.Action.MFA_ENROL,
            target=user,
            detail={"recovery_codes": "renewed", "ip": address},
        )
    return codes


def code_check(*, user: User, code: str, address: str | None, via: str) -> CodeCheck | None:
    """Check a code from the user's authenticator app or one of their recovery codes
    (used up by this); audit the outcome. None when it is wrong. Raises
    SecondFactorThrottled while django-otp wants a pause after wrong codes."""
    code = _normalised(code)
    recovery = not (len(code) == 6 and code.isdigit())
    device: TOTPDevice | StaticDevice | None = (
        selectors.recovery_device_of(user) if recovery else selectors.authenticator_of(user)
    )
    if device is not None:
        wait = _wait_seconds(device)
        if wait:
            raise SecondFactorThrottled(wait)
    with transaction.atomic():
        accepted = device is not None and device.verify_token(code)
        if not accepted or device is None:
            audit_record(
                actor=user,
                action=AuditEvent.Action.MFA_FAIL,
                target=user,
                detail={"via": via, "ip": address},
            )
            return None
        left = selectors.recovery_codes_left(user)
        audit_record(
            actor=user,
            action=AuditEvent.Action.MFA_VERIFY,
            target=user,
            detail={
                "method": "recovery code" if recovery else "authenticator app",
                "recovery_codes_left": left,
                "via": via,
                "ip": address,
            },
        )
    return CodeCheck(device=device, recovery_code=recovery, recovery_codes_left=left)


def second_factor_reset(*, actor: User | None, user: User, via: str) -> int:
    """Remove the user's authenticator and recovery codes (a lost phone, or a clinician
    turning it off); their API tokens go too. The next login asks them to enrol again
    when their role requires it. Returns how many devices were removed."""
    with transaction.atomic():
        removed = TOTPDevice.objects.filter(user=user).delete()[1].get(TOTPDevice._meta.label, 0)
        removed += (
            StaticDevice.objects.filter(user=user).delete()[1].get(StaticDevice._meta.label, 0)
        )
        tokens_revoke_all(user=user, actor=actor, reason="second factor reset")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.MFA_RESET,
            target=user,
            detail={"devices_removed": removed, "via": via},
        )
    return removed


def second_factor_turn_off(*, user: User, code: str, address: str | None) -> bool:
    """A user whose role does not require a second factor turns theirs off, proving it
    with a current code. False when the code is wrong."""
    if not policies.second_factor_optional(user):
        raise ValueError("a second factor is required for this user")
    if code_check(user=user, code=code, address=address, via="turning it off") is None:
        return False
    second_factor_reset(actor=user, user=user, via="turned off by the user")
    return True


# --- API tokens ----------------------------------------------------------------------


def token_create(*, user: User, code: str, address: str | None) -> tuple[AuthToken, str]:
    """A new API token for a user who gave the right password: with a valid one-time code
    when they have or need a second factor. Returns the row (only a hash of the token is
    stored) and the token, which is shown this once."""
    if selectors.authenticator_of(user) is not None:
        if not code:
            raise SecondFactorNeeded(enrolled=True)
        if code_check(user=user, code=code, address=address, via="API token") is None:
            raise WrongCode("wrong one-time code")
    elif policies.second_factor_required(user):
        raise SecondFactorNeeded(enrolled=False)
    with transaction.atomic():
        token, secret = AuthToken.objects.create(user=user)
        audit_record(
            actor=user,
            action=AuditEvent.Action.TOKEN_CREATE,
            target=user,
            detail={"prefix": token.token_key, "expiry": token.expiry.isoformat(), "ip": address},
        )
    return token, secret


def token_revoke(*, actor: User | None, token: AuthToken, reason: str) -> None:
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TOKEN_REVOKE,
            target=token.user,
            detail={"prefix": token.token_key, "reason": reason},
        )
        token.delete()


def tokens_revoke_all(*, user: User, actor: User | None, reason: str) -> int:
    """Revoke every API token of the user (logout, password, role or device change)."""
    tokens = list(AuthToken.objects.filter(user=user))
    for token in tokens:
        token_revoke(actor=actor, token=token, reason=reason)
    return len(tokens)


def tokens_expire(*, user: User | None = None) -> int:
    """Delete the expired API tokens (of one user, or everyone's), auditing each."""
    expired = AuthToken.objects.filter(expiry__lte=timezone.now()).select_related("user")
    if user is not None:
        expired = expired.filter(user=user)
    count = 0
    for token in expired:
        with transaction.atomic():
            audit_record(
                actor=None,
                action=AuditEvent.Action.TOKEN_EXPIRE,
                target=token.user,
                detail={"prefix": token.token_key, "expiry": token.expiry.isoformat()},
            )
            token.delete()
        count += 1
    return count


# --- lockouts ------------------------------------------------------------------------


def lockout_clear(
    *, actor: User | None, username: str | None = None, address: str | None = None, via: str
) -> int:
    """Unlock a username, an address, or both, before their cool-off ends; returns how
    many records of failed logins were cleared."""
    if not username and not address:
        raise ValueError("name a username or an address to unlock")
    with transaction.atomic():
        cleared = axes_reset(
            ip=address, username=username, ip_or_username=bool(username and address)
        )
        detail = {"address": address, "attempts_cleared": cleared, "via": via}
        if username:
            user_audit_name(
                actor=actor, action=AuditEvent.Action.UNLOCK, username=username, detail=detail
            )
        else:
            audit_record_about_name(
                actor=actor,
                action=AuditEvent.Action.UNLOCK,
                target_type="address",
                name=address or "",
                detail=detail,
            )
    return cleared
