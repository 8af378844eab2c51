"""The case-level answer from its images' predictions: a pure rule, no database.

The mean of the calibrated class probabilities over the case's in-scope images (each
image weighs the same), its top class as the label and that mean probability as the
confidence. "Needs review" when the confidence is below the model's threshold
(manifest), when the images' own top labels disagree, or when any image is out of scope
(the model was shown something unlike its training data). Out-of-scope images do not
vote; when every image is out of scope the mean over all of them is kept only so that
the case has an answer row, which the pages then do not show as a subtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class ImageAnswer(Protocol):
    """What the rule reads of one image's prediction (a Prediction row has it)."""

    probabilities: Mapping[str, float]
    label: str
    out_of_scope: bool


@dataclass(frozen=True)
class CaseAnswer:
    label: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    images_count: int
    out_of_scope_count: int


def case_answer(
    answers: Sequence[ImageAnswer], *, classes: Sequence[str], threshold: float
) -> CaseAnswer:
    """Aggregate one model version's answers for a case's images (at least one)."""
    if not answers:
        raise ValueError("a case answer needs at least one image answer")
    classes = list(classes)
    in_scope = [a for a in answers if not a.out_of_scope] or list(answers)
    mean = {c: sum(a.probabilities.get(c, 0.0) for a in in_scope) / len(in_scope) for c in classes}
    # Ties go to the class listed first, so the answer does not depend on dict order.
    label = max(classes, key=lambda c: (mean[c], -classes.index(c)))
    out_of_scope = sum(a.out_of_scope for a in answers)
    return CaseAnswer(
        label=label,
        confidence=mean[label],
        probabilities=mean,
        needs_review=mean[label] < threshold
        or len({a.label for a in in_scope}) > 1
        or out_of_scope > 0,
        images_count=len(answers),
        out_of_scope_count=out_of_scope,
    )
