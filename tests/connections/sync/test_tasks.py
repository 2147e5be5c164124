"""The sync task's own decisions: what it retries, re-enqueues and gives up on."""

import pytest
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError

from connections.sync import run as sync_service
from connections.sync import tasks as sync_tasks
from connections.sync.run import SyncOutcome, SyncStatus
from connections.trackstar import TrackstarUnavailable


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


def run_task(retries=0):
    sync_tasks.sync_resource.push_request(retries=retries)
    try:
        return sync_tasks.sync_resource.run(1, "orders", "incremental", False)
    finally:
        sync_tasks.sync_resource.pop_request()


def test_a_finished_run_returns_its_status(outcome):
    assert run_task() == "succeeded"


def test_out_of_time_enqueues_the_rest(outcome, published):
    outcome["value"] = SyncOutcome(SyncStatus.CONTINUE)

    assert run_task() == "continue"
    # A resume only: should the run be over when it arrives, it starts no new one.
    assert published == [
        ("connections.sync", (1, "orders", "incremental", False), {"requested": True})
    ]


def test_a_held_lease_is_tried_again_later(outcome):
    outcome["value"] = SyncOutcome(SyncStatus.BUSY, retry_in=5)

    with pytest.raises(Retry):
        run_task()


def test_trackstar_unavailable_is_retried_then_the_run_fails(outcome, monkeypatch):
    failed = []
    monkeypatch.setattr(sync_service, "sync_fail", lambda **kw: failed.append(kw))
    outcome["value"] = TrackstarUnavailable("down")

    with pytest.raises((Retry, TrackstarUnavailable)):
        run_task()
    assert failed == []
    assert run_task(retries=sync_tasks.SYNC_MAX_RETRIES) == "failed"
    assert failed[0]["resource"] == "orders"


def test_a_lost_database_connection_is_retried_in_seconds_and_the_run_kept(outcome, monkeypatch):
    failed, retried = [], []
    monkeypatch.setattr(sync_service, "sync_fail", lambda **kw: failed.append(kw))
    monkeypatch.setattr(
        sync_tasks.sync_resource, "retry", lambda **kw: retried.append(kw) or Retry()
    )

    outcome["value"] = OperationalError("server closed the connection unexpectedly")
    with pytest.raises(Retry):
        run_task()
    outcome["value"] = InterfaceError("connection already closed")
    with pytest.raises(Retry):
        run_task(retries=3)
    # Seconds, not the minutes a Trackstar outage waits; and never "Internal error".
    assert retried[0]["countdown"] <= 2 and retried[1]["countdown"] <= 16
    # Still down after every retry: the run keeps its cursor, and the lapsed lease brings
    # it back (sync_resume_orphaned) once the database is.
    assert run_task(retries=sync_tasks.SYNC_MAX_RETRIES) == "database_unavailable"
    assert failed == []
