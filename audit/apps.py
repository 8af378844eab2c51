from collections.abc import Callable

from django.apps import AppConfig
from django.db.models import Model
from django.db.models.signals import ModelSignal


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from django.db.models.signals import (
            m2m_changed,
            post_delete,
            post_save,
            pre_delete,
            pre_save,
        )

        from accounts.models import Team, User
        from audit import receivers

        connections: list[tuple[ModelSignal, type[Model], Callable[..., None]]] = [
            (pre_save, User, receivers.user_changes_note),
            (post_save, User, receivers.user_saved_record),
            (pre_delete, User, receivers.user_delete_refuse),
            (m2m_changed, User.teams.through, receivers.teams_changed_record),
            (pre_save, Team, receivers.team_name_note),
            (post_save, Team, receivers.team_saved_record),
            (post_delete, Team, receivers.team_delete_record),
        ]
        for signal, sender, receiver in connections:
            signal.connect(receiver, sender=sender, dispatch_uid=f"audit-{receiver.__name__}")
