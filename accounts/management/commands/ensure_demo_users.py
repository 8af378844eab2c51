from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.services import demo_users_ensure


class Command(BaseCommand):
    help = "On an empty database, create demo users (one per role) and print their passwords."

    def handle(self, *args, **options):
        created = demo_users_ensure()
        if not created:
            self.stdout.write("users exist already; no demo users created")
            return
        lines = [
            f"{user.username:10} {password:20} {user.role:10} "
            f"{', '.join(t.name for t in user.teams.all())}"
            for user, password in created
        ]
        # Kept next to the database so the printed passwords can be found again.
        credentials = settings.VAR_DIR / "demo-credentials.txt"
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.write_text("\n".join(lines) + "\n")
        credentials.chmod(0o600)
        self.stdout.write(f"Demo users (also in {credentials}):")
        for line in lines:
            self.stdout.write("  " + line)
