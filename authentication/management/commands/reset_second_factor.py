from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from authentication import services


class Command(BaseCommand):
    help = (
        "Remove a user's authenticator and recovery codes (a lost phone) and revoke their API "
        "tokens; they enrol again at their next login (audited)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        removed = services.second_factor_reset(
            actor=None, user=user, via="manage.py reset_second_factor"
        )
        self.stdout.write(f"reset {username}'s second factor ({removed} device(s) removed)")
