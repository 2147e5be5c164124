"""The tasks' one retry policy, keyed on typed errors (STYLE.md: retry only what may pass).

Three kinds of error may pass on a retry, and nothing else is retried:
- Trackstar busy or unreachable (TrackstarRateLimited, whose Retry-After is honoured, and
  TrackstarUnavailable): exponential backoff with full jitter;
- the database connection lost (OperationalError / InterfaceError): seconds, on a fresh
  connection, as a failover or a terminated backend is over in seconds;
- the work held by another worker (Busy, raised by the sync engine, connections/sync/run.py):
  once the hold can have lapsed.

Each task says what its rows need when a retry is scheduled (so a sweep leaves them alone
until it is overdue) and when the retries ran out (end the row with a reason people can
read, or leave it for its sweep).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

from connections.database import DATABASE_LOST, database_connection_drop
from connections.sync.run import Busy
from connections.trackstar import TrackstarRateLimited, TrackstarUnavailable

T = TypeVar("T")
logger = logging.getLogger(__name__)

Hook = Callable[[], Any]
Scheduled = Callable[[float], Any]


def backoff(retries: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter, so retries of many tasks do not align."""
    return random.uniform(base / 2, min(cap, base * 2**retries))  # noqa: S311


def database_backoff(retries: int) -> float:
    """After a lost database connection: seconds, not minutes. A terminated backend needs
    only a fresh connection; a failover or a restart is over in seconds too."""
    return backoff(retries, base=2.0, cap=30.0)


def trackstar_backoff(error: Exception, retries: int, *, base: float) -> float:
    countdown = backoff(retries, base=base)
    if isinstance(error, TrackstarRateLimited):
        countdown = max(countdown, error.retry_after + random.uniform(0, 1))  # noqa: S311
    return countdown


def run_retrying(
    task: Any,
    call: Callable[[], T],
    *,
    trackstar_base: float = 2.0,
    trackstar_scheduled: Scheduled | None = None,
    trackstar_exhausted: Hook | None = None,
    database_scheduled: Scheduled | None = None,
    database_exhausted: Hook | None = None,
    poisoned: Callable[[Exception], Any] | None = None,
) -> T | Any:
    """`call()` (the task's one service call) inside a bound task, retried by the policy.

    *_scheduled(countdown): a retry was scheduled (record it on the row). *_exhausted():
    the last retry failed too; its value is the task's. Without a hook nothing is done: the
    row's sweep or poll takes it from there. poisoned(error): any other error, which no
    retry would pass (logged with its traceback); without it, the error goes up."""
    retries = task.request.retries
    out_of_retries = retries >= task.max_retries
    try:
        return call()
    except Busy as e:
        # No hook: the holder finishes the work, or its lapsed lease brings it back.
        if out_of_retries:
            return None
        countdown = min(e.retry_in + random.uniform(1, 3), 300)  # noqa: S311
        raise task.retry(countdown=countdown) from e
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if out_of_retries:
            return trackstar_exhausted() if trackstar_exhausted else None
        countdown = trackstar_backoff(e, retries, base=trackstar_base)
        if trackstar_scheduled:
            trackstar_scheduled(countdown)
        raise task.retry(exc=e, countdown=countdown) from e
    except DATABASE_LOST as e:
        # Not the work's fault: retry on a fresh connection (the broken one must not be
        # reused), and record the retry on the row only if the database answers again.
        database_connection_drop()
        if out_of_retries:
            return database_exhausted() if database_exhausted else None
        countdown = database_backoff(retries)
        if database_scheduled:
            try:
                database_scheduled(countdown)
            except DATABASE_LOST:
                database_connection_drop()
        raise task.retry(exc=e, countdown=countdown) from e
    except Exception as e:
        if poisoned is None:
            raise
        logger.exception("%s could not be done; not retried", task.name)
        return poisoned(e)
