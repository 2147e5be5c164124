"""The sync task's retry policy: what it retries and gives up on."""

import pytest
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError

from connections.sync import run as sync_service
from connections.sync import tasks as sync_tasks
from connections.sync.run import Busy, SyncOutcome, SyncStatus
from connections.trackstar import TrackstarUnavailable
from tests.celery_tasks import catch_retries, run_as_worker


@pytest.fixture
def outcome(monkeypatch):
    result = {"value": SyncOutcome(SyncStatus.SUCCEEDED)}

    def fake_sync_resource(**kwargs):
        value = result["value"]
        if isinstance(value, Exception):
            raise value
        return value

    monkeypatch.setattr(sync_service, "sync_resource", fake_sync_resource)
    return result


@pytest.fixture
def retried(monkeypatch):
    """The countdowns the sync task asks to be retried with (nothing is published)."""
    return catch_retries(monkeypatch, sync_tasks.sync_resource)


@pytest.fixture
def failed(monkeypatch):
    calls = []
    monkeypatch.setattr(sync_service, "sync_fail", lambda **kw: calls.append(kw))
    return calls


def run_task(retries=0):
    return run_as_worker(
        sync_tasks.sync_resource, 1, "orders", "incremental", False, retries=retries
    )


def test_a_finished_run_returns_its_status(outcome, retried):
    assert run_task() == SyncStatus.SUCCEEDED
    assert retried == []


def test_a_held_lease_is_tried_again_later_then_left_to_its_holder(outcome, retried):
    outcome["value"] = Busy("held", retry_in=5)

    with pytest.raises(Retry):
        run_task()
    # Once the lease can have lapsed: retry_in plus 1 to 3 s of jitter.
    assert len(retried) == 1 and 6 <= retried[0] <= 8
    assert run_task(retries=sync_tasks.SYNC_MAX_RETRIES) is None
    assert len(retried) == 1


def test_trackstar_unavailable_is_retried_then_the_run_fails(outcome, retried, failed):
    outcome["value"] = TrackstarUnavailable("down")

    with pytest.raises(Retry) as raised:
        run_task()
    assert raised.value.exc is outcome["value"]
    # The first retry: backoff(0) with the sync's base of 5 s, full jitter.
    assert len(retried) == 1 and 2.5 <= retried[0] <= 5.0
    assert failed == []
    assert run_task(retries=sync_tasks.SYNC_MAX_RETRIES) == SyncStatus.FAILED
    assert len(retried) == 1
    assert [call["resource"] for call in failed] == ["orders"]


def test_a_lost_database_connection_is_retried_in_seconds_and_the_run_kept(
    outcome, retried, failed
):
    outcome["value"] = OperationalError("server closed the connection unexpectedly")
    with pytest.raises(Retry):
        run_task()
    outcome["value"] = InterfaceError("connection already closed")
    with pytest.raises(Retry):
        run_task(retries=3)
    # Seconds (database_backoff(0), then (3)), not the minutes a Trackstar outage waits;
    # and never "Internal error".
    assert len(retried) == 2
    assert 1 <= retried[0] <= 2 and 1 <= retried[1] <= 16
    # Still down after every retry: the run keeps its cursor, and the lapsed lease brings
    # it back (sync_resume_orphaned) once the database is.
    assert run_task(retries=sync_tasks.SYNC_MAX_RETRIES) == "database_unavailable"
    assert failed == []
