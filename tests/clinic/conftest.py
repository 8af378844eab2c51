import pytest


@pytest.fixture(autouse=True)
def _analysis_queue_recorded(queued):
    """Submitting a case here records its analysis request; no broker is involved."""
