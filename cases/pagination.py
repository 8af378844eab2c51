"""Pages of long lists whose count stops at a bound.

Counting 100,000 cases costs more than showing the 25 of a page, and nobody pages past
the fortieth: a list counts at most COUNT_BOUND rows and then says "1,000+", and a
filter or a search finds what lies further. The case, patient, queue and prediction
pages all page this way (in ``cases``, the lowest app whose records they list).
"""

from __future__ import annotations

from typing import TypeVar

from django.core.paginator import Page, Paginator
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

T = TypeVar("T", bound=Model)

COUNT_BOUND = 1000


class BoundedPaginator(Paginator):
    def __init__(self, object_list: QuerySet | list, per_page: int, *, bound: int = COUNT_BOUND):
        super().__init__(object_list, per_page)
        self.bound = bound

    @cached_property
    def _counted(self) -> int:
        # One row past the bound tells "exactly 1,000" from "more" (a LIMIT in the query);
        # only the keys are selected, not what each row shows.
        if isinstance(self.object_list, QuerySet):
            return self.object_list.values("pk")[: self.bound + 1].count()
        return len(self.object_list[: self.bound + 1])

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.bound)

    @property
    def capped(self) -> bool:
        """Whether there are more rows than counted (and than the pages reach)."""
        return self._counted > self.bound

    @property
    def count_label(self) -> str:
        return f"{self.count:,}+" if self.capped else f"{self.count:,}"

    @property
    def num_pages_label(self) -> str:
        return f"{self.num_pages:,}+" if self.capped else f"{self.num_pages:,}"


def paginate(
    object_list: QuerySet[T] | list[T], per_page: int, number: str | int | None
) -> Page[T]:
    """The requested page (the last one for a number past the end, the first for junk)."""
    page: Page[T] = BoundedPaginator(object_list, per_page).get_page(number)
    return page
