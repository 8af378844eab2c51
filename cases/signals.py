"""What the cases app announces to the apps built on it (it imports none of them)."""

from django.dispatch import Signal

# Sent inside the transaction that submits a case (or adds images to a submitted one),
# with ``case_id``: the inference app queues the analysis once it commits.
case_submitted = Signal()
