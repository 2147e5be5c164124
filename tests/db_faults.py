"""Database faults for tests: what a failover, a restart or an operator's
pg_terminate_backend does to the connections a process holds (the server stays up)."""

import psycopg
from django.db import connection


def terminate_this_connection() -> None:
    """End this thread's database session from another one, as a failover would between two
    queries: the next query on it fails with OperationalError."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        # With a timeout: returns once the session is gone, so the next query cannot race it.
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def terminate_every_other_connection() -> int:
    """End every session on this database but this one (a worker's, beat's, ...); returns
    how many were ended."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]
