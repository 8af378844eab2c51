"""The lock that orders deploys and the pinning of cases to the deployed version.

A case is pinned to the version deployed when it is submitted, and the registry's
deployment events say which version that was at any moment. Without an order between
the two, a case submitted while a deploy was committing read the old version (the
deploy not yet visible) in a transaction whose rows carry a later time than the
deploy's event: analysed as submitted, but recorded as if after the deploy. So a
deploy takes this lock exclusively before it changes anything, and a pin shares it
before it reads the deployed version: a pin waits for a deploy under way and then reads
its version, and a deploy waits for the pins under way, whose times then come first.
"""

from __future__ import annotations

from django.db import connection

#: PostgreSQL advisory lock key (any 64-bit number no other lock uses): "LeukDepl".
DEPLOYMENT_LOCK_KEY = 0x4C65756B4465706C


def deployment_lock(*, exclusive: bool) -> None:
    """Hold the deployment lock until the current transaction ends (call it inside one).

    On PostgreSQL a transaction-level advisory lock; SQLite (the embedded default) lets
    one transaction write at a time, which orders them already."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [DEPLOYMENT_LOCK_KEY])
