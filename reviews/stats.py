"""Agreement between a model and its reviewers: a pure function over counted
(model label, reviewer diagnosis) pairs."""

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


def agreement_compute(counts: Iterable[tuple[str, str, int]], classes: Sequence[str]) -> Agreement:
    """From (model label, reviewer diagnosis, how many cases) counts, which the database
    groups and counts (a few dozen rows however many cases were signed off), over the
    model's classes + inconclusive. A pair may come more than once; its counts add up.

    A label outside those (a diagnosis made against another model's classes, when a
    shadow model has different ones) gets its own row and column rather than vanishing.
    """
    counts = [(model, reviewer, n) for model, reviewer, n in counts if n]
    labels = [*classes, INCONCLUSIVE]
    for label in sorted({label for m, r, _ in counts for label in (m, r)} - set(labels)):
        labels.append(label)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for model_label, diagnosis, n in counts:
        matrix[index[model_label]][index[diagnosis]] += n
    return Agreement(
        labels=tuple(labels),
        matrix=tuple(tuple(row) for row in matrix),
        reviewed=sum(n for _, _, n in counts),
        agreed=sum(n for model, reviewer, n in counts if model == reviewer),
        inconclusive=sum(n for _, reviewer, n in counts if reviewer == INCONCLUSIVE),
    )
