"""Connection health from Trackstar's errors[] (GET /connections/{id}), against the sandbox."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.health.services import connection_health_refresh
from connections.models import Connection, MagicLink, ResourceSync
from connections.sync import schedule as schedule_service
from connections.sync.run import sync_resource


@pytest.fixture(autouse=True)
def enqueued(no_enqueue):
    return no_enqueue


def resource_state(connection, resource):
    return ResourceSync.objects.get(connection=connection, resource=resource)


@pytest.mark.parametrize("shape", ["both", "doc"])
def test_a_missing_permission_marks_one_resource_and_the_rest_keep_syncing(
    connect, sandbox, mailoutbox, shape
):
    sandbox.configure(error_shape=shape)
    connection = connect()
    sandbox.break_connection(
        connection.trackstar_connection_id, kind="missing_permission", resource="returns"
    )

    assert connection_health_refresh(connection_id=connection.pk) == "checked"

    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert resource_state(connection, "returns").permission_error
    assert resource_state(connection, "orders").permission_error == ""
    assert [e["kind"] for e in connection.trackstar_errors] == ["missing_permission"]
    assert not mailoutbox and not MagicLink.objects.exists()
    assert sync_resource(connection_id=connection.pk, resource="orders").status == "succeeded"
    assert sync_resource(connection_id=connection.pk, resource="returns").status == "skipped"

    sandbox.repair_connection(connection.trackstar_connection_id)
    connection_health_refresh(connection_id=connection.pk)
    returns = resource_state(connection, "returns")
    assert returns.permission_error == ""
    assert returns.next_sync_at <= timezone.now()  # read again at the next tick
    connection.refresh_from_db()
    assert connection.trackstar_errors == []


def test_a_403_on_a_read_marks_that_resource_without_failing_the_connection(
    connect, sandbox, enqueued, django_capture_on_commit_callbacks
):
    connection = connect()
    sandbox.break_connection(
        connection.trackstar_connection_id, kind="missing_permission", resource="returns"
    )

    with django_capture_on_commit_callbacks(execute=True):
        outcome = sync_resource(connection_id=connection.pk, resource="returns")

    assert outcome.status == "forbidden"
    assert "returns" in resource_state(connection, "returns").permission_error
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.ACTIVE
    assert ("health", connection.pk) in enqueued  # Trackstar's errors[] tells the detail


@pytest.mark.parametrize("shape", ["both", "doc"])
def test_invalid_credentials_need_reconnect_with_one_email_until_repaired(
    connect, sandbox, mailoutbox, shape, django_capture_on_commit_callbacks
):
    sandbox.configure(error_shape=shape)
    connection = connect()
    sandbox.break_connection(connection.trackstar_connection_id)

    # Trackstar still serves its copy: a read succeeds and says nothing of the breakage…
    assert sync_resource(connection_id=connection.pk, resource="orders").status == "succeeded"
    # …its errors[] does.
    with django_capture_on_commit_callbacks(execute=True):  # sends the email
        connection_health_refresh(connection_id=connection.pk)
        connection_health_refresh(connection_id=connection.pk)

    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert connection.reconnect_cause == Connection.ReconnectCause.INVALID_CREDENTIALS
    assert len(mailoutbox) == 1 and "/connect/" in mailoutbox[0].body
    assert sync_resource(connection_id=connection.pk, resource="orders").status == "skipped"

    sandbox.repair_connection(connection.trackstar_connection_id)
    connection_health_refresh(connection_id=connection.pk)
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE

    # It breaks again at once (a flapping error): no second email…
    sandbox.break_connection(connection.trackstar_connection_id)
    with django_capture_on_commit_callbacks(execute=True):
        connection_health_refresh(connection_id=connection.pk)
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.NEEDS_RECONNECT
    assert len(mailoutbox) == 1
    # …but an incident a day after the last email is a new one.
    sandbox.repair_connection(connection.trackstar_connection_id)
    connection_health_refresh(connection_id=connection.pk)
    Connection.objects.filter(pk=connection.pk).update(
        reconnect_notified_at=timezone.now() - timedelta(days=2)
    )
    sandbox.break_connection(connection.trackstar_connection_id)
    with django_capture_on_commit_callbacks(execute=True):
        connection_health_refresh(connection_id=connection.pk)
    assert len(mailoutbox) == 2


def test_a_refused_token_is_not_cleared_by_an_empty_errors_list(connect, sandbox):
    connection = connect()
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.TOKEN_REJECTED,
    )

    connection_health_refresh(connection_id=connection.pk)

    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.NEEDS_RECONNECT


def test_reads_wait_for_trackstars_initial_sync(
    connect, sandbox, enqueued, django_capture_on_commit_callbacks
):
    sandbox.configure(historical_sync_delay=1.5)
    connection = connect(history_ready=False)

    assert schedule_service.sync_schedule_initial(connection=connection) == []
    assert sync_resource(connection_id=connection.pk, resource="orders").status == "skipped"
    connection_health_refresh(connection_id=connection.pk)  # Trackstar: not yet
    assert [e for e in enqueued if e[0] != "health"] == []

    sandbox.wait_until_synced(connection.trackstar_connection_id)
    with django_capture_on_commit_callbacks(execute=True):
        connection_health_refresh(connection_id=connection.pk)

    assert sorted(r for r, kind in enqueued if kind == "initial") == sorted(
        schedule_service.sync_resources_for(connection)
    )
    assert resource_state(connection, "orders").history_ready
    outcome = sync_resource(connection_id=connection.pk, resource="orders", kind="initial")
    assert outcome.status == "succeeded" and outcome.run.records == 50


@pytest.mark.parametrize("kind", ["invalid_credentials", "missing_permission"])
def test_an_error_in_the_shape_that_does_not_say_its_kind_emails_nobody_and_stops_nothing(
    connect, sandbox, mailoutbox, kind, django_capture_on_commit_callbacks
):
    """2025's OAS shape carries no error_type: we cannot tell broken credentials from a
    timeout, so staff see it and nothing is decided on a guess."""
    sandbox.configure(error_shape="oas")
    connection = connect()
    extra = {"resource": "returns"} if kind == "missing_permission" else {}
    sandbox.break_connection(connection.trackstar_connection_id, kind=kind, **extra)

    with django_capture_on_commit_callbacks(execute=True):
        connection_health_refresh(connection_id=connection.pk)

    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert [e["kind"] for e in connection.trackstar_errors] == ["unclassified"]
    assert not mailoutbox
    assert not ResourceSync.objects.filter(connection=connection).exclude(permission_error="")


def test_a_404_that_is_not_trackstars_decides_nothing(connect, sandbox, settings, httpserver):
    """A proxy's or a wrong host's 404 must not disconnect (and erase the token of) every
    connection the poll looks at; nor a Trackstar 404 while the token still works."""
    connection = connect()
    httpserver.expect_request(
        f"/connections/{connection.trackstar_connection_id}"
    ).respond_with_data("<html>Not Found</html>", status=404, content_type="text/html")
    settings.TRACKSTAR_BASE_URL = httpserver.url_for("")

    assert connection_health_refresh(connection_id=connection.pk) == "failed"

    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.access_token


def test_a_connection_deleted_at_trackstar_is_disconnected_by_the_health_check(connect, sandbox):
    connection = connect()
    sandbox.session.delete(
        sandbox.url("/connections"), headers=sandbox.token_headers(connection.access_token)
    )

    assert connection_health_refresh(connection_id=connection.pk) == "deleted"

    connection.refresh_from_db()
    assert connection.status == Connection.Status.DISCONNECTED
    assert "deleted" in connection.last_error  # and it says so
