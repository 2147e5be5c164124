"""Sync tasks: take ids, call one service, retry only what may pass (STYLE.md)."""

import random

from celery import shared_task

from .. import services
from ..database import DATABASE_LOST, database_connection_drop
from ..trackstar import TrackstarRateLimited, TrackstarUnavailable
from .retry import backoff, database_backoff

SYNC_MAX_RETRIES = 8
# Below CELERY_TASK_SOFT_TIME_LIMIT: a long run hands the rest to a fresh task (it resumes
# from the run's cursor) instead of being killed mid-page.
SYNC_TIME_BUDGET_SECONDS = 10 * 60


@shared_task(name="connections.sync", bind=True, max_retries=SYNC_MAX_RETRIES)
def sync_resource(
    self,
    connection_id: int,
    resource: str,
    kind: str = "incremental",
    full: bool = False,
    requested: bool = False,
) -> str:
    try:
        outcome = services.sync_resource(
            connection_id=connection_id,
            resource=resource,
            kind=kind,
            full=full,
            time_budget=SYNC_TIME_BUDGET_SECONDS,
            requested=requested,
        )
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if self.request.retries >= self.max_retries:
            services.sync_fail(
                connection_id=connection_id,
                resource=resource,
                reason="Trackstar stayed unreachable; the next scheduled sync tries again.",
            )
            return "failed"
        countdown = backoff(self.request.retries, base=5.0)
        if isinstance(e, TrackstarRateLimited):
            countdown = max(countdown, e.retry_after + random.uniform(0, 1))  # noqa: S311
        raise self.retry(exc=e, countdown=countdown) from e
    except DATABASE_LOST as e:
        # The run and its cursor are kept (the service gave the lease up if it could):
        # retry soon on a fresh connection. Still down after every retry, the lease lapses
        # and sync_resume_orphaned resumes the run once the database is back.
        database_connection_drop()
        if self.request.retries >= self.max_retries:
            return "database_unavailable"
        raise self.retry(exc=e, countdown=database_backoff(self.request.retries)) from e
    if outcome.status == "continue":
        # The rest of this run; should the run be over when it arrives, it does nothing.
        sync_resource.delay(connection_id, resource, kind, full, requested=True)
    elif outcome.status == "busy" and self.request.retries < self.max_retries:
        # Another worker holds the lease, or held it and died (a redelivered message after
        # a crash lands here): look again once the lease can have lapsed.
        countdown = min((outcome.retry_in or 0) + random.uniform(1, 3), 300)  # noqa: S311
        raise self.retry(countdown=countdown)
    return outcome.status


@shared_task(name="connections.sync_dispatch")
def sync_dispatch_due() -> int:
    return services.sync_dispatch_due()


@shared_task(name="connections.sync_resume_orphaned")
def sync_resume_orphaned() -> int:
    return services.sync_resume_orphaned()
