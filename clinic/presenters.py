"""What the case page and its live status show, assembled from selectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts import policies
from accounts.models import User
from audit import selectors as audit_selectors
from cases.models import Case, SmearImage
from clinic import selectors
from inference import selectors as answers
from inference.health import analysis_overdue_reason, analysis_stalled_reason
from reviews import selectors as review_selectors

# Statuses in which a worker may still change the case: the page keeps polling.
ACTIVE_STATUSES = (Case.Status.SUBMITTED, Case.Status.ANALYSING)


@dataclass(frozen=True)
class AnalysisState:
    """How a case's analysis stands, for the page and the API alike."""

    waiting_since: datetime | None = None
    # What analysis needs and lacks (a broker, a worker, a model), or "".
    missing: str = ""
    # Why the wait is longer than it should be, or "".
    overdue_reason: str = ""

    @property
    def overdue(self) -> bool:
        return bool(self.overdue_reason)

    @property
    def stalled_reason(self) -> str:
        """Why it does not progress, in one sentence for the clinician; "" while it does."""
        return self.missing or self.overdue_reason


def analysis_states(*, cases: Sequence[Case]) -> dict[int, AnalysisState]:
    """The state of each case still being analysed, in two queries whatever their number
    (plus the broker and worker checks, once, when one of them waits)."""
    active = [case.pk for case in cases if case.status in ACTIVE_STATUSES]
    if not active:
        return {}
    since = answers.case_waiting_since(case_ids=active)
    stalled = analysis_stalled_reason()
    states = {}
    for pk in active:
        overdue = answers.analysis_overdue(since.get(pk))
        reason = analysis_overdue_reason(since[pk]) if overdue else ""
        states[pk] = AnalysisState(since.get(pk), stalled, reason)
    return states


def analysis_panel(*, user: User, case: Case) -> dict[str, Any]:
    """The case's status, why it waits (if it does), its images and the model's answer.

    A blinded reviewer who has not diagnosed the case gets the images without answers.
    """
    active = case.status in ACTIVE_STATUSES
    state = analysis_states(cases=[case]).get(case.pk, AnalysisState())
    context: dict[str, Any] = {
        "case": case,
        "active": active,
        "stalled": state.missing,
        "overdue": state.overdue_reason,
        "ahead": answers.images_ahead_in_queue(case=case) if active else 0,
    }
    if review_selectors.model_answer_hidden(user=user, case=case):
        images: Sequence[SmearImage] = list(case.images.all())
        context.update(images=images, result=None, blinded=True)
    else:
        images = answers.case_images(case=case)
        result = answers.case_result(case=case)
        target = answers.case_analysis_version(case_id=case.pk)
        context.update(
            images=images,
            result=result,
            # A re-analysis under way: the answer shown stays the earlier version's.
            reanalysis=target if result and target and target != result.model_version else None,
        )
    # Workers store a case's images a few at a time: the page shows them finishing.
    context["images_done"] = sum(
        image.status in (SmearImage.Status.DONE, SmearImage.Status.FAILED) for image in images
    )
    return context


def case_page(*, user: User, case: Case, access_history: bool = False) -> dict[str, Any]:
    """The case page; its history shows access events (views, downloads, exports) only
    when `access_history`, else how many it leaves out."""
    context = analysis_panel(user=user, case=case)
    can_edit = policies.can_edit(user, case.team_id)
    # The history names predicted labels, so a blinded reviewer does not get it either.
    history = (
        audit_selectors.CaseHistory(events=[], access_hidden=0)
        if context.get("blinded")
        else audit_selectors.case_history(case_id=case.pk, access=access_history)
    )
    can_reanalyse = (
        user.is_admin
        and case.withdrawn is None
        and case.status not in (Case.Status.DRAFT, Case.Status.REVIEWED)
    )
    context.update(
        can_reanalyse=can_reanalyse,
        reanalysis_choices=answers.case_reanalysis_choices(case=case) if can_reanalyse else [],
        can_edit=can_edit,
        # Only a draft: once analysis has started, what the model saw stays on record.
        can_withdraw=can_edit and case.status == Case.Status.DRAFT,
        can_review=policies.can_review(user),
        sign_off=selectors.case_sign_offs_for(user=user, cases=[case]).get(case.pk),
        history=history.events,
        history_access_hidden=history.access_hidden,
        history_all=access_history,
    )
    return context
