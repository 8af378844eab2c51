"""Agreement between a model and its reviewers: a pure function over (model, reviewer) labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reviews.models import INCONCLUSIVE


@dataclass(frozen=True)
class Agreement:
    """How often reviewers signed off the model's label, and where they did not.

    ``matrix[i][j]`` counts cases the model called ``labels[i]`` and the reviewer
    ``labels[j]``; the diagonal is agreement. "inconclusive" counts as disagreement.
    """

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    reviewed: int
    agreed: int
    inconclusive: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None

    @property
    def conclusive_rate(self) -> float | None:
        """Agreement among the cases the reviewer could decide."""
        decided = self.reviewed - self.inconclusive
        return self.agreed / decided if decided else None


def agreement_compute(pairs: Iterable[tuple[str, str]], classes: Sequence[str]) -> Agreement:
    """Count (model label, reviewer diagnosis) pairs over the model's classes + inconclusive.

    A label outside those (a diagnosis made against another model's classes, when a
    shadow model has different ones) gets its own row and column rather than vanishing.
    """
    pairs = list(pairs)
    labels = [*classes, INCONCLUSIVE]
    for label in sorted({label for pair in pairs for label in pair} - set(labels)):
        labels.append(label)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for model_label, diagnosis in pairs:
        matrix[index[model_label]][index[diagnosis]] += 1
    return Agreement(
        labels=tuple(labels),
        matrix=tuple(tuple(row) for row in matrix),
        reviewed=len(pairs),
        agreed=sum(model == reviewer for model, reviewer in pairs),
        inconclusive=sum(reviewer == INCONCLUSIVE for _, reviewer in pairs),
    )
