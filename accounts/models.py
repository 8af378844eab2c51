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

    def _create_user_object(self, username, email, password, **extra_fields):
        user = super()._create_user_object(username, email, password, **extra_fields)
        if password is not None:
            validate_password(password, user=user)
        return user


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

    objects = UserManager()

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
