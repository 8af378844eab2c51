from axes.apps import AppConfig as AxesConfig
from django.apps import AppConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPConfig

# The libraries' apps under the names an administrator looks for in the Django admin.


class TwoStepVerificationConfig(TOTPConfig):
    verbose_name = "Two-step verification"


class LockoutsConfig(AxesConfig):
    verbose_name = "Lockouts"


class ApiTokensConfig(AppConfig):
    name = "knox"
    verbose_name = "API tokens"


class AuthenticationConfig(AppConfig):
    # This module holds the other apps' configs too: this one is the app's own.
    default = True
    name = "authentication"
    verbose_name = "Sign-in, second factor and API tokens"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import pre_save

        from accounts.models import User

        # schema registers the API's security schemes with drf-spectacular.
        from authentication import schema, signals  # noqa: F401

        pairs = [
            (user_logged_in, signals.logged_in_record),
            (user_logged_out, signals.logged_out_record),
            (user_login_failed, signals.login_failed_record),
            (user_locked_out, signals.locked_out_record),
        ]
        for signal, receiver in pairs:
            signal.connect(receiver, dispatch_uid=f"authentication-{receiver.__name__}")
        pre_save.connect(
            signals.user_change_revokes_tokens,
            sender=User,
            dispatch_uid="authentication-user-change-revokes-tokens",
        )
