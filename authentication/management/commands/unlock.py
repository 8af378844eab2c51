from django.core.management.base import BaseCommand, CommandError

from authentication import services


class Command(BaseCommand):
    help = "Unlock a username and/or an address locked out after failed logins (audited)."

    def add_arguments(self, parser):
        parser.add_argument("--username", help="the username as people type it")
        parser.add_argument("--address", help="the IP address that was locked out")

    def handle(self, *args, username, address, **options):
        if not username and not address:
            raise CommandError("name --username, --address or both")
        cleared = services.lockout_clear(
            actor=None, username=username, address=address, via="manage.py unlock"
        )
        what = " and ".join(filter(None, [username and f"username {username!r}", address]))
        self.stdout.write(f"unlocked {what}: {cleared} record(s) of failed logins cleared")
