"""What the review page and the printable report show, assembled from selectors.

Blinded, nothing that carries the model's answer is even computed: no labels,
probabilities, heatmaps, verdicts or history (audit entries name predicted labels).
"""

from __future__ import annotations

from typing import Any

from accounts.models import User
from audit import selectors as audit_selectors
from cases.models import Case
from inference import selectors as answers
from inference.models import ModelVersion
from reviews import selectors
from training.charts import heat_rows


def bars(probabilities: dict, classes: list[str]) -> list[tuple[str, float]]:
    """(label, probability) in the model's class order, for the bar charts."""
    return [(label, float(probabilities.get(label, 0.0))) for label in classes]


def case_page(
    *, user: User, case: Case, blinded: bool, access_history: bool = False
) -> dict[str, Any]:
    """The review page's data; ``blinded`` is the reviewer's choice for this view, and the
    history shows access events (views, downloads) only with ``access_history``."""
    sign_off = selectors.sign_off_for_case(case=case)
    has_diagnosed = selectors.reviewer_has_diagnosed(user=user, case=case)
    revealed = not blinded or sign_off is not None or has_diagnosed
    images = answers.case_images(case=case)
    context: dict[str, Any] = {
        "case": case,
        "images": images,
        "sign_off": sign_off,
        "locked": sign_off is not None or case.status == Case.Status.REVIEWED,
        "blinded": blinded,
        "revealed": revealed,
    }
    if not revealed:
        return context
    results = selectors.case_results(user=user, case=case)
    # The templates read these as attributes of the records (mypy knows only the fields).
    for result in results:
        result.bars = bars(  # type: ignore[attr-defined]
            result.probabilities, result.model_version.classes
        )
    for image in images:
        prediction = image.prediction  # type: ignore[attr-defined]  # set by case_images
        if prediction is not None:
            prediction.bars = bars(prediction.probabilities, prediction.model_version.classes)
    primary = next((r for r in results if r.primary), None)
    history = audit_selectors.case_history(case_id=case.pk, access=access_history)
    context.update(
        results=results,
        primary=primary,
        # The diagnosis that agreeing with the model records (None: its label maps to
        # none, or the model gave no answer).
        agree_with=primary.model_version.clinical_label(primary.label)
        if primary and not primary.abstained
        else None,
        reviews=list(selectors.review_list_for_case(case=case)),
        history=history.events,
        history_access_hidden=history.access_hidden,
        history_all=access_history,
    )
    return context


def agreement_panel(*, user: User, version: ModelVersion) -> dict[str, Any]:
    """One version's agreement with signed-off diagnoses, with its matrix's table rows."""
    stats = selectors.agreement_for_model_version(user=user, model_version=version)
    return {"version": version, "stats": stats, "rows": heat_rows(stats.matrix, stats.labels)}
