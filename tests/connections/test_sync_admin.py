from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import AuditEntry, Connection, ResourceSync, SyncRun, WebhookEvent
from tests.builders import make_connection


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def synced(customer):
    connection = make_connection(customer=customer,
                                 available_actions=["get_orders", "get_inventory"])
    now = timezone.now()
    ResourceSync.objects.create(connection=connection, resource="orders",
                                last_success_at=now - timedelta(minutes=3),
                                next_sync_at=now + timedelta(minutes=12))
    ResourceSync.objects.create(connection=connection, resource="inventory",
                                last_success_at=now - timedelta(days=1))
    SyncRun.objects.create(connection=connection, resource="orders", kind="incremental",
                           status="succeeded", pages=3, records=2500, finished_at=now)
    return connection


def test_the_sync_panel_shows_each_resource(staff, synced):
    html = staff.get(f"/admin/connections/connection/{synced.pk}/change/").content.decode()

    assert "Sync panel" in html
    assert "Incremental succeeded</a>: 2500 records, 3 pages" in html
    assert ">fresh<" in html and ">stale<" in html
    assert html.count("Resync now") >= 2


def test_resync_one_resource_enqueues_it_and_audits(staff, synced, staff_user,
                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(f"/admin/connections/connection/{synced.pk}/resync/"
                              "?resource=orders")

    assert response.status_code == 302
    assert len(callbacks) == 1
    entry = AuditEntry.objects.get(action="connection.resync_requested")
    assert (entry.actor, entry.detail["resources"]) == (staff_user, ["orders"])


def test_resync_of_a_disconnected_connection_is_refused(staff, synced,
                                                        django_capture_on_commit_callbacks):
    Connection.objects.filter(pk=synced.pk).update(status=Connection.Status.DISCONNECTED)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(f"/admin/connections/connection/{synced.pk}/resync/", follow=True)

    assert "only an active connection can sync" in response.content.decode()
    assert callbacks == []


def test_failed_runs_can_be_retried(staff, synced, django_capture_on_commit_callbacks):
    failed = SyncRun.objects.create(connection=synced, resource="inventory", kind="incremental",
                                    status="failed", error="Trackstar stayed unreachable")

    listing = staff.get("/admin/connections/syncrun/?status__exact=failed")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post("/admin/connections/syncrun/", {"action": "retry",
                                                   "_selected_action": [failed.pk]})

    assert [r.pk for r in listing.context["cl"].result_list] == [failed.pk]
    assert len(callbacks) == 1


def test_failed_webhooks_can_be_retried(staff, synced, django_capture_on_commit_callbacks):
    event = WebhookEvent.objects.create(svix_id="msg_f", event_type="order.updated",
                                        connection=synced, payload={}, status="failed",
                                        error="boom")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post("/admin/connections/webhookevent/", {"action": "retry",
                                                        "_selected_action": [event.pk]})

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert len(callbacks) == 1
    assert AuditEntry.objects.filter(action="webhook.retried").count() == 1
