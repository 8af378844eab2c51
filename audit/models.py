from django.conf import settings
from django.db import models


class AppendOnly(ValueError):
    """An attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Refuses bulk changes: ``AuditEvent.objects.filter(...).update()`` or ``.delete()``
    would otherwise rewrite the log behind save() and delete()."""

    def update(self, **kwargs) -> int:
        raise AppendOnly("audit events are append-only")

    def delete(self):
        raise AppendOnly("audit events are append-only")

    def bulk_update(self, *args, **kwargs) -> int:
        raise AppendOnly("audit events are append-only")

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for event in objs:
            event.actor_username_fill()
        return super().bulk_create(objs, *args, **kwargs)


class AuditEvent(models.Model):
    """Who did what to which record, and when. Rows are only ever added."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        VIEW = "view", "Viewed"
        CHANGE = "change", "Changed"
        DOWNLOAD = "download", "Downloaded"
        SUBMIT = "submit", "Submitted"
        REVIEW = "review", "Reviewed"
        DEPLOY = "deploy", "Deployed"
        IMPORT = "import", "Imported"
        EVALUATE = "evaluate", "Evaluated"
        EXPORT = "export", "Exported"
        WITHDRAW = "withdraw", "Withdrawn"
        LOGIN = "login", "Logged in"
        LOGOUT = "logout", "Logged out"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOCKOUT = "lockout", "Locked out"
        UNLOCK = "unlock", "Unlocked"
        TOKEN_CREATE = "token_create", "API token created"
        TOKEN_REVOKE = "token_revoke", "API token revoked"
        TOKEN_EXPIRE = "token_expire", "API token expired"
        MFA_ENROL = "mfa_enrol", "Second factor enrolled"
        MFA_VERIFY = "mfa_verify", "Second factor used"
        MFA_FAIL = "mfa_fail", "Second factor failed"
        MFA_RESET = "mfa_reset", "Second factor reset"
        DEACTIVATE = "deactivate", "Deactivated"

    # Who looked at or took a copy of a record: kept, but not part of a case's clinical story.
    ACCESS_ACTIONS = (Action.VIEW, Action.DOWNLOAD, Action.EXPORT)

    # None for the system (a command, a worker). PROTECT: a user who ever acted cannot be
    # deleted (users are deactivated instead), and the name is copied besides.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices, db_index=True)
    # What was touched, by model label ("cases.smearimage") and primary key.
    target_type = models.CharField(max_length=64, db_index=True)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=255)
    # The case the event belongs to, when it belongs to one: the case history reads this.
    case = models.ForeignKey(
        "cases.Case", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.actor_username or 'system'} {self.action} {self.target_repr}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None or not self._state.adding:
            raise AppendOnly("audit events are append-only")
        self.actor_username_fill()
        super().save(*args, **kwargs)

    def actor_username_fill(self) -> None:
        if self.actor is not None and not self.actor_username:
            self.actor_username = self.actor.get_username()

    def delete(self, *args, **kwargs):
        raise AppendOnly("audit events are append-only")


class AppendOnlyHistory(models.Model):
    """Base of the clinical models' historical rows (django-simple-history): a saved
    version is never rewritten or removed through its row."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnly("field history is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("field history is append-only")
