"""The field history of clinical models: every saved version, who saved it, append-only."""

from simple_history.models import HistoricalRecords

from audit.context import history_user
from audit.models import AppendOnlyHistory


def field_history() -> HistoricalRecords:
    """``history = field_history()`` on a model keeps each saved version of its rows, with
    the acting user (audit.context), in rows that cannot be changed or deleted."""
    return HistoricalRecords(get_user=history_user, bases=[AppendOnlyHistory])
