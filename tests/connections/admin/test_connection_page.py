"""A connection's page in admin: its actions as buttons, the live sync panel, the list."""

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEntry
from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink, ResourceSync, SyncRun
from tests.builders import make_connection

from .conftest import staff_with


def page_of(connection) -> str:
    return f"/admin/connections/connection/{connection.pk}/change/"


def act(connection, action: str) -> str:
    return f"/admin/connections/connection/{connection.pk}/act/{action}/"


@pytest.fixture
def shipbob2(customer):
    make_connection(customer=customer, label="ShipBob")
    return make_connection(customer=customer, label="ShipBob 2")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_page_has_its_actions_as_buttons(staff, shipbob2):
    html = staff.get(page_of(shipbob2)).content.decode()

    for action, label in [
        ("resync", "Resync now"),
        ("pause", "Pause syncing"),
        ("reconnect-link", "Send reconnect link"),
        ("disconnect", "Disconnect…"),
    ]:
        assert f'action="{act(shipbob2, action)}"' in html
        assert f'data-action="{action}"' in html and label in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_a_paused_connection_offers_resume_and_a_disconnected_one_nothing(staff, customer):
    paused = make_connection(customer=customer, sync_paused=True)
    gone = make_connection(customer=customer, status=Connection.Status.DISCONNECTED)

    paused_html = staff.get(page_of(paused)).content.decode()
    gone_html = staff.get(page_of(gone)).content.decode()

    assert 'data-action="resume"' in paused_html and 'data-action="pause"' not in paused_html
    assert 'id="connection-actions"' not in gone_html


def test_pause_then_resume_says_whom_and_is_idempotent(staff, shipbob2):
    first = staff.post(act(shipbob2, "pause"), follow=True)
    second = staff.post(act(shipbob2, "pause"), follow=True)

    shipbob2.refresh_from_db()
    assert shipbob2.sync_paused
    assert any(
        m.startswith("Paused syncing of ShipBob 2 of Acme Outdoor") for m in messages_of(first)
    )
    assert messages_of(second) == ["Syncing of ShipBob 2 of Acme Outdoor was already paused."]
    assert AuditEntry.objects.filter(action="connection.sync_paused").count() == 1

    resumed = staff.post(act(shipbob2, "resume"), follow=True)
    shipbob2.refresh_from_db()
    assert not shipbob2.sync_paused
    assert messages_of(resumed) == ["Resumed syncing of ShipBob 2 of Acme Outdoor."]


def test_send_reconnect_link_emails_the_contact_once_for_a_double_click(
    staff, shipbob2, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post(act(shipbob2, "reconnect-link"), follow=True)
        second = staff.post(act(shipbob2, "reconnect-link"), follow=True)

    assert messages_of(first) == [
        "Reconnect link sent to ops@acme-outdoor.example for ShipBob 2 of Acme Outdoor."
    ]
    assert "already sent to ops@acme-outdoor.example" in messages_of(second)[0]
    assert len(mail.outbox) == 1
    assert MagicLink.objects.filter(reinstall_connection=shipbob2).count() == 1


def test_resync_button_asks_trackstar_says_for_whom_and_a_second_click_waits(
    staff, customer, trackstar, django_capture_on_commit_callbacks
):
    made = trackstar.connect("sandbox", {"api_key": "k"})
    connection = make_connection(
        customer=customer,
        label="ShipBob 2",
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
        available_actions=["get_orders", "get_inventory"],
    )

    with django_capture_on_commit_callbacks(execute=False):
        first = staff.post(act(connection, "resync"), follow=True)
        second = staff.post(act(connection, "resync"), follow=True)

    assert messages_of(first)[0].startswith("Resync queued for ShipBob 2 of Acme Outdoor")
    assert "already under way" in messages_of(second)[0]
    assert AuditEntry.objects.filter(action="connection.force_sync_requested").count() == 1


def test_disconnect_asks_first_then_disconnects(staff, shipbob2, monkeypatch):
    from connections import services

    calls = []
    monkeypatch.setattr(
        "connections.admin.connections.services.connection_disconnect",
        lambda connection, actor: (
            calls.append(connection.pk)
            or services.connection_mark_disconnected(connection=connection, actor=actor)
        ),
    )

    confirm = staff.post(act(shipbob2, "disconnect"))
    assert confirm.status_code == 200 and "Yes, disconnect" in confirm.content.decode()
    assert calls == []

    done = staff.post(act(shipbob2, "disconnect"), {"confirm": "yes"}, follow=True)
    again = staff.post(act(shipbob2, "disconnect"), {"confirm": "yes"}, follow=True)

    shipbob2.refresh_from_db()
    assert shipbob2.status == Connection.Status.DISCONNECTED
    assert calls == [shipbob2.pk]
    assert messages_of(done)[0].startswith("Disconnected ShipBob 2 of Acme Outdoor")
    assert messages_of(again) == ["ShipBob 2 of Acme Outdoor was already disconnected."]


def test_staff_without_change_permission_see_no_buttons_and_get_403(client, shipbob2):
    client.force_login(staff_with("view_connection"))

    html = client.get(page_of(shipbob2)).content.decode()
    refused = [client.post(act(shipbob2, a)) for a in ("pause", "reconnect-link", "disconnect")]
    resync = client.post(f"/admin/connections/connection/{shipbob2.pk}/resync/")

    assert 'id="connection-actions"' not in html and "Resync now" not in html
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert resync.status_code == 403
    shipbob2.refresh_from_db()
    assert not shipbob2.sync_paused and shipbob2.status == Connection.Status.ACTIVE


def test_an_action_needs_a_post_a_known_name_and_a_real_connection(staff, shipbob2):
    assert staff.get(act(shipbob2, "pause")).status_code == 405
    assert staff.post(act(shipbob2, "explode")).status_code == 404
    assert staff.post("/admin/connections/connection/999999/act/pause/").status_code == 404
    shipbob2.refresh_from_db()
    assert not shipbob2.sync_paused


def test_view_only_pages_have_no_save_button(client, shipbob2, customer):

    link = magic_link_service.magic_link_issue(customer=customer, created_by=None).link
    client.force_login(
        staff_with("view_connection", "view_magiclink", "view_syncrun", "view_auditentry")
    )
    run = SyncRun.objects.create(connection=shipbob2, resource="orders", kind="initial")

    for url in [
        page_of(shipbob2),
        f"/admin/connections/magiclink/{link.pk}/change/",
        f"/admin/connections/syncrun/{run.pk}/change/",
    ]:
        html = client.get(url).content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html, url


def test_a_magic_link_page_has_no_save_button_even_for_a_superuser(staff, customer, shipbob2):

    link = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, reinstall_connection=shipbob2
    ).link

    html = staff.get(f"/admin/connections/magiclink/{link.pk}/change/").content.decode()

    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert f'href="{page_of(shipbob2)}">ShipBob 2</a>' in html


def test_the_sync_panel_shows_a_retrying_run_with_its_attempts_and_error(staff, shipbob2):
    run = SyncRun.objects.create(
        connection=shipbob2,
        resource="orders",
        kind="initial",
        attempts=4,
        error="Trackstar is busy or unreachable; will retry (503).",
    )
    ResourceSync.objects.create(connection=shipbob2, resource="orders", current_run=run)

    html = staff.get(page_of(shipbob2)).content.decode()

    assert "Retrying (attempt 4, 0 records so far)" in html
    assert "will retry (503)" in html
    assert "Running: 0 pages" not in html


def test_live_progress_of_a_full_read_says_of_about(staff, shipbob2):
    SyncRun.objects.create(
        connection=shipbob2,
        resource="orders",
        kind="initial",
        status=SyncRun.Status.SUCCEEDED,
        records=20_000,
        pages=20,
        finished_at=timezone.now(),
    )
    running = SyncRun.objects.create(
        connection=shipbob2, resource="orders", kind="manual", pages=12, records=12_000
    )
    ResourceSync.objects.create(connection=shipbob2, resource="orders", current_run=running)
    url = f"/admin/connections/connection/{shipbob2.pk}/sync-status/"

    status = staff.get(url).json()
    html = staff.get(page_of(shipbob2)).content.decode()

    assert status["busy"] is True
    assert status["resources"][0]["state"] == "Syncing: 12,000 of about 20,000 records"
    assert (status["resources"][0]["records"], status["resources"][0]["expected"]) == (
        12_000,
        20_000,
    )
    assert "Syncing: 12,000 of about 20,000 records" in html
    assert '<progress max="20000" value="12000"' in html
    assert f'data-status-url="{url}"' in html

    SyncRun.objects.filter(pk=running.pk).update(status=SyncRun.Status.SUCCEEDED)
    assert staff.get(url).json()["busy"] is False


def test_the_sync_status_endpoint_is_staff_only(client, portal_user, shipbob2):
    url = f"/admin/connections/connection/{shipbob2.pk}/sync-status/"
    client.force_login(portal_user)
    assert client.get(url).status_code == 302  # to the admin login

    client.force_login(staff_with("view_magiclink", username="links-only"))
    assert client.get(url).status_code == 403


def test_the_sync_status_of_no_connection_is_404(staff):
    assert staff.get("/admin/connections/connection/999999/sync-status/").status_code == 404


def test_the_list_shows_customer_name_status_last_sync_problem(staff, customer, shipbob2):
    broken = make_connection(
        customer=customer,
        label="Extensiv",
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
    )
    ResourceSync.objects.create(
        connection=shipbob2, resource="returns", permission_error="No access to returns."
    )

    response = staff.get("/admin/connections/connection/")
    found = staff.get("/admin/connections/connection/", {"q": broken.trackstar_connection_id})

    headers = [str(h["text"]).capitalize() for h in response.context["result_headers"]][1:]
    assert headers == ["Customer", "Name", "Status", "Last sync", "Problem"]  # after the box
    html = response.content.decode()
    assert "Needs reconnect: The WMS refused the saved credentials" in html
    assert "1 resource without access" in html
    assert "field-trackstar_connection_id" not in html  # searchable, not a column
    assert [c.pk for c in found.context["cl"].result_list] == [broken.pk]


def test_the_list_is_one_query_whatever_its_length(staff, customer, django_assert_max_num_queries):
    make_connection(customer=customer)
    staff.get("/admin/connections/connection/")
    with django_assert_max_num_queries(20) as one:
        staff.get("/admin/connections/connection/")
    for _ in range(15):
        make_connection(customer=customer)
    with django_assert_max_num_queries(len(one.captured_queries)):
        staff.get("/admin/connections/connection/")


def test_bulk_actions_say_whom_they_acted_on(staff, shipbob2):
    response = staff.post(
        "/admin/connections/connection/",
        {"action": "pause_syncing", "_selected_action": [shipbob2.pk]},
        follow=True,
    )

    assert messages_of(response) == ["Paused syncing of ShipBob 2 of Acme Outdoor."]
