"""Sync tasks: take ids, call one service, retry by the one policy (retry.py)."""

import random

from celery import shared_task

from connections import enqueue
from connections.sync import run as sync_service
from connections.sync.run import SyncOutcome, SyncStatus
from connections.task_retry import run_retrying

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
    outcome: SyncOutcome | str = run_retrying(
        self,
        lambda: sync_service.sync_resource(
            connection_id=connection_id,
            resource=resource,
            kind=kind,
            full=full,
            time_budget=SYNC_TIME_BUDGET_SECONDS,
            requested=requested,
        ),
        trackstar_base=5.0,
        trackstar_exhausted=lambda: _give_up(connection_id, resource),
        # The run and its cursor are kept (the service gave the lease up if it could).
        # Still down after every retry, the lease lapses and sync_resume_orphaned resumes
        # the run once the database is back.
        database_exhausted=lambda: "database_unavailable",
    )
    if isinstance(outcome, str):
        return outcome
    if outcome.status == SyncStatus.CONTINUE:
        # The rest of this run; should the run be over when it arrives, it does nothing.
        # Not sent (broker down): the lease lapses and sync_resume_orphaned resumes it.
        enqueue.resource_sync(connection_id, resource, kind, full)
    elif outcome.status == SyncStatus.BUSY and self.request.retries < self.max_retries:
        # Another worker holds the lease, or held it and died (a redelivered message after
        # a crash lands here): look again once the lease can have lapsed.
        countdown = min((outcome.retry_in or 0) + random.uniform(1, 3), 300)  # noqa: S311
        raise self.retry(countdown=countdown)
    return outcome.status.value


def _give_up(connection_id: int, resource: str) -> str:
    sync_service.sync_fail(
        connection_id=connection_id,
        resource=resource,
        reason="Trackstar stayed unreachable; the next scheduled sync tries again.",
    )
    return SyncStatus.FAILED.value


@shared_task(name="connections.sync_dispatch")
def sync_dispatch_due() -> int:
    return sync_service.sync_dispatch_due()


@shared_task(name="connections.sync_resume_orphaned")
def sync_resume_orphaned() -> int:
    return sync_service.sync_resume_orphaned()
