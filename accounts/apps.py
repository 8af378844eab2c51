from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users and teams"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from accounts.signals import logged_out_say_so

        user_logged_out.connect(logged_out_say_so, dispatch_uid="accounts-logged-out")
