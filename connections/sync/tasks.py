"""Sync tasks: take ids, call one service, retry by the one policy (task_retry.py)."""

from celery import shared_task

from connections.sync import run as sync_service
from connections.sync import schedule as schedule_service
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
) -> str | None:
    # Busy (another worker holds the lease, or held it and died: a message redelivered
    # after a crash lands here) is retried once the lease can have lapsed.
    outcome: SyncOutcome | str | None = run_retrying(
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
    return outcome.status.value if isinstance(outcome, SyncOutcome) else outcome


def _give_up(connection_id: int, resource: str) -> str:
    sync_service.sync_fail(
        connection_id=connection_id,
        resource=resource,
        reason="Trackstar stayed unreachable; the next scheduled sync tries again.",
    )
    return SyncStatus.FAILED.value


@shared_task(name="connections.sync_dispatch")
def sync_dispatch_due() -> int:
    return schedule_service.sync_dispatch_due()


@shared_task(name="connections.sync_resume_orphaned")
def sync_resume_orphaned() -> int:
    return schedule_service.sync_resume_orphaned()
