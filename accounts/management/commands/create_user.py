import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role, User
from accounts.services import user_create


class Command(BaseCommand):
    help = "Create a LeukWeb user with a role and teams; prints a password if none is given."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, required=True)
        parser.add_argument("--team", action="append", default=[], help="repeatable")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--prompt-password", action="store_true", help="ask for the password instead"
        )

    def handle(self, *args, username, role, team, email, prompt_password, **options):
        if User.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists")
        password = None
        if prompt_password:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the two passwords differ; nothing was created")
        try:
            user, password = user_create(
                username=username, role=role, teams=team, email=email, password=password
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(
                "password refused, nothing was created: " + " ".join(exc.messages)
            ) from exc
        teams = ", ".join(t.name for t in user.teams.all()) or "no team"
        self.stdout.write(f"created {user.username} ({user.role}; {teams})")
        if not prompt_password:
            self.stdout.write(f"password: {password}")
