"""Reads about a user's second factor, API tokens and lockouts."""

from datetime import timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from accounts.models import User


def authenticator_of(user: User) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if they enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def recovery_device_of(user: User) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, confirmed=True).first()


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def tokens_of(user: User) -> QuerySet[AuthToken]:
    """The user's API tokens that still work, newest first."""
    return AuthToken.objects.filter(user=user, expiry__gt=timezone.now()).order_by("-created")


def _lockout_filter(username: str | None, address: str | None) -> Q:
    """Attempts that count against this username or this address, as the lockout counts."""
    query = Q(pk__in=[])
    if "username" in settings.AXES_LOCKOUT_PARAMETERS and username:
        query |= Q(username=username)
    if "ip_address" in settings.AXES_LOCKOUT_PARAMETERS and address:
        query |= Q(ip_address=address)
    return query


def lockout_remaining(*, username: str | None, address: str | None) -> timedelta:
    """How long a lockout of this username or address lasts from now: the cool-off runs
    from the latest failed attempt (each attempt during a lockout starts it again)."""
    latest = AccessAttempt.objects.filter(_lockout_filter(username, address)).aggregate(
        latest=Max("attempt_time")
    )["latest"]
    if latest is None:
        return timedelta(0)
    return max(latest + settings.AXES_COOLOFF_TIME - timezone.now(), timedelta(0))
