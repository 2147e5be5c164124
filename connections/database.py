"""A lost database connection: what it looks like, and getting a fresh one.

A failover, a restart or a terminated backend breaks the connection a worker holds; the
work itself was fine. Tasks retry it in seconds instead of ending it as an error, and the
retry must not reuse the broken connection.
"""

from __future__ import annotations

import contextlib

from django.db import DatabaseError, InterfaceError, OperationalError, connection

# Also a lock or statement timeout and a deadlock: each may pass on a retry as well.
DATABASE_LOST: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def database_connection_drop() -> None:
    """Close this thread's connection, so the next query opens a fresh one (Django reopens
    on demand). Not inside a transaction: closing there would mark the whole block broken
    (a test's, say), and a block that failed closes its own connection on the way out."""
    if connection.in_atomic_block:
        return
    with contextlib.suppress(DatabaseError):
        connection.close()
