"""The sync engine: keep a local copy of each connection's WMS records (DESIGN.md §6).

One sync per (connection, resource) at a time, held by a lease on its ResourceSync row.
A run pages through Trackstar 1000 records at a time and commits each page in one
transaction: one upsert statement for the records, the run's progress and cursor, and the
lease renewal, which also fences out a worker whose lease was taken over. The lease is
short (SYNC_LEASE_SECONDS) and renewed on every page and while a page waits, a heartbeat:
a task that dies mid-run leaves the cursor behind, its lease lapses within seconds, and
another worker resumes there. A lost database connection is retried, run and cursor kept.
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from connections.clients import trackstar_client
from connections.database import DATABASE_LOST, database_connection_drop
from connections.models import RECORD_MODELS, Connection, ResourceSync, SyncedRecord, SyncRun
from connections.sync import schedule
from connections.sync.schedule import (
    SYNC_REQUEST_FIELDS,
    next_slot,
    stronger_kind,
    sync_interval_seconds,
    sync_request_follow_up,
    sync_request_follow_up_by_id,
    sync_request_taken,
)
from connections.sync.trackstar_budget import trackstar_get_limiter
from connections.sync.upsert import (
    UpsertStatement,
    upsert_statement_build,
    upsert_statement_execute,
)
from connections.token_buckets import acquire
from connections.trackstar import (
    TrackstarAuthError,
    TrackstarBadRequest,
    TrackstarError,
    TrackstarForbidden,
    TrackstarNotImplemented,
    TrackstarRateLimited,
    TrackstarUnavailable,
    TrackstarValidationError,
)

logger = logging.getLogger(__name__)

# Records a run asks Trackstar for in one page: its maximum (API.md §5). One page is one
# upsert statement and one transaction.
TRACKSTAR_PAGE_LIMIT = 1000
# Retries of one page inside a run (429 and timeouts/5xx) before the task gives up and
# retries later from the same page.
PAGE_RETRIES = 5
PAGE_BACKOFF_BASE = 0.5
PAGE_BACKOFF_CAP = 10.0


class Busy(Exception):
    """Another worker holds the work (a sync's lease) for `retry_in` more seconds, or held
    it and died (a message redelivered after a crash): not a failure, look again then."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class LeaseLost(Exception):
    """Another worker took this sync's lease: stop without writing anything more."""


class SyncStatus(enum.StrEnum):
    """How one sync task's run of the engine ended."""

    # The run ended:
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"  # the WMS does not offer the resource
    FORBIDDEN = "forbidden"  # a missing permission
    TOKEN_REJECTED = "token_rejected"
    DELETED = "deleted"  # at Trackstar
    # The run waits:
    PAUSED = "paused"  # Trackstar refuses our API key
    CONTINUE = "continue"  # out of time: a fresh task takes the rest
    # Nothing was run:
    SKIPPED = "skipped"
    LEASE_LOST = "lease_lost"  # fenced out by another worker


@dataclass(frozen=True)
class SyncOutcome:
    status: SyncStatus
    run: SyncRun | None = None


@dataclass
class _Lease:
    resource_sync_id: int
    token: uuid.UUID
    run: SyncRun


# --- One run ---------------------------------------------------------------------------------


def sync_resource(
    *,
    connection_id: int,
    resource: str,
    kind: str = SyncRun.Kind.INCREMENTAL,
    full: bool = False,
    time_budget: float | None = None,
    page_budget: int | None = None,
    requested: bool = False,
) -> SyncOutcome:
    """Run (or resume) the sync of one resource of one connection.

    Raises TrackstarUnavailable / TrackstarRateLimited when Trackstar stays unreachable
    for a page: the lease is released and the run keeps its cursor, so a retry resumes it.
    Raises Busy while another worker holds the lease. `time_budget` / `page_budget` end a
    long run early with status "continue", its rest sent to a fresh task on commit.
    `requested`: the message of a request (sync_request) or of a resume, which has nothing
    to do when no run waits to be resumed and another run already took the request."""
    if resource not in RECORD_MODELS:
        raise ValueError(f"Not a synced resource: {resource!r}")
    connection = Connection.objects.select_related("customer").filter(pk=connection_id).first()
    if connection is None or connection.status != Connection.Status.ACTIVE:
        return SyncOutcome(SyncStatus.SKIPPED)
    if not connection.access_token:
        return SyncOutcome(SyncStatus.SKIPPED)
    acquired = _lease_acquire(connection, resource, kind, full, requested)
    if isinstance(acquired, SyncOutcome):
        return acquired
    lease = acquired
    log_extra = {
        "customer_id": connection.customer.public_id,
        "connection_id": connection.trackstar_connection_id,
        "resource": resource,
        "sync_run_id": lease.run.pk,
    }
    try:
        outcome = _run(connection, resource, lease, time_budget, page_budget, log_extra)
    except LeaseLost:
        logger.warning("Lost the sync lease; another worker continues", extra=log_extra)
        return SyncOutcome(SyncStatus.LEASE_LOST, lease.run)
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        _lease_release(lease, error=f"Trackstar is busy or unreachable; will retry ({e}).")
        raise
    except TrackstarAuthError as e:
        return _finish_unauthorized(connection, lease, e)
    except TrackstarForbidden as e:
        return _finish_forbidden(connection, lease, e)
    except TrackstarNotImplemented as e:
        return _finish_unsupported(
            lease, f"{connection.integration_name} does not offer {resource}: {e.message}"
        )
    except TrackstarError as e:
        logger.warning("Sync failed: %s", e, extra=log_extra)
        return _finish_failed(lease, f"Trackstar refused the sync: {e}")
    except DATABASE_LOST as e:
        # A failover, a restart, a terminated backend: not the run's fault. The last page
        # committed whole or not at all, so the run and its cursor stay for the task's
        # retry, seconds from now on a fresh connection.
        logger.warning("Lost the database connection mid-sync: %s", e, extra=log_extra)
        _lease_release_after_database_error(lease)
        raise
    except Exception as e:
        # A bug, or bad data the database refused: end the run visibly rather than resume
        # into it forever.
        logger.exception("Sync crashed", extra=log_extra)
        _finish_failed(lease, f"Internal error: {type(e).__name__}")
        raise
    if outcome.status == SyncStatus.CONTINUE:
        # The rest of this run, as the message that brought us here; should the run be over
        # when it arrives, it does nothing. Not sent (broker down): the released row is
        # due, and the dispatcher's request resumes the run.
        transaction.on_commit(
            functools.partial(schedule.sync_send, connection_id, resource, kind, full),
            robust=True,
        )
    return outcome


def _lease_acquire(
    connection: Connection, resource: str, kind: str, full: bool, requested: bool = False
) -> _Lease | SyncOutcome:
    now = timezone.now()
    lease_for = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    with transaction.atomic():
        ResourceSync.objects.get_or_create(
            connection=connection,
            resource=resource,
            defaults={"interval_seconds": sync_interval_seconds(resource)},
        )
        resource_sync = (
            ResourceSync.objects.select_for_update(of=("self",))
            .select_related("current_run")
            .get(connection=connection, resource=resource)
        )
        # A request waiting on the row: the run that starts serves it, whichever message
        # brought the worker here. What it asks is on the row, not in a request's message:
        # a join or the end of a run may have changed it since the message went out.
        pending = resource_sync.requested_at is not None
        if pending:
            request_kind = resource_sync.requested_kind
            if not requested:
                request_kind = stronger_kind(kind, request_kind)
            request_full = resource_sync.requested_full or (full and not requested)
            kind = stronger_kind(kind, resource_sync.requested_kind)  # for the checks below
        manual = kind == SyncRun.Kind.MANUAL
        scheduled = kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.INCREMENTAL)
        if not resource_sync.enabled or (resource_sync.unsupported and not manual):
            return _skipped(resource_sync)
        if (resource_sync.paused or connection.sync_paused) and not manual:
            return _skipped(resource_sync)
        if resource_sync.permission_error and not manual:
            return _skipped(resource_sync)
        if (
            scheduled
            and not resource_sync.history_ready
            and resource_sync.created_at
            > now - (timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS))
        ):
            return _skipped(resource_sync)
        expires = resource_sync.lease_expires_at
        if resource_sync.lease_token and expires is not None and expires > now:
            # Nothing written yet: leaving the transaction by raising undoes nothing.
            raise Busy(
                f"Another worker holds the {resource} sync's lease",
                retry_in=(expires - now).total_seconds(),
            )
        run = resource_sync.current_run
        if run is not None and run.status != SyncRun.Status.RUNNING:
            run = None
        if run is not None:
            # Resumed. A request made while it ran waits for its end (the run sends it
            # then), except the schedule's: this run is the scheduled read.
            if pending and resource_sync.requested_kind == SyncRun.Kind.INCREMENTAL:
                sync_request_taken(resource_sync)
        else:
            if requested and not pending:
                # A copy of a request's message (sent again, redelivered): a run took it.
                return SyncOutcome(SyncStatus.SKIPPED)
            if not pending and scheduled and _recently_synced(resource_sync, now):
                # A duplicate of a scheduled run that already happened (redelivered, or
                # dispatched twice while the queue was long).
                return SyncOutcome(SyncStatus.SKIPPED)
            if pending:
                kind, full = request_kind, request_full
            mark = resource_sync.high_water_mark
            run_kind = kind
            if mark is None and kind == SyncRun.Kind.INCREMENTAL:
                run_kind = SyncRun.Kind.INITIAL
            if mark is None or full or run_kind == SyncRun.Kind.INITIAL:
                since = None
            else:
                since = mark - timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)
            run = SyncRun.objects.create(
                connection=connection,
                resource=resource,
                kind=run_kind,
                since=since,
            )
            sync_request_taken(resource_sync)
        run.attempts += 1
        run.save(update_fields=["attempts", "updated_at"])
        resource_sync.current_run = run
        resource_sync.unsupported = False
        resource_sync.lease_token = uuid.uuid4()
        resource_sync.lease_expires_at = now + lease_for
        # Moves with every renewal; once the lease lapses (this worker died), the row is
        # due, and sync_resume_orphaned hands the run to another worker.
        resource_sync.next_sync_at = resource_sync.lease_expires_at
        resource_sync.save(
            update_fields=[
                "current_run",
                "unsupported",
                "lease_token",
                "lease_expires_at",
                "next_sync_at",
                *SYNC_REQUEST_FIELDS,
                "updated_at",
            ]
        )
    return _Lease(resource_sync.pk, resource_sync.lease_token, run)


def _skipped(resource_sync: ResourceSync) -> SyncOutcome:
    """Nothing to run (disabled, paused, no access, no history yet): a request waiting is
    dropped, the row's state says why."""
    if resource_sync.requested_at is not None:
        sync_request_taken(resource_sync)
        resource_sync.save(update_fields=[*SYNC_REQUEST_FIELDS, "updated_at"])
    return SyncOutcome(SyncStatus.SKIPPED)


def _recently_synced(resource_sync: ResourceSync, now: datetime) -> bool:
    last = resource_sync.last_success_at
    return last is not None and last > now - timedelta(seconds=resource_sync.interval_seconds / 2)


def _lease_renew(lease: _Lease) -> None:
    now = timezone.now()
    expires = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    renewed = ResourceSync.objects.filter(
        pk=lease.resource_sync_id, lease_token=lease.token
    ).update(lease_expires_at=expires, next_sync_at=expires, updated_at=now)
    if not renewed:
        raise LeaseLost


def _lease_release(lease: _Lease, *, error: str) -> None:
    """Give the lease up but keep the run and its cursor for whoever takes it next."""
    with transaction.atomic():
        now = timezone.now()
        released = ResourceSync.objects.filter(
            pk=lease.resource_sync_id, lease_token=lease.token
        ).update(lease_token=None, lease_expires_at=None, next_sync_at=now, updated_at=now)
        if released:
            SyncRun.objects.filter(pk=lease.run.pk).update(error=error, updated_at=now)


def _lease_release_after_database_error(lease: _Lease) -> None:
    """Drop the broken connection and give the lease up on a fresh one, so the retry can
    take it at once. A database still unreachable keeps it: it lapses in
    SYNC_LEASE_SECONDS, and the retry waits that out."""
    database_connection_drop()
    try:
        _lease_release(lease, error="Lost the database connection; resuming.")
    except DATABASE_LOST:
        database_connection_drop()


def _run(
    connection: Connection,
    resource: str,
    lease: _Lease,
    time_budget: float | None,
    page_budget: int | None,
    log_extra: dict[str, Any],
) -> SyncOutcome:
    run = lease.run
    model = RECORD_MODELS[resource]
    # trackstar_updated_date, not the WMS's updated_date: it also moves when Trackstar first
    # sees a record that is old in the WMS (late ingestion, a reinstall, a backfill).
    filters = {"trackstar_updated_date": {"gte": run.since}} if run.since else None
    page_token = run.next_page_token or None
    mark = run.high_water_mark
    started = time.monotonic()
    pages_this_attempt = 0
    # One page ahead: a thread downloads, parses and turns the next page into its SQL
    # statement while the database writes the current one (this thread then waits on
    # PostgreSQL, not on the GIL). Retries, the lease and every write stay on this thread.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-prefetch")
    db = connections[DEFAULT_DB_ALIAS]

    def fetch(token: str | None) -> Future[_FetchedPage]:
        return prefetch.submit(_fetch_once, connection, model, filters, token, db)

    try:
        pending = fetch(page_token)
        while True:
            try:
                page = _await_page(pending, functools.partial(fetch, page_token), lease)
            except (TrackstarValidationError, TrackstarBadRequest):
                if page_token is None:
                    raise
                # The resumed page token expired or was refused: start this run's query
                # over; upserts are idempotent, so re-reading costs time, not correctness.
                logger.info("Page token refused on resume; restarting the run", extra=log_extra)
                page_token = None
                pending = fetch(None)
                continue
            if page.next_token is not None and page.next_token == page_token:
                raise TrackstarError("Trackstar repeated a page token", path=resource)
            upcoming = fetch(page.next_token) if page.next_token is not None else None
            mark = _commit_page(lease, page, mark)
            pages_this_attempt += 1
            if upcoming is None:
                return _finish_succeeded(connection, lease, mark, log_extra)
            page_token, pending = page.next_token, upcoming
            out_of_time = time_budget is not None and time.monotonic() - started > time_budget
            out_of_pages = page_budget is not None and pages_this_attempt >= page_budget
            if out_of_time or out_of_pages:
                _lease_release(lease, error="")
                return SyncOutcome(SyncStatus.CONTINUE, lease.run)
    finally:
        # Do not wait for a prefetch nobody needs any more (it ends within the timeout).
        prefetch.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _FetchedPage:
    next_token: str | None
    size: int
    statement: UpsertStatement


def _fetch_once(
    connection: Connection,
    model: type[SyncedRecord],
    filters: Mapping[str, Any] | None,
    page_token: str | None,
    db: BaseDatabaseWrapper,
) -> _FetchedPage:
    """One page, under the rate limit every worker shares for this access token, turned
    into its upsert statement. No database access: this runs in the prefetch thread."""
    acquire(trackstar_get_limiter(), connection.access_token)
    pages = trackstar_client().iter_pages(
        model.resource,
        access_token=connection.access_token,
        filters=filters,
        limit=TRACKSTAR_PAGE_LIMIT,
        page_token=page_token,
    )
    try:
        page = next(pages)
    finally:
        pages.close()
    statement = upsert_statement_build(connection, model, page.records, timezone.now(), False, db)
    return _FetchedPage(page.next_token, len(page.records), statement)


def _await_page(
    pending: Future[_FetchedPage], refetch: Callable[[], Future[_FetchedPage]], lease: _Lease
) -> _FetchedPage:
    """The page, or the same page asked again: a 429 waits for retry-after and a timeout
    or 5xx backs off, a bounded number of times; then the error goes to the task."""
    for attempt in itertools.count():
        try:
            return _result_renewing(pending, lease)
        except TrackstarRateLimited as e:
            if attempt >= PAGE_RETRIES:
                raise
            wait = e.retry_after + random.uniform(0, 0.25)  # noqa: S311
        except TrackstarUnavailable:
            if attempt >= PAGE_RETRIES:
                raise
            # Exponential backoff with full jitter, as connections/task_retry.py, in seconds not minutes.
            wait = random.uniform(  # noqa: S311
                PAGE_BACKOFF_BASE / 2, min(PAGE_BACKOFF_CAP, PAGE_BACKOFF_BASE * 2**attempt)
            )
        _sleep_renewing(wait, lease)
        pending = refetch()
    raise AssertionError("unreachable")


def _heartbeat_seconds() -> float:
    """How often a waiting run renews its lease: three times a lease, so a late renewal
    (a busy machine, a slow statement) does not lose it."""
    return max(0.5, settings.SYNC_LEASE_SECONDS / 3)


def _result_renewing(pending: Future[_FetchedPage], lease: _Lease) -> _FetchedPage:
    """Wait for the page, renewing the lease meanwhile: a page held up by the shared rate
    limit or by a slow Trackstar (up to the read timeout) is a live worker, not a dead one."""
    while not wait_futures([pending], timeout=_heartbeat_seconds()).done:
        _lease_renew(lease)
    return pending.result()


def _sleep_renewing(seconds: float, lease: _Lease) -> None:
    """Sleep (a retry-after may be long), renewing the lease at every heartbeat."""
    _lease_renew(lease)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _heartbeat_seconds()))
        if time.monotonic() < deadline:
            _lease_renew(lease)


def _commit_page(lease: _Lease, page: _FetchedPage, mark: datetime | None) -> datetime | None:
    """Records, progress, cursor and lease in one transaction. The lease UPDATE comes first:
    it locks the ResourceSync row, so a takeover waits for this commit and a worker whose
    token changed writes nothing."""
    now = timezone.now()
    with transaction.atomic():
        _lease_renew(lease)
        upsert_statement_execute(page.statement)
        newest = page.statement.newest
        if newest is not None and (mark is None or newest > mark):
            mark = newest
        SyncRun.objects.filter(pk=lease.run.pk).update(
            pages=F("pages") + 1,
            records=F("records") + page.size,
            high_water_mark=mark,
            next_page_token=page.next_token or "",
            error="",
            updated_at=now,
        )
    return mark


def _finish_succeeded(
    connection: Connection, lease: _Lease, mark: datetime | None, log_extra: dict[str, Any]
) -> SyncOutcome:
    run = lease.run
    now = timezone.now()
    with transaction.atomic():
        resource_sync = (
            ResourceSync.objects.select_for_update()
            .filter(pk=lease.resource_sync_id, lease_token=lease.token)
            .first()
        )
        if resource_sync is None:
            raise LeaseLost
        # Max updated_date seen, never past the run's start (a WMS clock ahead of ours must
        # not make us skip what changes meanwhile), never behind the previous mark. A run
        # that saw nothing moves the mark to its start, except before any data arrived:
        # Trackstar fills a new connection's history after it connects (API.md §5), so an
        # empty resource stays on full (cheap) reads until it has records.
        previous = resource_sync.high_water_mark
        if mark is not None:
            new_mark: datetime | None = min(mark, run.started_at)
        else:
            new_mark = run.started_at if previous is not None else None
        if previous is not None and new_mark is not None:
            new_mark = max(new_mark, previous)
        resource_sync.high_water_mark = new_mark
        resource_sync.last_success_at = now
        # A read that succeeded after the wait for Trackstar's initial sync ran out: the
        # resource is being synced now, whatever Trackstar says later.
        resource_sync.history_ready = True
        resource_sync.last_error = ""
        resource_sync.lease_token = None
        resource_sync.lease_expires_at = None
        resource_sync.current_run = None
        resource_sync.next_sync_at = next_slot(
            connection_id=connection.pk,
            resource=resource_sync.resource,
            interval=resource_sync.interval_seconds,
            after=now,
        )
        sync_request_follow_up(resource_sync, run, succeeded=True)
        resource_sync.save()
        SyncRun.objects.filter(pk=run.pk).update(
            status=SyncRun.Status.SUCCEEDED,
            high_water_mark=new_mark,
            error="",
            next_page_token="",
            finished_at=now,
            updated_at=now,
        )
    run.refresh_from_db()
    logger.info(
        "Synced %d %s records in %d pages", run.records, run.resource, run.pages, extra=log_extra
    )
    return SyncOutcome(SyncStatus.SUCCEEDED, run)


def _finish(lease: _Lease, *, status: str, error: str, **resource_sync_fields: Any) -> SyncRun:
    now = timezone.now()
    with transaction.atomic():
        updated = ResourceSync.objects.filter(
            pk=lease.resource_sync_id, lease_token=lease.token
        ).update(
            lease_token=None,
            lease_expires_at=None,
            current_run=None,
            last_error=error,
            updated_at=now,
            **resource_sync_fields,
        )
        if updated:
            SyncRun.objects.filter(pk=lease.run.pk).update(
                status=status, error=error, finished_at=now, updated_at=now
            )
            sync_request_follow_up_by_id(lease.resource_sync_id, lease.run)
    lease.run.refresh_from_db()
    return lease.run


def _finish_failed(lease: _Lease, error: str) -> SyncOutcome:
    resource_sync = ResourceSync.objects.get(pk=lease.resource_sync_id)
    run = _finish(
        lease,
        status=SyncRun.Status.FAILED,
        error=error,
        next_sync_at=timezone.now() + timedelta(seconds=resource_sync.interval_seconds),
    )
    return SyncOutcome(SyncStatus.FAILED, run)


def _finish_unsupported(lease: _Lease, error: str) -> SyncOutcome:
    run = _finish(lease, status=SyncRun.Status.UNSUPPORTED, error=error, unsupported=True)
    return SyncOutcome(SyncStatus.UNSUPPORTED, run)


def _finish_unauthorized(
    connection: Connection, lease: _Lease, error: TrackstarAuthError
) -> SyncOutcome:
    """A 401 on a read: our API key or this access token is wrong, not the customer's WMS
    credentials (API.md §10). The key-only GET /connections/{id} tells which."""
    from connections.health.services import Probe, probe_unauthorized

    probe = probe_unauthorized(connection=connection, error=error)
    if probe == Probe.KEY_REJECTED:
        # Every sync pauses (the dispatcher stops); this run keeps its cursor and resumes.
        _lease_release(lease, error="Paused: Trackstar refuses our API key.")
        return SyncOutcome(SyncStatus.PAUSED, lease.run)
    if probe == Probe.UNREACHABLE:
        _lease_release(lease, error="Trackstar refused the token and then did not answer.")
        raise TrackstarUnavailable("Trackstar did not answer the check after a 401")
    message = {
        Probe.DELETED: "Trackstar no longer has this connection: it was deleted there.",
        Probe.TOKEN_REJECTED: "Trackstar refused this connection's access token.",
    }[probe]
    status = {Probe.DELETED: SyncStatus.DELETED, Probe.TOKEN_REJECTED: SyncStatus.TOKEN_REJECTED}
    run = _finish(lease, status=SyncRun.Status.FAILED, error=message)
    return SyncOutcome(status[probe], run)


def _finish_forbidden(
    connection: Connection, lease: _Lease, error: TrackstarForbidden
) -> SyncOutcome:
    """A 403 on one resource: a missing permission (non-blocking). This resource waits;
    every other keeps syncing. The health check reads Trackstar's errors[] for detail and
    clears the mark when the permission is granted."""
    from connections.health.services import health_check_enqueue

    message = error.message or f"No access to {lease.run.resource}."
    newly = not ResourceSync.objects.filter(
        pk=lease.resource_sync_id, permission_error__gt=""
    ).exists()
    run = _finish(
        lease,
        status=SyncRun.Status.FAILED,
        error=message,
        permission_error=message,
        permission_source=ResourceSync.PermissionSource.READ,
        permission_error_at=timezone.now(),
    )
    if newly:
        audit_record(
            actor=None,
            action="connection.permission_missing",
            connection=connection,
            resource=lease.run.resource,
            reason=message,
        )
    transaction.on_commit(lambda: health_check_enqueue(connection_id=connection.pk), robust=True)
    return SyncOutcome(SyncStatus.FORBIDDEN, run)


def sync_fail(*, connection_id: int, resource: str, reason: str) -> SyncRun | None:
    """The task gave up retrying: end the resource's current run as failed. The next
    scheduled run starts over from the high-water mark."""
    now = timezone.now()
    with transaction.atomic():
        resource_sync = (
            ResourceSync.objects.select_for_update(of=("self",))
            .select_related("current_run")
            .filter(connection_id=connection_id, resource=resource)
            .first()
        )
        if resource_sync is None or resource_sync.current_run is None:
            return None
        expires = resource_sync.lease_expires_at
        if resource_sync.lease_token and expires is not None and expires > now:
            return None  # someone else is running it right now
        run = resource_sync.current_run
        SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED, error=reason, finished_at=now, updated_at=now
        )
        resource_sync.current_run = None
        resource_sync.last_error = reason
        resource_sync.lease_token = None
        resource_sync.lease_expires_at = None
        resource_sync.next_sync_at = now + timedelta(seconds=resource_sync.interval_seconds)
        sync_request_follow_up(resource_sync, run, succeeded=False)
        resource_sync.save()
    run.refresh_from_db()
    return run
