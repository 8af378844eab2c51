from typing import ClassVar, cast

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.contrib.auth.password_validation import validate_password
from django.db import models


class Team(models.Model):
    """A ward or laboratory: the unit that owns patients and cases."""

    name = models.CharField(max_length=120, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Administrator"


class UserManager(DjangoUserManager):
    """Django's, but a password given here passes AUTH_PASSWORD_VALIDATORS too: every
    command that creates a user (create_user, createsuperuser, also non-interactively)
    comes through here, and Django's own manager checks nothing."""

    def _validate(self, username: str, email: str | None, password: str | None, extra) -> None:
        if password is not None:
            fields = {k: v for k, v in extra.items() if k in ("first_name", "last_name")}
            user = self.model(username=username, email=email, **fields)
            # The stubs leave the manager's model generic; here it is always our User.
            validate_password(password, user=cast("User", user))

    def create_user(self, username, email=None, password=None, **extra_fields):
        self._validate(username, email, password, extra_fields)
        return super().create_user(username, email, password, **extra_fields)

    def create_superuser(self, username, email=None, password=None, **extra_fields):
        self._validate(username, email, password, extra_fields)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person using LeukWeb; what they may see follows from role and teams.

    A clinician works on the cases of their teams, a reviewer reviews the cases
    of the teams listed here, an administrator sees everything.
    """

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLINICIAN)
    teams = models.ManyToManyField(Team, blank=True, related_name="members")
    # A reviewer's standing choice; the rule built on it is accounts.policies.answers_blinded.
    blinded_review = models.BooleanField(
        default=False, help_text="Show the images first, the model's answer after a diagnosis."
    )

    objects: ClassVar[UserManager] = UserManager()

    def save(self, *args, **kwargs) -> None:
        # Administrators manage models and users through the Django admin.
        if self.role == Role.ADMIN:
            self.is_staff = True
        super().save(*args, **kwargs)

    @property
    def is_clinician(self) -> bool:
        return self.role == Role.CLINICIAN

    @property
    def is_reviewer(self) -> bool:
        return self.role == Role.REVIEWER

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN or self.is_superuser
